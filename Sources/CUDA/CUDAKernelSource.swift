// The CUDA C source of every CUDABackend kernel (fp32), compiled at run time by NVRTC (or by the CPU
// emulator in Tools/cuda/emulator, which compiles the same text as C++).
//
// Rules for this source: no #include (NVRTC has no system headers here); every kernel is
// `extern "C" __global__ void sg_<name>(...)` with plain parameters (pointers, int, long long, float,
// unsigned long long), followed by `SG_EXPORT(sg_<name>)`; dynamic shared memory is declared with
// SG_DYNAMIC_SHARED(type, name). Each kernel's comment gives its launch configuration.
//
// Legend: B batch, T time, C channels, NH query heads, KVH key/value heads, hs head size (C / NH),
// W = C + 2·KVH·hs (row width of qkv), N rows, V / Vp vocabulary / padded vocabulary, OC output
// channels, H hidden channels. `rb(C)` is the row-kernel block size min(256, max(32, ⌈C/32⌉·32)).
// Every matrix is row-major; backward kernels ADD into their gradients, as on the CPU.

enum CUDAKernelSource {
    /// Rows and keys per attention tile (one thread per row or key, one warp per block).
    static let attentionTile = 32
    /// Rows per chunk of the deterministic column-sum kernels (weight/bias gradients).
    static let columnChunkRows = 64
    /// Elements per block of the first sumOfSquares pass.
    static let sumOfSquaresChunk = 8192

    static let source: String = #"""
#ifndef SG_EXPORT
#define SG_EXPORT(name)
#endif
#ifndef SG_DYNAMIC_SHARED
#define SG_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

#define SG_TILE 32
#define SG_NEG_BIG (-3.0e38f)
#define SG_FULL_MASK 0xffffffffu

// ---------------------------------------------------------------------------------------------
// Helpers

// SplitMix64 finaliser: the same counter-based hash as Compute/RNG.swift (mix64).
__device__ __forceinline__ unsigned long long sg_mix64(unsigned long long x) {
    unsigned long long z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Whether dropout keeps element `index` (Compute/RNG.swift dropoutKeeps, bit for bit).
__device__ __forceinline__ bool sg_keeps(unsigned long long seed, unsigned long long index, float p) {
    unsigned long long bits = sg_mix64(seed ^ sg_mix64(index));
    float u = (float)(bits >> 40) * (1.0f / 16777216.0f);
    return u >= p;
}

template <typename F>
__device__ __forceinline__ F sg_warp_sum(F v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(SG_FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float sg_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(SG_FULL_MASK, v, o));
    return v;
}

// Sum over a 1-D block whose size is a multiple of 32; every thread gets the same result, summed
// in the same order on every run. `scratch` holds 32 values of shared memory.
template <typename F>
__device__ F sg_block_sum(F v, F* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = sg_warp_sum(v);
    __syncthreads();  // a previous call may still be reading scratch
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    F t = lane < warps ? scratch[lane] : (F)0;
    return sg_warp_sum(t);
}

__device__ float sg_block_max(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = sg_warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < warps ? scratch[lane] : SG_NEG_BIG;
    return sg_warp_max(t);
}

// ---------------------------------------------------------------------------------------------
// Embeddings

// out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:] (wpe may be null: rotary positions).
// grid ⌈B·T·C/256⌉, block 256, shared 0.
extern "C" __global__ void sg_encoder_forward(float* out, const int* tokens, const float* wte, const float* wpe,
                                              int B, int T, int C) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)B * T * C) return;
    long long bt = i / C;
    int c = (int)(i % C);
    float v = wte[(long long)tokens[bt] * C + c];
    if (wpe) v += wpe[(bt % T) * C + c];
    out[i] = v;
}
SG_EXPORT(sg_encoder_forward)

// dwte[tokens[n],:] += dout[n,:] (atomics: tokens repeat).
// grid ⌈N·C/256⌉, block 256, shared 0.
extern "C" __global__ void sg_encoder_backward_wte(float* dwte, const float* dout, const int* tokens, int N, int C) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * C) return;
    long long n = i / C;
    int c = (int)(i % C);
    atomicAdd(dwte + (long long)tokens[n] * C + c, dout[i]);
}
SG_EXPORT(sg_encoder_backward_wte)

// dwpe[t,c] += Σ_b dout[b,t,c], summed over b in order (deterministic).
// grid ⌈T·C/256⌉, block 256, shared 0.
extern "C" __global__ void sg_encoder_backward_wpe(float* dwpe, const float* dout, int B, int T, int C) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)T * C) return;
    float acc = 0.0f;
    for (int b = 0; b < B; b++) acc += dout[(long long)b * T * C + i];
    dwpe[i] += acc;
}
SG_EXPORT(sg_encoder_backward_wpe)

// out[n,:] = wte[tokens[n],:] + wpe[positions[n],:] (wpe may be null).
// grid ⌈N·C/256⌉, block 256, shared 0.
extern "C" __global__ void sg_embed_forward(float* out, const int* tokens, const int* positions, const float* wte,
                                            const float* wpe, int N, int C) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * C) return;
    long long n = i / C;
    int c = (int)(i % C);
    float v = wte[(long long)tokens[n] * C + c];
    if (wpe) v += wpe[(long long)positions[n] * C + c];
    out[i] = v;
}
SG_EXPORT(sg_embed_forward)

