// cuda_emu.h — makes SwiftGPT's CUDA kernel source (Sources/CUDA/CUDAKernelSource.swift) compile as
// plain C++17, so the CPU emulator (cuda_emu.cpp) can run it. Included with `-include` in front of
// the kernel text by the emulator's nvrtcCompileProgram.
//
// The model: each CUDA thread of a block is a fiber (its own stack) run by the emulator on one OS
// thread; __syncthreads and warp shuffles switch fibers. The built-in indices are thread_local
// variables the emulator sets before it resumes a fiber. Shared memory is `static thread_local`
// (blocks of one launch run one after another on the same OS thread, so one copy serves a block).
// The emulator reaches into this module through the exported sgemu_* symbols below.

#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <utility>

#define SGEMU_EXPORT extern "C" __attribute__((visibility("default")))

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static thread_local

struct sgemu_dim3 {
    unsigned x, y, z;
};

static thread_local sgemu_dim3 threadIdx, blockIdx, blockDim, gridDim;

// Hooks filled in by the emulator after it loads this module.
SGEMU_EXPORT void (*sgemu_hook_barrier)(int warpOnly) = nullptr;
SGEMU_EXPORT unsigned long long (*sgemu_hook_exchange)(unsigned long long bits, int sourceLane) = nullptr;
SGEMU_EXPORT void* (*sgemu_hook_dynamic_shared)() = nullptr;

/// Sets the built-in indices of the fiber about to run: thread, block, blockDim, gridDim (x, y, z each).
SGEMU_EXPORT void sgemu_set_indices(const unsigned* v) {
    threadIdx = {v[0], v[1], v[2]};
    blockIdx = {v[3], v[4], v[5]};
    blockDim = {v[6], v[7], v[8]};
    gridDim = {v[9], v[10], v[11]};
}

#define SG_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(sgemu_hook_dynamic_shared())

inline void __syncthreads() { sgemu_hook_barrier(0); }
inline void __syncwarp(unsigned = 0xffffffffu) { sgemu_hook_barrier(1); }

inline unsigned sgemu_lane() {
    unsigned linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    return linear & 31u;
}

template <typename T>
inline T sgemu_exchange(T value, int sourceLane) {
    static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
    unsigned long long bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    bits = sgemu_hook_exchange(bits, sourceLane);
    T out;
    std::memcpy(&out, &bits, sizeof(T));
    return out;
}

template <typename T>
inline T __shfl_xor_sync(unsigned, T value, int laneMask, int width = 32) {
    (void)width;
    return sgemu_exchange(value, int(sgemu_lane() ^ unsigned(laneMask)));
}

template <typename T>
inline T __shfl_sync(unsigned, T value, int sourceLane, int width = 32) {
    (void)width;
    return sgemu_exchange(value, sourceLane & 31);
}

template <typename T>
inline T __shfl_down_sync(unsigned, T value, unsigned delta, int width = 32) {
    (void)width;
    unsigned lane = sgemu_lane();
    return sgemu_exchange(value, int(lane + delta < 32 ? lane + delta : lane));
}

// Atomics: a compare-and-swap loop on the bits (blocks run one at a time, but stay honest).
inline float atomicAdd(float* address, float value) {
    uint32_t* bits = reinterpret_cast<uint32_t*>(address);
    uint32_t expected = __atomic_load_n(bits, __ATOMIC_RELAXED);
    for (;;) {
        float old;
        std::memcpy(&old, &expected, 4);
        float updated = old + value;
        uint32_t desired;
        std::memcpy(&desired, &updated, 4);
        if (__atomic_compare_exchange_n(bits, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) return old;
    }
}

inline int atomicAdd(int* address, int value) { return __atomic_fetch_add(address, value, __ATOMIC_SEQ_CST); }

// Math built-ins CUDA provides without headers.
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __int_as_float(int x) { float f; std::memcpy(&f, &x, 4); return f; }
inline int __float_as_int(float f) { int x; std::memcpy(&x, &f, 4); return x; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
using std::cos;
using std::pow;
using std::sin;

// SG_EXPORT(kernel) makes `sgemu_launch_<kernel>(void** params)`: it runs the kernel for the
// current fiber, unpacking each parameter from params[i] with the type the kernel declares.
namespace sgemu {
template <typename... A, std::size_t... I>
inline void invoke(void (*kernel)(A...), void** params, std::index_sequence<I...>) {
    kernel(*static_cast<typename std::remove_reference<A>::type*>(params[I])...);
}
template <typename... A>
inline void invoke(void (*kernel)(A...), void** params) {
    invoke(kernel, params, std::index_sequence_for<A...>{});
}
}  // namespace sgemu

#define SG_EXPORT(name) \
    SGEMU_EXPORT void sgemu_launch_##name(void** params) { sgemu::invoke(&name, params); }
