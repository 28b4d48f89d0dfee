// Causal multi-head self-attention, computed per (batch, head) in blocks of query rows.
//
// Legend: B batch, T time, C channels, NH heads, hs head size (C/NH), bs query rows per block,
// KVH key/value heads (grouped-query attention: query head h reads key/value head h / (NH/KVH)),
// W = C + 2·KVH·hs the row width of qkv.
// qkv (B, T, W) holds Q (C) | K (KVH·hs) | V (KVH·hs); head h uses columns h*hs ..< (h+1)*hs of Q. Only the causal
// part of each block (keys 0 ..< end of block) is computed. Forward keeps the log-sum-exp of each
// softmax row; backward recomputes the probabilities from it (flash-attention style), so no
// (B, NH, T, T) tensor is ever stored.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let attentionBlockRows = 64

extension CPUBackend {
    /// Chunks of (b, h) tasks: each chunk owns its scratch slot, each task its outputs.
    @inline(__always)
    private func attentionChunks(_ tasks: Int) -> Int { max(1, min(Parallel.threadCount, tasks)) }

    public func attentionForward(out: FloatBuffer, lse: FloatBuffer, qkv: FloatBuffer,
                                 B: Int, T: Int, C: Int, NH: Int, KVH: Int, dropout: DropoutSpec?) {
        let drop = dropout?.isActive == true ? dropout : nil
        if usesSmallAttention(T: T, headSize: C / NH) {
            smallAttentionForward(out: out.pointer, lse: lse.pointer, qkv: qkv.pointer, B: B, T: T, C: C, NH: NH, KVH: KVH,
                                  dropout: drop)
        } else {
            blockedAttentionForward(out: out.pointer, lse: lse.pointer, qkv: qkv.pointer, B: B, T: T, C: C, NH: NH, KVH: KVH,
                                    dropout: drop)
        }
    }

    public func attentionBackward(dqkv: FloatBuffer, dout: FloatBuffer, lse: FloatBuffer, qkv: FloatBuffer,
                                  B: Int, T: Int, C: Int, NH: Int, KVH: Int, dropout: DropoutSpec?) {
        let drop = dropout?.isActive == true ? dropout : nil
        if usesSmallAttention(T: T, headSize: C / NH) {
            smallAttentionBackward(dqkv: dqkv.pointer, dout: dout.pointer, lse: lse.pointer, qkv: qkv.pointer, B: B, T: T, C: C,
                                   NH: NH, KVH: KVH, dropout: drop)
        } else {
            blockedAttentionBackward(dqkv: dqkv.pointer, dout: dout.pointer, lse: lse.pointer, qkv: qkv.pointer, B: B, T: T,
                                     C: C, NH: NH, KVH: KVH, dropout: drop)
        }
    }

    /// Attention through BLAS in blocks of query rows (long contexts, any head size).
    func blockedAttentionForward(out: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>,
                                 qkv: UnsafeMutablePointer<Float>,  // (B,T,C) (B,NH,T) (B,T,W)
                                 B: Int, T: Int, C: Int, NH: Int, KVH: Int, dropout drop: DropoutSpec?) {
        let hs = C / NH, W = C + 2 * KVH * hs, group = NH / KVH
        let scale = 1 / Float(hs).squareRoot()
        let bs = min(attentionBlockRows, T)
        let tasks = B * NH
        let chunks = attentionChunks(tasks)
        let perChunk = bs * T
        let scratch = scratchFloats(perChunk * chunks)
        let dims = (W, T, C, NH, hs, bs, tasks, chunks, perChunk, group, KVH)
        Parallel.forEach(chunks, (out, lse, qkv, scratch, scale, drop, dims)) { ctx, chunk in
            let (out, lse, qkv, scratch, scale, drop, dims) = ctx
            let (W, T, C, NH, hs, bs, tasks, chunks, perChunk, group, KVH) = dims
            let S = scratch + chunk * perChunk  // (bs, T)
            let lo = tasks * chunk / chunks, hi = tasks * (chunk + 1) / chunks
            for task in lo..<hi {
                let b = task / NH, h = task % NH
                let Q = qkv + b * T * W + h * hs
                let K = qkv + b * T * W + C + (h / group) * hs, Vv = K + KVH * hs
                let O = out + b * T * C + h * hs
                let L = lse + task * T
                var r0 = 0
                while r0 < T {
                    let r1 = min(T, r0 + bs), m = r1 - r0
                    // S = scale · Q[r0..<r1] · K[0..<r1]ᵀ
                    sgemm(transA: false, transB: true, m: m, n: r1, k: hs, alpha: scale,
                          a: Q + r0 * W, lda: W, b: K, ldb: W, beta: 0, c: S, ldc: T)
                    for i in r0..<r1 {
                        let row = S + (i - r0) * T
                        let lseValue = softmaxRowInPlace(row, valid: i + 1, total: r1)
                        L[i] = lseValue
                        if let drop {
                            applyAttentionDropout(row, count: i + 1, drop: drop, rowIndex: task * T + i, T: T)
                        }
                    }
                    // O[r0..<r1] = P · V[0..<r1]
                    sgemm(transA: false, transB: false, m: m, n: hs, k: r1, alpha: 1,
                          a: S, lda: T, b: Vv, ldb: W, beta: 0, c: O + r0 * C, ldc: C)
                    r0 = r1
                }
            }
        }
    }