// ---------------------------------------------------------------------------------------------
// Normalisation

// Layer norm of one row per block, two passes (mean, then variance), ε = 1e-5.
// grid N, block rb(C), shared 0.
extern "C" __global__ void sg_layernorm_forward(float* out, float* mean, float* rstd, const float* input,
                                                const float* weight, const float* bias, int N, int C) {
    __shared__ float scratch[32];
    int n = blockIdx.x;
    const float* x = input + (long long)n * C;
    float* o = out + (long long)n * C;
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += x[c];
    float m = sg_block_sum(s, scratch) / (float)C;
    float v = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) { float d = x[c] - m; v += d * d; }
    float r = 1.0f / sqrtf(sg_block_sum(v, scratch) / (float)C + 1e-5f);
    for (int c = threadIdx.x; c < C; c += blockDim.x) o[c] = (x[c] - m) * r * weight[c] + bias[c];
    if (threadIdx.x == 0) { mean[n] = m; rstd[n] = r; }
}
SG_EXPORT(sg_layernorm_forward)

// dinput[n,:] += layer-norm input gradient of row n. grid N, block rb(C), shared 0.
extern "C" __global__ void sg_layernorm_backward_input(float* dinput, const float* dout, const float* input,
                                                       const float* weight, const float* mean, const float* rstd,
                                                       int N, int C) {
    __shared__ float scratch[32];
    int n = blockIdx.x;
    const float* x = input + (long long)n * C;
    const float* d = dout + (long long)n * C;
    float* di = dinput + (long long)n * C;
    float m = mean[n], r = rstd[n];
    float s1 = 0.0f, s2 = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float dnorm = d[c] * weight[c];
        s1 += dnorm;
        s2 += dnorm * (x[c] - m) * r;
    }
    float dmean = sg_block_sum(s1, scratch) / (float)C;
    float dnormMean = sg_block_sum(s2, scratch) / (float)C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float norm = (x[c] - m) * r;
        di[c] += (d[c] * weight[c] - dmean - norm * dnormMean) * r;
    }
}
SG_EXPORT(sg_layernorm_backward_input)

// Column sums over a chunk of rows, the first half of every deterministic weight/bias gradient:
// thread (tx, ty) sums rows ty, ty+8, ... of its column, then the 8 partial sums are added in order.
__device__ __forceinline__ float sg_column_reduce(float v, float (*scratch)[33]) {
    scratch[threadIdx.y][threadIdx.x] = v;
    __syncthreads();
    float t = 0.0f;
    if (threadIdx.y == 0) for (int k = 0; k < 8; k++) t += scratch[k][threadIdx.x];
    return t;
}

// partialW[k,c] = Σ_{n in chunk k} dout·(x - mean)·rstd, partialB[k,c] = Σ dout.
// grid (⌈C/32⌉, ⌈N/rows⌉), block (32, 8), shared 0. Then sg_accumulate_partials.
extern "C" __global__ void sg_layernorm_param_partial(float* partialW, float* partialB, const float* dout,
                                                      const float* input, const float* mean, const float* rstd,
                                                      int N, int C, int rows) {
    __shared__ float sw[8][33];
    __shared__ float sb[8][33];
    int c = blockIdx.x * 32 + threadIdx.x, k = blockIdx.y;
    int n1 = min(N, (k + 1) * rows);
    float aw = 0.0f, ab = 0.0f;
    if (c < C) {
        for (int n = k * rows + threadIdx.y; n < n1; n += 8) {
            float d = dout[(long long)n * C + c];
            aw += d * (input[(long long)n * C + c] - mean[n]) * rstd[n];
            ab += d;
        }
    }
    float tw = sg_column_reduce(aw, sw);
    float tb = sg_column_reduce(ab, sb);
    if (threadIdx.y == 0 && c < C) {
        partialW[(long long)k * C + c] = tw;
        partialB[(long long)k * C + c] = tb;
    }
}
SG_EXPORT(sg_layernorm_param_partial)

// partial[k,c] = Σ_{n in chunk k} dout[n,c] (bias gradients).
// grid (⌈C/32⌉, ⌈N/rows⌉), block (32, 8), shared 0. Then sg_accumulate_partials.
extern "C" __global__ void sg_column_sums_partial(float* partial, const float* dout, int N, int C, int rows) {
    __shared__ float scratch[8][33];
    int c = blockIdx.x * 32 + threadIdx.x, k = blockIdx.y;
    int n1 = min(N, (k + 1) * rows);
    float a = 0.0f;
    if (c < C) for (int n = k * rows + threadIdx.y; n < n1; n += 8) a += dout[(long long)n * C + c];
    float t = sg_column_reduce(a, scratch);
    if (threadIdx.y == 0 && c < C) partial[(long long)k * C + c] = t;
}
SG_EXPORT(sg_column_sums_partial)

