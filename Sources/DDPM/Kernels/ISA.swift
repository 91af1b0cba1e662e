// The instruction-set path of the C kernels (Sources/DDPMKernels): chosen once from the CPU,
// lowered by DDPM_KERNEL_ISA=baseline|avx2|avx512. Every path gives the same bits.
import DDPMKernels

public enum KernelISA: Int, CaseIterable, Sendable {
    case baseline = 0, avx2 = 1, avx512 = 2

    /// The path in use.
    public static var current: KernelISA { KernelISA(rawValue: Int(ddpm_kernels_isa().rawValue)) ?? .baseline }
    /// The best path this CPU supports.
    public static var best: KernelISA { KernelISA(rawValue: Int(ddpm_kernels_best_isa().rawValue)) ?? .baseline }
    /// Every path this CPU can run, lowest first.
    public static var supported: [KernelISA] { allCases.filter { $0.rawValue <= best.rawValue } }

    public var name: String { String(cString: ddpm_isa_name(ddpm_isa(rawValue: UInt32(rawValue)))) }

    /// Switches the kernels to `isa` (tests); false if the CPU lacks it. Not while kernels run.
    @discardableResult
    static func use(_ isa: KernelISA) -> Bool { ddpm_kernels_set_isa(ddpm_isa(rawValue: UInt32(isa.rawValue))) == 0 }
}