    func blockedAttentionBackward(dqkv: UnsafeMutablePointer<Float>, dout: UnsafeMutablePointer<Float>,
                                  lse: UnsafeMutablePointer<Float>, qkv: UnsafeMutablePointer<Float>,
                                  B: Int, T: Int, C: Int, NH: Int, KVH: Int, dropout drop: DropoutSpec?) {
        let hs = C / NH, W = C + 2 * KVH * hs, group = NH / KVH
        let scale = 1 / Float(hs).squareRoot()
        let bs = min(attentionBlockRows, T)
        // One task per (batch, key/value head): it owns dK and dV of that head and dQ of the query
        // heads that share it, so no two chunks write the same gradient.
        let tasks = B * KVH
        let chunks = attentionChunks(tasks)
        let perChunk = bs * T * (drop == nil ? 2 : 3)
        let scratch = scratchFloats(perChunk * chunks)
        let dims = (W, T, C, NH, hs, bs, tasks, chunks, perChunk, group, KVH)
        Parallel.forEach(chunks, (dqkv, dout, lse, qkv, scratch, scale, drop, dims)) { ctx, chunk in
            let (dqkv, dout, lse, qkv, scratch, scale, drop, dims) = ctx
            let (W, T, C, NH, hs, bs, tasks, chunks, perChunk, group, KVH) = dims
            let P = scratch + chunk * perChunk   // (bs, T) probabilities
            let dP = P + bs * T                  // (bs, T) gradient of probabilities, then of scores
            let Pd = drop == nil ? P : dP + bs * T  // (bs, T) probabilities after dropout
            let lo = tasks * chunk / chunks, hi = tasks * (chunk + 1) / chunks
            for pair in lo..<hi {
                let b = pair / KVH, g = pair % KVH
                for h in (g * group)..<((g + 1) * group) {
                    let task = b * NH + h
                    let Q = qkv + b * T * W + h * hs
                    let K = qkv + b * T * W + C + g * hs, Vv = K + KVH * hs
                    let dQ = dqkv + b * T * W + h * hs
                    let dK = dqkv + b * T * W + C + g * hs, dV = dK + KVH * hs
                    let dO = dout + b * T * C + h * hs
                    let L = lse + task * T
                    var r0 = 0
                    while r0 < T {
                        let r1 = min(T, r0 + bs), m = r1 - r0
                        sgemm(transA: false, transB: true, m: m, n: r1, k: hs, alpha: scale,
                              a: Q + r0 * W, lda: W, b: K, ldb: W, beta: 0, c: P, ldc: T)
                        for i in r0..<r1 {
                            let row = P + (i - r0) * T
                            probabilitiesFromLSE(row, valid: i + 1, total: r1, lse: L[i])
                            if let drop {
                                let rowD = Pd + (i - r0) * T
                                rowD.update(from: row, count: r1)
                                applyAttentionDropout(rowD, count: i + 1, drop: drop, rowIndex: task * T + i, T: T)
                            }
                        }
                        // dPd = dO[r0..<r1] · V[0..<r1]ᵀ
                        sgemm(transA: false, transB: true, m: m, n: r1, k: hs, alpha: 1,
                              a: dO + r0 * C, lda: C, b: Vv, ldb: W, beta: 0, c: dP, ldc: T)
                        // dV[0..<r1] += Pdᵀ · dO[r0..<r1]
                        sgemm(transA: true, transB: false, m: r1, n: hs, k: m, alpha: 1,
                              a: Pd, lda: T, b: dO + r0 * C, ldb: C, beta: 1, c: dV, ldc: W)
                        for i in r0..<r1 {
                            let p = P + (i - r0) * T, dp = dP + (i - r0) * T
                            if let drop {
                                applyAttentionDropout(dp, count: i + 1, drop: drop, rowIndex: task * T + i, T: T)
                            }
                            softmaxBackwardRowInPlace(dp, probabilities: p, valid: i + 1, total: r1)
                        }
                        // dQ[r0..<r1] += scale · dS · K[0..<r1]
                        sgemm(transA: false, transB: false, m: m, n: hs, k: r1, alpha: scale,
                              a: dP, lda: T, b: K, ldb: W, beta: 1, c: dQ + r0 * W, ldc: W)
                        // dK[0..<r1] += scale · dSᵀ · Q[r0..<r1]
                        sgemm(transA: true, transB: false, m: r1, n: hs, k: m, alpha: scale,
                              a: dP, lda: T, b: Q + r0 * W, ldb: W, beta: 1, c: dK, ldc: W)
                        r0 = r1
                    }
                }
            }
        }
    }
}