// partialW[k,c] = Σ_{n in chunk k} dout·x·rstd (RMSNorm gain gradient).
// grid (⌈C/32⌉, ⌈N/rows⌉), block (32, 8), shared 0. Then sg_accumulate_partials.
extern "C" __global__ void sg_rmsnorm_param_partial(float* partialW, const float* dout, const float* input,
                                                    const float* rstd, int N, int C, int rows) {
    __shared__ float scratch[8][33];
    int c = blockIdx.x * 32 + threadIdx.x, k = blockIdx.y;
    int n1 = min(N, (k + 1) * rows);
    float a = 0.0f;
    if (c < C) {
        for (int n = k * rows + threadIdx.y; n < n1; n += 8) {
            a += dout[(long long)n * C + c] * input[(long long)n * C + c] * rstd[n];
        }
    }
    float t = sg_column_reduce(a, scratch);
    if (threadIdx.y == 0 && c < C) partialW[(long long)k * C + c] = t;
}
SG_EXPORT(sg_rmsnorm_param_partial)

// dst[c] += Σ_k partial[k,c], k in order. grid ⌈C/256⌉, block 256, shared 0.
extern "C" __global__ void sg_accumulate_partials(float* dst, const float* partial, int chunks, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float acc = 0.0f;
    for (int k = 0; k < chunks; k++) acc += partial[(long long)k * C + c];
    dst[c] += acc;
}
SG_EXPORT(sg_accumulate_partials)

// RMSNorm of one row per block: out = x·rstd·weight, rstd = 1/√(mean(x²) + ε).
// grid N, block rb(C), shared 0.
extern "C" __global__ void sg_rmsnorm_forward(float* out, float* rstd, const float* input, const float* weight,
                                              int N, int C, float epsilon) {
    __shared__ float scratch[32];
    int n = blockIdx.x;
    const float* x = input + (long long)n * C;
    float* o = out + (long long)n * C;
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += x[c] * x[c];
    float r = 1.0f / sqrtf(sg_block_sum(s, scratch) / (float)C + epsilon);
    for (int c = threadIdx.x; c < C; c += blockDim.x) o[c] = x[c] * r * weight[c];
    if (threadIdx.x == 0) rstd[n] = r;
}
SG_EXPORT(sg_rmsnorm_forward)

// dinput[n,:] += r·(w⊙dy) − x·r³·mean(w⊙dy⊙x). grid N, block rb(C), shared 0.
extern "C" __global__ void sg_rmsnorm_backward_input(float* dinput, const float* dout, const float* input,
                                                     const float* weight, const float* rstd, int N, int C) {
    __shared__ float scratch[32];
    int n = blockIdx.x;
    const float* x = input + (long long)n * C;
    const float* d = dout + (long long)n * C;
    float* di = dinput + (long long)n * C;
    float r = rstd[n];
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += d[c] * weight[c] * x[c];
    float k = r * r * r * sg_block_sum(s, scratch) / (float)C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) di[c] += r * d[c] * weight[c] - k * x[c];
}
SG_EXPORT(sg_rmsnorm_backward_input)

// ---------------------------------------------------------------------------------------------
// Llama pieces

// Rotary embedding in place on the query and key heads of qkv ((NH + 2·KVH)·hs per row). Row n is
// at positions[n] (or n mod T when positions is null); pairs (i, i + hs/2) rotate by
// position·θ^(-2i/hs). Frequencies and cos/sin in double, rounded to float as on the CPU.
// sign = -1 rotates backwards. grid (N, NH + KVH), block 32, shared 0.
extern "C" __global__ void sg_rotary(float* qkv, const int* positions, int N, int T, int NH, int KVH, int hs,
                                     float theta, float sign) {
    int n = blockIdx.x, head = blockIdx.y, half = hs / 2;
    float p = positions ? (float)positions[n] : (float)(n % T);
    float* a = qkv + (long long)n * (NH + 2 * KVH) * hs + (long long)head * hs;
    float* b = a + half;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float frequency = (float)(1.0 / pow((double)theta, (double)(2 * i) / (double)hs));
        double angle = (double)(p * frequency);
        float c = (float)cos(angle), s = sign * (float)sin(angle);
        float x = a[i], y = b[i];
        a[i] = x * c - y * s;
        b[i] = y * c + x * s;
    }
}
SG_EXPORT(sg_rotary)

// out (N, H) = SiLU(gate) ⊙ up; input rows are gate (H) then up (H). grid ⌈N·H/256⌉, block 256.
extern "C" __global__ void sg_swiglu_forward(float* out, const float* input, int N, int H) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * H) return;
    long long n = i / H;
    int j = (int)(i % H);
    const float* g = input + n * 2 * H;
    float x = g[j];
    out[i] = x / (1.0f + expf(-x)) * g[H + j];
}
SG_EXPORT(sg_swiglu_forward)

// dinput += SwiGLU backward. grid ⌈N·H/256⌉, block 256, shared 0.
extern "C" __global__ void sg_swiglu_backward(float* dinput, const float* input, const float* dout, int N, int H) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * H) return;
    long long n = i / H;
    int j = (int)(i % H);
    const float* g = input + n * 2 * H;
    float* dg = dinput + n * 2 * H;
    float x = g[j], s = 1.0f / (1.0f + expf(-x)), dy = dout[i];
    dg[j] += dy * g[H + j] * s * (1.0f + x * (1.0f - s));
    dg[H + j] += dy * x * s;
}
SG_EXPORT(sg_swiglu_backward)

// ---------------------------------------------------------------------------------------------
// Element-wise

