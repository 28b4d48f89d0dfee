// Causal attention for short contexts and small heads (T ≤ 256, hs a multiple of 8, hs ≤ 256),
// with every product written out as register-tiled loops over one (batch, head) at a time.
//
// Why: at these sizes each BLAS call is a few microseconds of packing and set-up around a
// sub-microsecond product, and a BLAS call cannot skip the masked half of a causal block. Here
// each block of four query rows only touches the keys it can see, and nothing is packed except
// Kᵀ and Vᵀ of the current head (hs × Tp floats, in L1).
//
// Legend as in CPUBackend+Attention.swift: B batch, T time, C channels, NH heads, hs head size,
// KVH key/value heads, W = C + 2·KVH·hs the row width of qkv, Tp = T rounded up to 8.

/// Whether the register-tiled kernels handle an attention of this shape (else the BLAS path).
@inline(__always)
func usesSmallAttention(T: Int, headSize hs: Int) -> Bool {
    T <= 256 && hs % 8 == 0 && hs <= 256
}

extension CPUBackend {
    func smallAttentionForward(out: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>,
                               qkv: UnsafeMutablePointer<Float>, B: Int, T: Int, C: Int, NH: Int, KVH: Int,
                               dropout drop: DropoutSpec?) {
        let hs = C / NH, W = C + 2 * KVH * hs, group = NH / KVH, Tp = (T + 7) / 8 * 8
        let scale = 1 / Float(hs).squareRoot()
        let tasks = B * NH
        let chunks = max(1, min(Parallel.threadCount, tasks))
        let perChunk = hs * Tp + 4 * Tp
        let scratch = scratchFloats(perChunk * chunks)
        let dims = (W, T, Tp, C, NH, hs, tasks, chunks, perChunk, group, KVH)
        Parallel.forEach(chunks, (out, lse, qkv, scratch, scale, drop, dims)) { ctx, chunk in
            let (out, lse, qkv, scratch, scale, drop, dims) = ctx
            let (W, T, Tp, C, NH, hs, tasks, chunks, perChunk, group, KVH) = dims
            let KT = scratch + chunk * perChunk  // (hs, Tp)
            let S = KT + hs * Tp                 // (4, Tp) scores, then probabilities, of four rows
            let lo = tasks * chunk / chunks, hi = tasks * (chunk + 1) / chunks
            for task in lo..<hi {
                let b = task / NH, h = task % NH
                let Q = qkv + b * T * W + h * hs
                let K = qkv + b * T * W + C + (h / group) * hs, V = K + KVH * hs
                let O = out + b * T * C + h * hs
                let L = lse + task * T
                transposeRows(K, rows: T, stride: W, width: hs, into: KT, ldt: Tp)
                var i0 = 0
                while i0 < T {
                    let m = min(4, T - i0), keys = i0 + m, n = (keys + 7) / 8 * 8
                    // S = scale · Q[i0..<i0+m] · Kᵀ[:, 0..<keys]
                    tileProduct(m: m, n: n, k: hs, alpha: scale, a: UnsafePointer(Q + i0 * W), rowStride: W, columnStride: 1,
                                b: UnsafePointer(KT), ldb: Tp, c: S, ldc: Tp, accumulate: false)
                    for r in 0..<m {
                        let i = i0 + r, row = S + r * Tp
                        L[i] = softmaxRowInPlace(row, valid: i + 1, total: keys, capacity: Tp)
                        if let drop { applyAttentionDropout(row, count: i + 1, drop: drop, rowIndex: task * T + i, T: T) }
                    }
                    // O[i0..<i0+m] = P · V[0..<keys]
                    tileProduct(m: m, n: hs, k: keys, alpha: 1, a: UnsafePointer(S), rowStride: Tp, columnStride: 1,
                                b: UnsafePointer(V), ldb: W, c: O + i0 * C, ldc: C, accumulate: false)
                    i0 += m
                }
            }
        }
    }

