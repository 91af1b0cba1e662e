// Opaque handles: a retained Swift object behind each C pointer.
import DDPM

final class ScheduleHandle {
    let schedule: NoiseSchedule
    init(_ schedule: NoiseSchedule) { self.schedule = schedule }
}

final class SamplerHandle {
    let sampler: Sampler
    init(_ sampler: Sampler) { self.sampler = sampler }
}

final class ModelHandle {
    let model: DiffusionModel
    init(_ model: DiffusionModel) { self.model = model }
}

func retain(_ object: AnyObject) -> OpaquePointer { OpaquePointer(Unmanaged.passRetained(object).toOpaque()) }

func release(_ handle: OpaquePointer?) {
    guard let handle else { return }
    Unmanaged<AnyObject>.fromOpaque(UnsafeRawPointer(handle)).release()
}

func schedule(_ handle: OpaquePointer?) throws -> NoiseSchedule {
    let h = try nonNull(handle, "schedule")
    return Unmanaged<ScheduleHandle>.fromOpaque(UnsafeRawPointer(h)).takeUnretainedValue().schedule
}

func model(_ handle: OpaquePointer?) throws -> DiffusionModel {
    let h = try nonNull(handle, "model")
    return Unmanaged<ModelHandle>.fromOpaque(UnsafeRawPointer(h)).takeUnretainedValue().model
}

/// Stores a new handle in *out (clearing it first so failures leave NULL).
func output(_ out: UnsafeMutablePointer<OpaquePointer?>?, _ make: () throws -> AnyObject) throws {
    let out = try nonNull(out, "out")
    out.pointee = nil
    out.pointee = retain(try make())
}

func sampler(_ handle: OpaquePointer?) throws -> Sampler {
    let h = try nonNull(handle, "sampler")
    return Unmanaged<SamplerHandle>.fromOpaque(UnsafeRawPointer(h)).takeUnretainedValue().sampler
}