// GELU, tanh approximation. grid ⌈count/256⌉, block 256, shared 0.
extern "C" __global__ void sg_gelu_forward(float* out, const float* input, long long count) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    float x = input[i];
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    out[i] = 0.5f * x * (1.0f + tanhf(u));
}
SG_EXPORT(sg_gelu_forward)

// dinput += GELU'(input)·dout. grid ⌈count/256⌉, block 256, shared 0.
extern "C" __global__ void sg_gelu_backward(float* dinput, const float* input, const float* dout, long long count) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    const float k = 0.7978845608028654f;
    float x = input[i], x2 = x * x;
    float t = tanhf(k * (x + 0.044715f * x2 * x));
    float sech2 = 1.0f - t * t;
    float grad = 0.5f * (1.0f + t) + 0.5f * x * sech2 * k * (1.0f + 3.0f * 0.044715f * x2);
    dinput[i] += grad * dout[i];
}
SG_EXPORT(sg_gelu_backward)

// out = a + b. grid ⌈count/256⌉, block 256, shared 0.
extern "C" __global__ void sg_residual_forward(float* out, const float* a, const float* b, long long count) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) out[i] = a[i] + b[i];
}
SG_EXPORT(sg_residual_forward)

// Inverted dropout in place (forward and backward alike): x = keep ? x/(1-p) : 0.
// grid ⌈count/256⌉, block 256, shared 0.
extern "C" __global__ void sg_dropout(float* x, long long count, float p, unsigned long long seed) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    float scale = 1.0f / (1.0f - p);
    x[i] = sg_keeps(seed, (unsigned long long)i, p) ? x[i] * scale : 0.0f;
}
SG_EXPORT(sg_dropout)

// out[n,o] += bias[o] (after the cuBLAS product). grid ⌈N·OC/256⌉, block 256, shared 0.
extern "C" __global__ void sg_add_bias(float* out, const float* bias, int N, int OC) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (long long)N * OC) out[i] += bias[i % OC];
}
SG_EXPORT(sg_add_bias)

// ---------------------------------------------------------------------------------------------
// Loss

// Softmax + cross-entropy over the first V of Vp logits of one row per block. With weights, the
// row is overwritten by w·(softmax − onehot) and the padding columns by 0.
// grid N, block 256, shared 0.
extern "C" __global__ void sg_cross_entropy(float* losses, float* logits, const int* targets, const float* weights,
                                            int N, int V, int Vp) {
    __shared__ float scratch[32];
    int n = blockIdx.x;
    float* row = logits + (long long)n * Vp;
    int target = targets[n];
    float xt = row[target];
    float mx = SG_NEG_BIG;
    for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, row[j]);
    mx = sg_block_max(mx, scratch);
    float s = 0.0f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) s += expf(row[j] - mx);
    float lse = mx + logf(sg_block_sum(s, scratch));
    if (threadIdx.x == 0) losses[n] = lse - xt;
    if (!weights) return;
    float w = weights[n];
    for (int j = threadIdx.x; j < Vp; j += blockDim.x) row[j] = j < V ? w * expf(row[j] - lse) : 0.0f;
    __syncthreads();
    if (threadIdx.x == 0) row[target] -= w;
}
SG_EXPORT(sg_cross_entropy)

// ---------------------------------------------------------------------------------------------
// Causal attention, flash style: tiles of 32 query rows × 32 keys, one thread per row (or key),
// online softmax, the log-sum-exp saved per row; no (T, T) matrix in global memory. Query head h
// reads key/value head h / (NH/KVH). Dropout on the probabilities uses the CPU's element index
// ((b·NH + h)·T + i)·T + j; the normaliser (and so the lse) is that of the undropped softmax.

// Dropout multiplier of attention probability (row i, key j) of task (b·NH + h).
__device__ __forceinline__ float sg_attention_keep(int useDropout, unsigned long long seed, float p, float scale,
                                                   long long task, int T, int i, int j) {
    if (!useDropout) return 1.0f;
    unsigned long long index = ((unsigned long long)task * (unsigned long long)T + (unsigned long long)i)
                               * (unsigned long long)T + (unsigned long long)j;
    return sg_keeps(seed, index, p) ? scale : 0.0f;
}

// Copies `rows` rows of `width` floats (row stride `stride`) into shared memory with row pitch
// `pitch`, zero-filling rows at or past `limit`. All threads of the block take part.
__device__ __forceinline__ void sg_load_tile(float* dst, int pitch, const float* src, long long stride, int first,
                                             int limit, int width) {
    for (int idx = threadIdx.x; idx < SG_TILE * width; idx += blockDim.x) {
        int r = idx / width, d = idx % width;
        dst[r * pitch + d] = first + r < limit ? src[(long long)(first + r) * stride + d] : 0.0f;
    }
}