    func smallAttentionBackward(dqkv: UnsafeMutablePointer<Float>, dout: UnsafeMutablePointer<Float>,
                                lse: UnsafeMutablePointer<Float>, qkv: UnsafeMutablePointer<Float>,
                                B: Int, T: Int, C: Int, NH: Int, KVH: Int, dropout drop: DropoutSpec?) {
        let hs = C / NH, W = C + 2 * KVH * hs, group = NH / KVH, Tp = (T + 7) / 8 * 8
        let scale = 1 / Float(hs).squareRoot()
        // One task per (batch, key/value head): it owns dK and dV of that head and dQ of the query
        // heads that share it, so no two chunks write the same gradient.
        let tasks = B * KVH
        let chunks = max(1, min(Parallel.threadCount, tasks))
        let matrices = drop == nil ? 2 : 3
        let perChunk = 2 * hs * Tp + matrices * T * Tp
        let scratch = scratchFloats(perChunk * chunks)
        let dims = (W, T, Tp, C, NH, hs, tasks, chunks, perChunk, group, KVH)
        Parallel.forEach(chunks, (dqkv, dout, lse, qkv, scratch, scale, drop, dims)) { ctx, chunk in
            let (dqkv, dout, lse, qkv, scratch, scale, drop, dims) = ctx
            let (W, T, Tp, C, NH, hs, tasks, chunks, perChunk, group, KVH) = dims
            let KT = scratch + chunk * perChunk  // (hs, Tp)
            let VT = KT + hs * Tp                // (hs, Tp)
            let P = VT + hs * Tp                 // (T, Tp) probabilities
            let dS = P + T * Tp                  // (T, Tp) gradient of probabilities, then of scores
            let Pd = drop == nil ? P : dS + T * Tp  // (T, Tp) probabilities after dropout
            let lo = tasks * chunk / chunks, hi = tasks * (chunk + 1) / chunks
            for pair in lo..<hi {
                let b = pair / KVH, g = pair % KVH
                let K = qkv + b * T * W + C + g * hs, V = K + KVH * hs
                let dK = dqkv + b * T * W + C + g * hs, dV = dK + KVH * hs
                transposeRows(K, rows: T, stride: W, width: hs, into: KT, ldt: Tp)
                transposeRows(V, rows: T, stride: W, width: hs, into: VT, ldt: Tp)
                for h in (g * group)..<((g + 1) * group) {
                    let task = b * NH + h
                    let Q = qkv + b * T * W + h * hs, dQ = dqkv + b * T * W + h * hs
                    let dO = dout + b * T * C + h * hs
                    let L = lse + task * T
                    // Row blocks: P from the saved log-sum-exp, dP = dO · Vᵀ, then dS in place.
                    var i0 = 0
                    while i0 < T {
                        let m = min(4, T - i0), n = (i0 + m + 7) / 8 * 8
                        tileProduct(m: m, n: n, k: hs, alpha: scale, a: UnsafePointer(Q + i0 * W), rowStride: W, columnStride: 1,
                                    b: UnsafePointer(KT), ldb: Tp, c: P + i0 * Tp, ldc: Tp, accumulate: false)
                        tileProduct(m: m, n: n, k: hs, alpha: 1, a: UnsafePointer(dO + i0 * C), rowStride: C, columnStride: 1,
                                    b: UnsafePointer(VT), ldb: Tp, c: dS + i0 * Tp, ldc: Tp, accumulate: false)
                        for r in 0..<m {
                            let i = i0 + r, p = P + i * Tp, dp = dS + i * Tp
                            probabilitiesFromLSE(p, valid: i + 1, total: Tp, lse: L[i], capacity: Tp)
                            if let drop {
                                let pd = Pd + i * Tp
                                pd.update(from: p, count: Tp)
                                applyAttentionDropout(pd, count: i + 1, drop: drop, rowIndex: task * T + i, T: T)
                                applyAttentionDropout(dp, count: i + 1, drop: drop, rowIndex: task * T + i, T: T)
                            }
                            softmaxBackwardRowInPlace(dp, probabilities: p, valid: i + 1, total: Tp, capacity: Tp)
                        }
                        // dQ[i0..<i0+m] += scale · dS · K[0..<i0+m]
                        tileProduct(m: m, n: hs, k: i0 + m, alpha: scale, a: UnsafePointer(dS + i0 * Tp), rowStride: Tp,
                                    columnStride: 1, b: UnsafePointer(K), ldb: W, c: dQ + i0 * W, ldc: W, accumulate: true)
                        i0 += m
                    }
                    // Key blocks: only query rows at or after a key see it.
                    var j0 = 0
                    while j0 < T {
                        let m = min(4, T - j0), rows = T - j0
                        // dV[j0..<j0+m] += Pdᵀ · dO[j0..<T]
                        tileProduct(m: m, n: hs, k: rows, alpha: 1, a: UnsafePointer(Pd + j0 * Tp + j0), rowStride: 1,
                                    columnStride: Tp, b: UnsafePointer(dO + j0 * C), ldb: C, c: dV + j0 * W, ldc: W,
                                    accumulate: true)
                        // dK[j0..<j0+m] += scale · dSᵀ · Q[j0..<T]
                        tileProduct(m: m, n: hs, k: rows, alpha: scale, a: UnsafePointer(dS + j0 * Tp + j0), rowStride: 1,
                                    columnStride: Tp, b: UnsafePointer(Q + j0 * W), ldb: W, c: dK + j0 * W, ldc: W,
                                    accumulate: true)
                        j0 += m
                    }
                }
            }
        }
    }
}

