#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A zero-initialised heap block, allocated once and freed with its owner.
/// Used for every activation, gradient and optimizer buffer so that nothing
/// allocates in the training or sampling loops. Elements are plain numbers (Float, Int32,
/// Double), whose zero is all-zero bytes. Allocation failure is an error, never an abort.
final class Buffer<Element> {
    let pointer: UnsafeMutablePointer<Element>
    let count: Int

    /// - Throws: `.invalidArgument` if `count` is negative or the block cannot be allocated.
    init(count: Int, zero: Element) throws {
        let (n, stride) = (max(count, 1), MemoryLayout<Element>.stride)
        guard count >= 0, checkedProduct(n, stride) != nil, let raw = calloc(n, stride) else {
            let size = count >= 0 ? Limits.describeBytes(Double(n) * Double(stride)) : "\(count) elements"
            throw DDPMError.invalidArgument("cannot allocate \(size): out of memory")
        }
        self.count = count
        pointer = raw.bindMemory(to: Element.self, capacity: n)
        // calloc gives zero bytes; any other `zero` is written.
        if withUnsafeBytes(of: zero, { $0.contains { $0 != 0 } }) { pointer.update(repeating: zero, count: n) }
    }

    deinit { free(pointer) }

    func fill(_ value: Element) { pointer.update(repeating: value, count: count) }
}

extension Buffer where Element == Float {
    convenience init(count: Int) throws { try self.init(count: count, zero: 0) }
    var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}