// out (B, T, C), lse (B, NH, T) from qkv (B, T, W).
// grid (⌈T/32⌉, NH, B), block 32, dynamic shared (2·32·(hs+1) + 2·32·hs + 32)·4 bytes.
extern "C" __global__ void sg_attention_forward(float* out, float* lse, const float* qkv, int B, int T, int C,
                                                int NH, int KVH, float dropP, unsigned long long seed,
                                                int useDropout) {
    SG_DYNAMIC_SHARED(float, smem);
    int hs = C / NH, W = C + 2 * KVH * hs, group = NH / KVH, pitch = hs + 1;
    int i0 = blockIdx.x * SG_TILE, h = blockIdx.y, b = blockIdx.z, g = h / group;
    int r = threadIdx.x, i = i0 + r;
    float* Qs = smem;                  // (32, hs+1)
    float* Os = Qs + SG_TILE * pitch;  // (32, hs+1)
    float* Ks = Os + SG_TILE * pitch;  // (32, hs)
    float* Vs = Ks + SG_TILE * hs;     // (32, hs)
    float* Ls = Vs + SG_TILE * hs;     // (32)
    const float* base = qkv + (long long)b * T * W;
    float scale = 1.0f / sqrtf((float)hs);
    float dropScale = 1.0f / (1.0f - dropP);
    long long task = (long long)b * NH + h;
    sg_load_tile(Qs, pitch, base + h * hs, W, i0, T, hs);
    for (int idx = threadIdx.x; idx < SG_TILE * pitch; idx += blockDim.x) Os[idx] = 0.0f;
    float m = SG_NEG_BIG, l = 0.0f;
    int lastKey = min(T, i0 + SG_TILE) - 1;
    for (int j0 = 0; j0 <= lastKey; j0 += SG_TILE) {
        __syncthreads();
        sg_load_tile(Ks, hs, base + C + g * hs, W, j0, T, hs);
        sg_load_tile(Vs, hs, base + C + KVH * hs + g * hs, W, j0, T, hs);
        __syncthreads();
        if (i >= T) continue;
        float s[SG_TILE];
#pragma unroll
        for (int jj = 0; jj < SG_TILE; jj++) s[jj] = 0.0f;
        for (int d = 0; d < hs; d++) {
            float q = Qs[r * pitch + d];
#pragma unroll
            for (int jj = 0; jj < SG_TILE; jj++) s[jj] += q * Ks[jj * hs + d];
        }
        float mt = m;
#pragma unroll
        for (int jj = 0; jj < SG_TILE; jj++) {
            s[jj] = j0 + jj <= i ? s[jj] * scale : SG_NEG_BIG;
            mt = fmaxf(mt, s[jj]);
        }
        float correction = expf(m - mt), sum = 0.0f;
#pragma unroll
        for (int jj = 0; jj < SG_TILE; jj++) {
            float e = j0 + jj <= i ? expf(s[jj] - mt) : 0.0f;
            sum += e;
            s[jj] = e * sg_attention_keep(useDropout, seed, dropP, dropScale, task, T, i, j0 + jj);
        }
        l = l * correction + sum;
        m = mt;
        for (int d = 0; d < hs; d++) {
            float acc = Os[r * pitch + d] * correction;
#pragma unroll
            for (int jj = 0; jj < SG_TILE; jj++) acc += s[jj] * Vs[jj * hs + d];
            Os[r * pitch + d] = acc;
        }
    }
    if (i < T) {
        Ls[r] = l;
        lse[task * T + i] = m + logf(l);
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < SG_TILE * hs; idx += blockDim.x) {
        int rr = idx / hs, d = idx % hs;
        if (i0 + rr < T) out[((long long)b * T + i0 + rr) * C + h * hs + d] = Os[rr * pitch + d] / Ls[rr];
    }
}
SG_EXPORT(sg_attention_forward)