/// Lanes j..<j+8 of a row that lie below `valid`.
@inline(__always)
func laneMask(_ j: Int, valid: Int) -> SIMDMask<SIMD8<Int32>> {
    SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7) .< SIMD8<Int32>(repeating: Int32(truncatingIfNeeded: valid - j))
}

/// Softmax over row[0..<valid] in place; row[valid..<total] set to 0. Returns the log-sum-exp.
/// With `capacity` ≥ valid rounded up to 8 (floats the row may hold), the last partial vector is
/// done as one masked vector (its lanes past `valid` become 0) instead of one element at a time.
@inline(__always)
func softmaxRowInPlace(_ row: UnsafeMutablePointer<Float>, valid: Int, total: Int, capacity: Int = 0) -> Float {
    let masked = capacity >= (valid + 7) & ~7
    let body = masked ? valid & ~7 : valid
    var mx8 = Float8(repeating: -.greatestFiniteMagnitude)
    var j = 0
    while j + 8 <= body { let v = load8(row + j); mx8 = mx8.replacing(with: v, where: v .> mx8); j += 8 }
    if masked && j < valid {
        let v = load8(row + j).replacing(with: -.greatestFiniteMagnitude, where: .!laneMask(j, valid: valid))
        mx8 = mx8.replacing(with: v, where: v .> mx8)
    }
    var mx = horizontalMax(mx8)
    while j < body { mx = max(mx, row[j]); j += 1 }
    var s8 = Float8()
    j = 0
    while j + 8 <= body { let e = exp8(load8(row + j) - mx); store8(e, row + j); s8 += e; j += 8 }
    if masked && j < valid {
        let e = exp8(load8(row + j) - mx).replacing(with: 0, where: .!laneMask(j, valid: valid))
        store8(e, row + j); s8 += e
    }
    var sum = s8.sum()
    while j < body { let e = expScalar(row[j] - mx); row[j] = e; sum += e; j += 1 }
    let inv = 1 / sum
    j = 0
    while j + 8 <= valid { store8(load8(row + j) * inv, row + j); j += 8 }
    if masked && j < valid { store8(load8(row + j) * inv, row + j); j += 8 }
    while j < valid { row[j] *= inv; j += 1 }
    for z in j..<max(j, total) { row[z] = 0 }
    return mx + logf(sum)
}

/// row[j] = exp(row[j] - lse) for j < valid, 0 for valid ≤ j < total (`capacity` as in
/// `softmaxRowInPlace`).
@inline(__always)
func probabilitiesFromLSE(_ row: UnsafeMutablePointer<Float>, valid: Int, total: Int, lse: Float, capacity: Int = 0) {
    var j = 0
    while j + 8 <= valid { store8(exp8(load8(row + j) - lse), row + j); j += 8 }
    if capacity >= (valid + 7) & ~7 && j < valid {
        store8(exp8(load8(row + j) - lse).replacing(with: 0, where: .!laneMask(j, valid: valid)), row + j)
        j += 8
    }
    while j < valid { row[j] = expScalar(row[j] - lse); j += 1 }
    for z in j..<max(j, total) { row[z] = 0 }
}

/// Given dP (gradient w.r.t. probabilities) and P, overwrites dP with the gradient w.r.t. the
/// scores: dS_j = P_j (dP_j - Σ_k P_k dP_k). Entries past `valid` become 0 (up to `total`; with
/// `capacity` as in `softmaxRowInPlace`, the last partial vector is done masked, and P must be
/// 0 past `valid` in it).
@inline(__always)
func softmaxBackwardRowInPlace(_ dp: UnsafeMutablePointer<Float>, probabilities p: UnsafeMutablePointer<Float>,
                               valid: Int, total: Int, capacity: Int = 0) {
    let end = capacity >= (valid + 7) & ~7 ? (valid + 7) & ~7 : valid & ~7
    var a = Float8()
    var j = 0
    while j + 8 <= end { a += load8(p + j) * load8(dp + j); j += 8 }
    var dot = a.sum()
    while j < valid { dot += p[j] * dp[j]; j += 1 }
    j = 0
    while j + 8 <= end { store8(load8(p + j) * (load8(dp + j) - dot), dp + j); j += 8 }
    while j < valid { dp[j] = p[j] * (dp[j] - dot); j += 1 }
    for z in j..<max(j, total) { dp[z] = 0 }
}

@inline(__always)
func applyAttentionDropout(_ row: UnsafeMutablePointer<Float>, count: Int, drop: DropoutSpec, rowIndex: Int, T: Int) {
    let scale = 1 / (1 - drop.probability)
    let base = UInt64(rowIndex) &* UInt64(T)
    for j in 0..<count {
        row[j] = dropoutKeeps(seed: drop.seed, index: base &+ UInt64(j), probability: drop.probability)
            ? row[j] * scale : 0
    }
}
