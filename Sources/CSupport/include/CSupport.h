#ifndef SWIFTGPT_CSUPPORT_H
#define SWIFTGPT_CSUPPORT_H

/// CPU features that decide which BLAS kernels to ask for. Bits of the returned mask.
enum {
    SGPT_CPU_AVX2 = 1 << 0,
    SGPT_CPU_FMA = 1 << 1,
    SGPT_CPU_AVX512F = 1 << 2,
    SGPT_CPU_AVX512BW = 1 << 3,
    SGPT_CPU_AVX512DQ = 1 << 4,
    SGPT_CPU_AVX512VL = 1 << 5,
    SGPT_CPU_AVX512BF16 = 1 << 6,
    SGPT_CPU_AMX_BF16 = 1 << 7,
    SGPT_CPU_INTEL = 1 << 8,
    SGPT_CPU_AMD = 1 << 9,
};

/// Returns a mask of SGPT_CPU_* bits (0 on non-x86 machines). AVX-512 and AMX bits are only set
/// when the operating system also saves the corresponding register state (XCR0).
int sgpt_cpu_features(void);

/// Makes standard output line-buffered (progress lines then show up promptly in pipes and files).
void sgpt_line_buffer_stdout(void);

/// Hints the CPU to fetch the cache line at `p` for reading (no effect on correctness). Inlined
/// into Swift callers; used by the bandwidth-bound decode kernels to stay ahead of the hardware
/// prefetcher.
static inline void sgpt_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }
/// The same into L2 only (prefetcht1): leaves L1's miss buffers to the loads in flight.
static inline void sgpt_prefetch_l2(const void *p) { __builtin_prefetch(p, 0, 2); }

#endif