// Query side of attention backward, one thread per query row i of (b, h).
// computeDelta = 1: delta[b,h,i] = Σ_j P_ij·keep_ij·(dO_i·V_j) (= dO_i·O_i, the softmax-backward row dot).
// computeDelta = 0: dQ_i += scale·Σ_j P_ij·(keep_ij·dO_i·V_j − delta_i)·K_j.
// grid (⌈T/32⌉, NH, B), block 32, dynamic shared (3·32·(hs+1) + 2·32·hs)·4 bytes.
extern "C" __global__ void sg_attention_backward_query(float* dqkv, float* delta, const float* dout,
                                                       const float* lse, const float* qkv, int B, int T, int C,
                                                       int NH, int KVH, float dropP, unsigned long long seed,
                                                       int useDropout, int computeDelta) {
    SG_DYNAMIC_SHARED(float, smem);
    int hs = C / NH, W = C + 2 * KVH * hs, group = NH / KVH, pitch = hs + 1;
    int i0 = blockIdx.x * SG_TILE, h = blockIdx.y, b = blockIdx.z, g = h / group;
    int r = threadIdx.x, i = i0 + r;
    float* Qs = smem;                   // (32, hs+1)
    float* Gs = Qs + SG_TILE * pitch;   // (32, hs+1) dout rows
    float* dQs = Gs + SG_TILE * pitch;  // (32, hs+1)
    float* Ks = dQs + SG_TILE * pitch;  // (32, hs)
    float* Vs = Ks + SG_TILE * hs;      // (32, hs)
    const float* base = qkv + (long long)b * T * W;
    float scale = 1.0f / sqrtf((float)hs);
    float dropScale = 1.0f / (1.0f - dropP);
    long long task = (long long)b * NH + h;
    sg_load_tile(Qs, pitch, base + h * hs, W, i0, T, hs);
    sg_load_tile(Gs, pitch, dout + (long long)b * T * C + h * hs, C, i0, T, hs);
    for (int idx = threadIdx.x; idx < SG_TILE * pitch; idx += blockDim.x) dQs[idx] = 0.0f;
    float rowLSE = i < T ? lse[task * T + i] : 0.0f;
    float rowDelta = (!computeDelta && i < T) ? delta[task * T + i] : 0.0f;
    float dot = 0.0f;
    int lastKey = min(T, i0 + SG_TILE) - 1;
    for (int j0 = 0; j0 <= lastKey; j0 += SG_TILE) {
        __syncthreads();
        sg_load_tile(Ks, hs, base + C + g * hs, W, j0, T, hs);
        sg_load_tile(Vs, hs, base + C + KVH * hs + g * hs, W, j0, T, hs);
        __syncthreads();
        if (i >= T) continue;
        float s[SG_TILE], dp[SG_TILE];
#pragma unroll
        for (int jj = 0; jj < SG_TILE; jj++) { s[jj] = 0.0f; dp[jj] = 0.0f; }
        for (int d = 0; d < hs; d++) {
            float q = Qs[r * pitch + d], go = Gs[r * pitch + d];
#pragma unroll
            for (int jj = 0; jj < SG_TILE; jj++) {
                s[jj] += q * Ks[jj * hs + d];
                dp[jj] += go * Vs[jj * hs + d];
            }
        }
#pragma unroll
        for (int jj = 0; jj < SG_TILE; jj++) {
            int j = j0 + jj;
            float p = j <= i ? expf(s[jj] * scale - rowLSE) : 0.0f;
            float dpd = dp[jj] * sg_attention_keep(useDropout, seed, dropP, dropScale, task, T, i, j);
            dot += p * dpd;
            s[jj] = p * (dpd - rowDelta);  // the score gradient (used when computeDelta = 0)
        }
        if (computeDelta) continue;
        for (int d = 0; d < hs; d++) {
            float acc = dQs[r * pitch + d];
#pragma unroll
            for (int jj = 0; jj < SG_TILE; jj++) acc += s[jj] * Ks[jj * hs + d];
            dQs[r * pitch + d] = acc;
        }
    }
    if (computeDelta) {
        if (i < T) delta[task * T + i] = dot;
        return;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < SG_TILE * hs; idx += blockDim.x) {
        int rr = idx / hs, d = idx % hs;
        if (i0 + rr < T) dqkv[((long long)b * T + i0 + rr) * W + h * hs + d] += scale * dQs[rr * pitch + d];
    }
}
SG_EXPORT(sg_attention_backward_query)

// Key side of attention backward: one thread per key j of key/value head g, looping over the
// query heads of its group and the query rows i ≥ j. dV_j += Σ_i P_ij·keep_ij·dO_i,
// dK_j += scale·Σ_i dS_ij·Q_i. Each block owns its keys' gradients (no atomics).
// grid (⌈T/32⌉, KVH, B), block 32, dynamic shared (4·32·(hs+1) + 2·32·hs + 64)·4 bytes.
extern "C" __global__ void sg_attention_backward_kv(float* dqkv, const float* delta, const float* dout,
                                                    const float* lse, const float* qkv, int B, int T, int C,
                                                    int NH, int KVH, float dropP, unsigned long long seed,
                                                    int useDropout) {
    SG_DYNAMIC_SHARED(float, smem);
    int hs = C / NH, W = C + 2 * KVH * hs, group = NH / KVH, pitch = hs + 1;
    int j0 = blockIdx.x * SG_TILE, g = blockIdx.y, b = blockIdx.z;
    int r = threadIdx.x, j = j0 + r;
    float* Ks = smem;                   // (32, hs+1)
    float* Vs = Ks + SG_TILE * pitch;   // (32, hs+1)
    float* dKs = Vs + SG_TILE * pitch;  // (32, hs+1)
    float* dVs = dKs + SG_TILE * pitch; // (32, hs+1)
    float* Qs = dVs + SG_TILE * pitch;  // (32, hs)
    float* Gs = Qs + SG_TILE * hs;      // (32, hs) dout rows
    float* Ls = Gs + SG_TILE * hs;      // (32) lse of the query rows
    float* Ds = Ls + SG_TILE;           // (32) delta of the query rows
    const float* base = qkv + (long long)b * T * W;
    float scale = 1.0f / sqrtf((float)hs);
    float dropScale = 1.0f / (1.0f - dropP);
    sg_load_tile(Ks, pitch, base + C + g * hs, W, j0, T, hs);
    sg_load_tile(Vs, pitch, base + C + KVH * hs + g * hs, W, j0, T, hs);
    for (int idx = threadIdx.x; idx < SG_TILE * pitch; idx += blockDim.x) { dKs[idx] = 0.0f; dVs[idx] = 0.0f; }
    for (int h = g * group; h < (g + 1) * group; h++) {
        long long task = (long long)b * NH + h;
        for (int i0 = j0; i0 < T; i0 += SG_TILE) {
            __syncthreads();
            sg_load_tile(Qs, hs, base + h * hs, W, i0, T, hs);
            sg_load_tile(Gs, hs, dout + (long long)b * T * C + h * hs, C, i0, T, hs);
            for (int ii = threadIdx.x; ii < SG_TILE; ii += blockDim.x) {
                Ls[ii] = i0 + ii < T ? lse[task * T + i0 + ii] : 0.0f;
                Ds[ii] = i0 + ii < T ? delta[task * T + i0 + ii] : 0.0f;
            }
            __syncthreads();
            if (j >= T) continue;
            float s[SG_TILE], dp[SG_TILE];
#pragma unroll
            for (int ii = 0; ii < SG_TILE; ii++) { s[ii] = 0.0f; dp[ii] = 0.0f; }
            for (int d = 0; d < hs; d++) {
                float k = Ks[r * pitch + d], v = Vs[r * pitch + d];
#pragma unroll
                for (int ii = 0; ii < SG_TILE; ii++) {
                    s[ii] += k * Qs[ii * hs + d];
                    dp[ii] += v * Gs[ii * hs + d];
                }
            }
#pragma unroll
            for (int ii = 0; ii < SG_TILE; ii++) {
                int i = i0 + ii;
                bool valid = i < T && j <= i;
                float p = valid ? expf(s[ii] * scale - Ls[ii]) : 0.0f;
                float keep = valid ? sg_attention_keep(useDropout, seed, dropP, dropScale, task, T, i, j) : 0.0f;
                s[ii] = p * keep;                    // probability after dropout: weight of dO_i in dV_j
                dp[ii] = p * (keep * dp[ii] - Ds[ii]);  // score gradient: weight of Q_i in dK_j
            }
            for (int d = 0; d < hs; d++) {
                float av = dVs[r * pitch + d], ak = dKs[r * pitch + d];
#pragma unroll
                for (int ii = 0; ii < SG_TILE; ii++) {
                    av += s[ii] * Gs[ii * hs + d];
                    ak += dp[ii] * Qs[ii * hs + d];
                }
                dVs[r * pitch + d] = av;
                dKs[r * pitch + d] = ak;
            }
        }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < SG_TILE * hs; idx += blockDim.x) {
        int rr = idx / hs, d = idx % hs;
        if (j0 + rr >= T) continue;
        float* row = dqkv + ((long long)b * T + j0 + rr) * W;
        row[C + g * hs + d] += scale * dKs[rr * pitch + d];
        row[C + KVH * hs + g * hs + d] += dVs[rr * pitch + d];
    }
}
SG_EXPORT(sg_attention_backward_kv)

