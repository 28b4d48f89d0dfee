// What the processor can do, read once from CPUID.

import CSupport

/// Instruction-set features of the host CPU that decide which kernels to use.
public struct CPUFeatures: Sendable, CustomStringConvertible {
    public let mask: Int32

    public static let current = CPUFeatures(mask: sgpt_cpu_features())

    public var avx2: Bool { has(SGPT_CPU_AVX2) && has(SGPT_CPU_FMA) }
    /// AVX-512 F, BW, DQ and VL: what OpenBLAS's SkylakeX kernels need.
    public var avx512: Bool {
        has(SGPT_CPU_AVX512F) && has(SGPT_CPU_AVX512BW) && has(SGPT_CPU_AVX512DQ) && has(SGPT_CPU_AVX512VL)
    }
    public var avx512bf16: Bool { has(SGPT_CPU_AVX512BF16) }
    public var amxBF16: Bool { has(SGPT_CPU_AMX_BF16) }

    private func has(_ bit: Int) -> Bool { (Int(mask) & bit) != 0 }

    /// The OpenBLAS core type to request, or nil to let OpenBLAS decide (AMD Zen is detected
    /// correctly; AVX-512 Intel parts newer than the library are not).
    public var openBLASCoreType: String? {
        if avx512 { return "SkylakeX" }
        return nil
    }

    public var description: String {
        var parts: [String] = []
        if has(SGPT_CPU_INTEL) { parts.append("Intel") }
        if has(SGPT_CPU_AMD) { parts.append("AMD") }
        if avx2 { parts.append("AVX2+FMA") }
        if avx512 { parts.append("AVX-512") }
        if avx512bf16 { parts.append("AVX512-BF16") }
        if amxBF16 { parts.append("AMX-BF16") }
        return parts.isEmpty ? "generic" : parts.joined(separator: " ")
    }
}