/// t[d * ldt + j] = x[j * stride + d] for j < rows, d < width; columns rows..<ldt become 0.
@inline(__always)
func transposeRows(_ x: UnsafePointer<Float>, rows: Int, stride: Int, width: Int, into t: UnsafeMutablePointer<Float>, ldt: Int) {
    for d in 0..<width {
        let td = t + d * ldt
        for j in 0..<rows { td[j] = x[j * stride + d] }
        for j in rows..<ldt { td[j] = 0 }
    }
}

/// c (m × n) = alpha · a (m × k) · b (k × n), or c += that, for m ≤ 4 and n a multiple of 8.
/// a is read one element at a time (a[r * rowStride + kk * columnStride]), so it may be a
/// transposed view; b is row-major with leading dimension ldb. Tiles of 4 rows × 16 columns keep
/// eight independent accumulators in registers.
@inline(__always)
func tileProduct(m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, rowStride: Int, columnStride: Int,
                 b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
    // Rows past m repeat the last row (their results are not stored).
    let a0 = a, a1 = a + min(1, m - 1) * rowStride, a2 = a + min(2, m - 1) * rowStride, a3 = a + min(3, m - 1) * rowStride
    let scale = Float8(repeating: alpha)
    @inline(__always) func store(_ v: Float8, row: Int, column: Int) {
        guard row < m else { return }
        let p = c + row * ldc + column
        store8(accumulate ? load8(p) + v * scale : v * scale, p)
    }
    var j = 0
    while j + 16 <= n {
        var c00 = Float8(), c01 = Float8(), c10 = Float8(), c11 = Float8()
        var c20 = Float8(), c21 = Float8(), c30 = Float8(), c31 = Float8()
        var bp = b + j, o = 0
        for _ in 0..<k {
            let b0 = load8(bp), b1 = load8(bp + 8)
            var x = Float8(repeating: a0[o]); c00 = c00.addingProduct(x, b0); c01 = c01.addingProduct(x, b1)
            x = Float8(repeating: a1[o]); c10 = c10.addingProduct(x, b0); c11 = c11.addingProduct(x, b1)
            x = Float8(repeating: a2[o]); c20 = c20.addingProduct(x, b0); c21 = c21.addingProduct(x, b1)
            x = Float8(repeating: a3[o]); c30 = c30.addingProduct(x, b0); c31 = c31.addingProduct(x, b1)
            bp += ldb; o += columnStride
        }
        store(c00, row: 0, column: j); store(c01, row: 0, column: j + 8)
        store(c10, row: 1, column: j); store(c11, row: 1, column: j + 8)
        store(c20, row: 2, column: j); store(c21, row: 2, column: j + 8)
        store(c30, row: 3, column: j); store(c31, row: 3, column: j + 8)
        j += 16
    }
    if j < n {
        var c0 = Float8(), c1 = Float8(), c2 = Float8(), c3 = Float8()
        var bp = b + j, o = 0
        for _ in 0..<k {
            let b0 = load8(bp)
            c0 = c0.addingProduct(Float8(repeating: a0[o]), b0)
            c1 = c1.addingProduct(Float8(repeating: a1[o]), b0)
            c2 = c2.addingProduct(Float8(repeating: a2[o]), b0)
            c3 = c3.addingProduct(Float8(repeating: a3[o]), b0)
            bp += ldb; o += columnStride
        }
        store(c0, row: 0, column: j); store(c1, row: 1, column: j); store(c2, row: 2, column: j); store(c3, row: 3, column: j)
    }
}