// ---------------------------------------------------------------------------------------------
// Inference with a KV cache. Cache layout (slots, KVH, capacity, hs).

// Stores every new row's keys and values at (slots[n], positions[n]).
// grid (N, KVH), block 64, shared 0.
extern "C" __global__ void sg_kv_cache_write(float* keys, float* values, const float* qkv, const int* slots,
                                             const int* positions, int N, int C, int KVH, int hs, int capacity) {
    int n = blockIdx.x, g = blockIdx.y;
    int W = C + 2 * KVH * hs;
    long long dst = (((long long)slots[n] * KVH + g) * capacity + positions[n]) * hs;
    const float* row = qkv + (long long)n * W;
    for (int d = threadIdx.x; d < hs; d += blockDim.x) {
        keys[dst + d] = row[C + g * hs + d];
        values[dst + d] = row[C + KVH * hs + g * hs + d];
    }
}
SG_EXPORT(sg_kv_cache_write)

// One query row (n, head h) against cached positions 0...positions[n] of its slot, in chunks of
// blockDim keys with an online softmax. grid (N, NH), block 128, dynamic shared (2·hs + 128)·4 bytes.
extern "C" __global__ void sg_cached_attention(float* out, const float* qkv, const float* keys, const float* values,
                                               const int* slots, const int* positions, int N, int C, int NH,
                                               int KVH, int capacity) {
    SG_DYNAMIC_SHARED(float, smem);
    __shared__ float scratch[32];
    int n = blockIdx.x, h = blockIdx.y;
    int hs = C / NH, W = C + 2 * KVH * hs, g = h / (NH / KVH);
    float* q = smem;         // (hs)
    float* o = q + hs;       // (hs)
    float* p = o + hs;       // (blockDim)
    long long head = ((long long)slots[n] * KVH + g) * capacity * hs;
    const float* K = keys + head;
    const float* V = values + head;
    int length = positions[n] + 1;
    float scale = 1.0f / sqrtf((float)hs);
    for (int d = threadIdx.x; d < hs; d += blockDim.x) { q[d] = qkv[(long long)n * W + h * hs + d]; o[d] = 0.0f; }
    __syncthreads();
    float m = SG_NEG_BIG, l = 0.0f;
    for (int j0 = 0; j0 < length; j0 += blockDim.x) {
        int j = j0 + threadIdx.x;
        float score = SG_NEG_BIG;
        if (j < length) {
            float dot = 0.0f;
            for (int d = 0; d < hs; d++) dot += q[d] * K[(long long)j * hs + d];
            score = dot * scale;
        }
        float mt = fmaxf(m, sg_block_max(score, scratch));
        float e = j < length ? expf(score - mt) : 0.0f;
        p[threadIdx.x] = e;
        float sum = sg_block_sum(e, scratch);  // its barriers also publish p
        float correction = expf(m - mt);
        int count = min((int)blockDim.x, length - j0);
        for (int d = threadIdx.x; d < hs; d += blockDim.x) {
            float acc = o[d] * correction;
            for (int jj = 0; jj < count; jj++) acc += p[jj] * V[(long long)(j0 + jj) * hs + d];
            o[d] = acc;
        }
        l = l * correction + sum;
        m = mt;
        __syncthreads();  // p is rewritten by the next chunk
    }
    for (int d = threadIdx.x; d < hs; d += blockDim.x) out[(long long)n * C + h * hs + d] = o[d] / l;
}
SG_EXPORT(sg_cached_attention)

// Copies positions 0..<length of slot `source` to slot `destination` for every cached head.
// grid (⌈length·hs/256⌉, NH), block 256, shared 0.
extern "C" __global__ void sg_copy_cache_slot(float* keys, float* values, int source, int destination, int length,
                                              int NH, int capacity, int hs) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)length * hs) return;
    int h = blockIdx.y;
    long long src = ((long long)source * NH + h) * capacity * hs + idx;
    long long dst = ((long long)destination * NH + h) * capacity * hs + idx;
    keys[dst] = keys[src];
    values[dst] = values[src];
}
SG_EXPORT(sg_copy_cache_slot)

// ---------------------------------------------------------------------------------------------
// int8 weights

// Per-row absmax quantisation: scale = max|w|/127, q = clamp(round-half-even(w/scale)).
// grid rows, block rb(C), shared 0.
extern "C" __global__ void sg_quantize_rows(const float* weight, signed char* q, float* scales, int rows, int C) {
    __shared__ float scratch[32];
    int row = blockIdx.x;
    const float* w = weight + (long long)row * C;
    signed char* dst = q + (long long)row * C;
    float amax = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) amax = fmaxf(amax, fabsf(w[c]));
    amax = sg_block_max(amax, scratch);
    float scale = amax / 127.0f;
    float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        dst[c] = (signed char)fmaxf(-127.0f, fminf(127.0f, rintf(w[c] * inv)));
    }
    if (threadIdx.x == 0) scales[row] = scale;
}
SG_EXPORT(sg_quantize_rows)

// out (N, OC) = input (N, C) · (scales ⊙ q)ᵀ + bias for a few rows: one warp per output channel.
// grid (⌈OC/8⌉, N), block 256, shared 0.
extern "C" __global__ void sg_matmul_int8(float* out, const float* input, const signed char* q, const float* scales,
                                          const float* bias, int N, int C, int OC) {
    int lane = threadIdx.x & 31;
    int o = blockIdx.x * 8 + (threadIdx.x >> 5), n = blockIdx.y;
    if (o >= OC) return;  // whole warps leave together
    const signed char* w = q + (long long)o * C;
    const float* x = input + (long long)n * C;
    float acc = 0.0f;
    for (int c = lane; c < C; c += 32) acc += (float)w[c] * x[c];
    acc = sg_warp_sum(acc);
    if (lane == 0) out[(long long)n * OC + o] = acc * scales[o] + (bias ? bias[o] : 0.0f);
}
SG_EXPORT(sg_matmul_int8)

// weight[r,c] = q[r,c]·scales[r] (prefill: dequantise, then cuBLAS). grid ⌈rows·C/256⌉, block 256.
extern "C" __global__ void sg_dequantize_rows(float* weight, const signed char* q, const float* scales, int rows,
                                              int C) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (long long)rows * C) weight[i] = (float)q[i] * scales[i / C];
}
SG_EXPORT(sg_dequantize_rows)

// ---------------------------------------------------------------------------------------------
// Optimiser

// partial[k] = Σ x² over elements [k·chunk, (k+1)·chunk), in double, in a fixed order.
// grid ⌈count/chunk⌉, block 256, shared 0.
extern "C" __global__ void sg_sum_squares_partial(double* partial, const float* x, long long count, int chunk) {
    __shared__ double scratch[32];
    long long start = (long long)blockIdx.x * chunk;
    long long end = start + chunk < count ? start + chunk : count;
    double acc = 0.0;
    for (long long i = start + threadIdx.x; i < end; i += blockDim.x) acc += (double)x[i] * (double)x[i];
    double total = sg_block_sum(acc, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}
SG_EXPORT(sg_sum_squares_partial)

// result[0] = Σ_k partial[k] in a fixed order. grid 1, block 256, shared 0.
extern "C" __global__ void sg_sum_squares_final(double* result, const double* partial, int count) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (int k = threadIdx.x; k < count; k += blockDim.x) acc += partial[k];
    double total = sg_block_sum(acc, scratch);
    if (threadIdx.x == 0) result[0] = total;
}
SG_EXPORT(sg_sum_squares_final)

// AdamW (decoupled weight decay; bias corrections computed on the host in double, as on the CPU).
// grid ⌈count/256⌉, block 256, shared 0.
extern "C" __global__ void sg_adamw(float* params, const float* grads, float* m, float* v, long long count,
                                    float beta1, float beta2, float bc2Sqrt, float stepSize, float decay,
                                    float epsilon, float gradientScale) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    float grad = grads[i] * gradientScale;
    float mi = beta1 * m[i] + (1.0f - beta1) * grad;
    float vi = beta2 * v[i] + (1.0f - beta2) * grad * grad;
    m[i] = mi;
    v[i] = vi;
    params[i] = params[i] * decay - stepSize * mi / (sqrtf(vi) / bc2Sqrt + epsilon);
}
SG_EXPORT(sg_adamw)
"""#
}
