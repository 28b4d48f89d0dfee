// Kernels for generation with a KV cache: embeddings at arbitrary positions, attention of new rows
// against cached keys/values, small-batch matrix products (decode reads every weight once per step,
// so it is bound by memory bandwidth, not arithmetic) and int8 weights.
//
// Legend: N new rows, C channels, OC output channels, NH heads, hs head size, S cache slots,
// capacity positions per slot, KVH key/value heads. Cache layout: (S, KVH, capacity, hs), so one
// head of one sequence is a contiguous (capacity, hs) matrix.

import CSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Products with at most this many rows read the weights once and reuse each loaded weight vector
/// for every row (matrix-vector style); larger ones go to BLAS.
let smallMatmulMaxRows = 8
/// Columns per block of the small-batch product when the inputs are long: 8 inputs × 512 floats
/// (16 KB) and three weight-row segments (6 KB) stay in the 32 KB L1 data cache.
let smallMatmulColumnBlock = 512
/// Products with at most this many rows (and more than `smallMatmulMaxRows`) split the output
/// channels over the cores in blocks handed to BLAS; larger ones split their rows.
let blockedMatmulMaxRows = 32

extension CPUBackend {
    public func embedForward(out: FloatBuffer, tokens: TokenBuffer, positions: TokenBuffer, wte: FloatBuffer,
                             wpe: FloatBuffer?, N: Int, C: Int) {
        let out = out.pointer, tok = tokens.pointer, pos = positions.pointer, wte = wte.pointer
        guard let wpe = wpe?.pointer else {
            for n in 0..<N { (out + n * C).update(from: wte + Int(tok[n]) * C, count: C) }
            return
        }
        for n in 0..<N {
            let o = out + n * C, e = wte + Int(tok[n]) * C, p = wpe + Int(pos[n]) * C
            var c = 0
            while c + 8 <= C { store8(load8(e + c) + load8(p + c), o + c); c += 8 }
            while c < C { o[c] = e[c] + p[c]; c += 1 }
        }
    }

    public func cachedAttentionForward(out: FloatBuffer, qkv: FloatBuffer, keys: FloatBuffer, values: FloatBuffer,
                                       slots: TokenBuffer, positions: TokenBuffer, N: Int, C: Int, NH: Int, KVH: Int,
                                       capacity: Int) {
        cachedAttention(out: out.pointer, qkv: qkv.pointer, kc: keys.pointer, vc: values.pointer, slots: slots, positions: positions,
                        N: N, C: C, NH: NH, KVH: KVH, capacity: capacity)
    }

    public func cachedAttentionForward(out: FloatBuffer, qkv: FloatBuffer, keys: HalfBuffer, values: HalfBuffer,
                                       slots: TokenBuffer, positions: TokenBuffer, N: Int, C: Int, NH: Int, KVH: Int,
                                       capacity: Int) {
        cachedAttention(out: out.pointer, qkv: qkv.pointer, kc: keys.pointer, vc: values.pointer, slots: slots, positions: positions,
                        N: N, C: C, NH: NH, KVH: KVH, capacity: capacity)
    }

    public var supportsHalfPrecisionCache: Bool { true }

    public func allocateHalf(_ count: Int) throws -> HalfBuffer {
        let raw = try allocateZeroed(bytes: max(count, 1) * MemoryLayout<Float16>.stride)
        return HalfBuffer(pointer: raw.bindMemory(to: Float16.self, capacity: count), count: count)
    }

    public func deallocateHalf(_ buffer: HalfBuffer) { free(buffer.pointer) }

    /// The KV-cache attention for either cache element type. Keys and values are rounded to the
    /// cache's type when stored, and every row (prefill and decode alike) attends to the stored
    /// values; scores, softmax and sums are fp32.
    private func cachedAttention<E: KVCacheElement>(out: UnsafeMutablePointer<Float>, qkv: UnsafeMutablePointer<Float>,
                                                    kc: UnsafeMutablePointer<E>, vc: UnsafeMutablePointer<E>,
                                                    slots: TokenBuffer, positions: TokenBuffer, N: Int, C: Int, NH: Int,
                                                    KVH: Int, capacity: Int) {
        let slot = slots.pointer, pos = positions.pointer
        let hs = C / NH, KVC = KVH * hs, W = C + 2 * KVC, group = NH / KVH
        // 1. Store every new row's keys and values at its position.
        for n in 0..<N {
            let s = Int(slot[n]), p = Int(pos[n])
            for g in 0..<KVH {
                let dst = ((s * KVH + g) * capacity + p) * hs
                E.store(qkv + n * W + C + g * hs, count: hs, to: kc + dst)
                E.store(qkv + n * W + C + KVC + g * hs, count: hs, to: vc + dst)
            }
        }
        // 2. Runs: consecutive rows of one slot at consecutive positions (a prefill chunk, or one
        //    decoded token). Each (run, head) is one task.
        var runs: [(start: Int, count: Int)] = []
        var n = 0
        while n < N {
            var m = 1
            while n + m < N && slot[n + m] == slot[n] && pos[n + m] == pos[n] + Int32(m) { m += 1 }
            runs.append((n, m))
            n += m
        }
        let tasks = runs.count * NH
        let chunks = max(1, min(Parallel.threadCount, tasks))
        let bs = attentionBlockRows
        // Per chunk: a block of scores, and (f16) the slot's keys and values as fp32 for BLAS.
        let perChunk = bs * capacity + (E.isFloat ? 0 : 2 * capacity * hs)
        let scratch = scratchFloats(perChunk * chunks)
        let scale = 1 / Float(hs).squareRoot()
        runs.withUnsafeBufferPointer { runs in
            let dims = (C, NH, hs, capacity, bs, tasks, chunks, perChunk, scale, W, group, KVH)
            Parallel.forEach(chunks, (out, qkv, kc, vc, slot, pos, scratch, runs, dims)) { ctx, chunk in
                let (out, qkv, kc, vc, slot, pos, scratch, runs, dims) = ctx
                let (C, NH, hs, capacity, bs, tasks, chunks, perChunk, scale, W, group, KVH) = dims
                let S = scratch + chunk * perChunk
                for task in (tasks * chunk / chunks)..<(tasks * (chunk + 1) / chunks) {
                    let run = runs[task / NH], h = task % NH
                    let s = Int(slot[run.start]), p0 = Int(pos[run.start])
                    let g = h / group
                    let K = kc + (s * KVH + g) * capacity * hs, V = vc + (s * KVH + g) * capacity * hs
                    if run.count == 1 {
                        decodeAttentionRow(out: out + run.start * C + h * hs, q: qkv + run.start * W + h * hs,
                                           K: UnsafePointer(K), V: UnsafePointer(V), length: p0 + 1, hs: hs, scale: scale, scores: S)
                        continue
                    }
                    let seen = (p0 + run.count) * hs
                    let Kf = E.floats(K, count: seen, scratch: S + bs * capacity)
                    let Vf = E.floats(V, count: seen, scratch: S + bs * capacity + capacity * hs)
                    var r0 = 0
                    while r0 < run.count {
                        let r1 = min(run.count, r0 + bs), m = r1 - r0
                        let keysSeen = p0 + r1
                        sgemm(transA: false, transB: true, m: m, n: keysSeen, k: hs, alpha: scale,
                              a: qkv + (run.start + r0) * W + h * hs, lda: W, b: Kf, ldb: hs, beta: 0,
                              c: S, ldc: capacity)
                        for i in r0..<r1 {
                            _ = softmaxRowInPlace(S + (i - r0) * capacity, valid: p0 + i + 1, total: keysSeen)
                        }
                        sgemm(transA: false, transB: false, m: m, n: hs, k: keysSeen, alpha: 1, a: S, lda: capacity,
                              b: Vf, ldb: hs, beta: 0, c: out + (run.start + r0) * C + h * hs, ldc: C)
                        r0 = r1
                    }
                }
            }
        }
    }

    public func copyCacheSlot(keys: FloatBuffer, values: FloatBuffer, from source: Int, to destination: Int, length: Int,
                              NH: Int, capacity: Int, headSize hs: Int) {
        copySlot(keys: keys.pointer, values: values.pointer, from: source, to: destination, length: length, NH: NH,
                 capacity: capacity, headSize: hs)
    }

    public func copyCacheSlot(keys: HalfBuffer, values: HalfBuffer, from source: Int, to destination: Int, length: Int,
                              NH: Int, capacity: Int, headSize hs: Int) {
        copySlot(keys: keys.pointer, values: values.pointer, from: source, to: destination, length: length, NH: NH,
                 capacity: capacity, headSize: hs)
    }

    private func copySlot<E>(keys: UnsafeMutablePointer<E>, values: UnsafeMutablePointer<E>, from source: Int, to destination: Int,
                             length: Int, NH: Int, capacity: Int, headSize hs: Int) {
        guard source != destination, length > 0 else { return }
        for h in 0..<NH {
            let src = (source * NH + h) * capacity * hs, dst = (destination * NH + h) * capacity * hs
            (keys + dst).update(from: keys + src, count: length * hs)
            (values + dst).update(from: values + src, count: length * hs)
        }
    }

    // MARK: int8

    public func allocateInt8(_ count: Int) throws -> Int8Buffer {
        let bytes = max(count, 1)
        let raw = try allocateZeroed(bytes: (bytes + 63) / 64 * 64)
        return Int8Buffer(pointer: raw.bindMemory(to: Int8.self, capacity: bytes), count: count)
    }

    public func deallocateInt8(_ buffer: Int8Buffer) { free(buffer.pointer) }

    public func quantizeRows(weight: FloatBuffer, into q: Int8Buffer, scales: FloatBuffer, rows: Int, C: Int) {
        let w = weight.pointer, qp = q.pointer, sp = scales.pointer
        Parallel.forEachRange(rows, chunks: Parallel.chunkCount(rows, minItemsPerChunk: 256), (w, qp, sp, C)) { ctx, r in
            let (w, qp, sp, C) = ctx
            for row in r {
                let src = w + row * C, dst = qp + row * C
                var amax: Float = 0
                for c in 0..<C { amax = max(amax, abs(src[c])) }
                let scale = amax / 127
                sp[row] = scale
                let inv = scale > 0 ? 1 / scale : 0
                for c in 0..<C { dst[c] = Int8(max(-127, min(127, (src[c] * inv).rounded(.toNearestOrEven)))) }
            }
        }
    }

    public func matmulInt8Forward(out: FloatBuffer, input: FloatBuffer, weight: Int8Buffer, scales: FloatBuffer,
                                  bias: FloatBuffer?, N: Int, C: Int, OC: Int) {
        if N <= smallMatmulMaxRows {
            smallMatmul(out: out.pointer, input: input.pointer, weight: UnsafePointer(weight.pointer),
                        scales: UnsafePointer(scales.pointer), bias: bias.map { UnsafePointer($0.pointer) },
                        N: N, C: C, OC: OC)
            return
        }
        // Prefill: dequantise blocks of weight rows into scratch and hand them to BLAS.
        let block = 128
        let chunks = max(1, min(8, (OC + block - 1) / block))
        let scratch = scratchFloats(chunks * block * C)
        let o = out.pointer, inp = input.pointer, q = weight.pointer, sc = scales.pointer
        let b = bias?.pointer
        Parallel.forEach(chunks, (o, inp, q, sc, b, scratch, N, C, OC, block, chunks)) { ctx, chunk in
            let (o, inp, q, sc, b, scratch, N, C, OC, block, chunks) = ctx
            let W = scratch + chunk * block * C
            let end = OC * (chunk + 1) / chunks
            var r0 = OC * chunk / chunks
            while r0 < end {
                let rows = min(block, end - r0)
                for i in 0..<rows {
                    let src = q + (r0 + i) * C, dst = W + i * C, s = sc[r0 + i]
                    var c = 0
                    while c + 8 <= C { store8(int8Load8(UnsafePointer(src + c)) * s, dst + c); c += 8 }
                    while c < C { dst[c] = Float(src[c]) * s; c += 1 }
                }
                if let b { for n in 0..<N { (o + n * OC + r0).update(from: b + r0, count: rows) } }
                sgemm(transA: false, transB: true, m: N, n: rows, k: C, alpha: 1, a: inp, lda: C, b: W, ldb: C,
                      beta: b == nil ? 0 : 1, c: o + r0, ldc: OC)
                r0 += rows
            }
        }
    }

    /// out (N, OC) = input (N, C) · (scale ⊙ weight)ᵀ + bias for a few rows: the output channels are
    /// split over the cores, every weight row is read once and applied to all N inputs. One input:
    /// one row at a time, read front to back (bandwidth-bound). More inputs: tiles of three weight
    /// rows × four inputs, twelve independent accumulators (compute-bound).
    func smallMatmul<W: SmallMatmulWeight>(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
                                           weight: UnsafePointer<W>, scales: UnsafePointer<Float>?,
                                           bias: UnsafePointer<Float>?, N: Int, C: Int, OC: Int) {
        let chunks = max(1, min(64, OC / 64))
        Parallel.forEachRange(OC, chunks: chunks, (out, input, weight, scales, bias, N, C, OC)) { ctx, r in
            let (out, input, weight, scales, bias, N, C, OC) = ctx
            if N == 1 {
                for o in r {
                    out[o] = dotRow(weight + o * C, input, C) * (scales?[o] ?? 1) + (bias?[o] ?? 0)
                }
                return
            }
            // Rows outer, inputs inner: three weight rows stay in L1 while every group of four inputs
            // uses them (twelve independent accumulators hide the FMA latency); the last one or two
            // rows of the range one at a time. When the inputs are too long to stay in L1 beside the
            // rows (C > smallMatmulColumnBlock), the columns go in blocks: every weight element is
            // still read once, and each block's partial sums are added up in `partial`.
            let blocked = C > smallMatmulColumnBlock
            // Groups of four inputs; each prefetches its share of the next three rows' block.
            let groups = (N + 3) / 4
            let R = r.count
            withUnsafeTemporaryAllocation(of: Float.self, capacity: blocked ? R * N : 0) { buffer in
                let partial = blocked ? buffer.baseAddress : nil
                var k0 = 0
                repeat {
                    let kc = blocked ? min(smallMatmulColumnBlock, C - k0) : C
                    var o = r.lowerBound
                    while o < r.upperBound {
                        let rows = r.upperBound - o >= 3 ? 3 : 1
                        let w = weight + o * C + k0
                        var n = 0
                        while n < N {
                            let x0 = input + n * C + k0
                            let x1 = input + min(n + 1, N - 1) * C + k0, x2 = input + min(n + 2, N - 1) * C + k0
                            let x3 = input + min(n + 3, N - 1) * C + k0
                            let valid = min(4, N - n)
                            if rows == 3 {
                                let (d0, d1, d2) = dot3Rows4Inputs(w, stride: C, count: kc, x0, x1, x2, x3,
                                                                   prefetch: w + 3 * C + (n / 4) * (kc / groups),
                                                                   prefetchShare: groups)
                                emit(d0, row: o, n: n, valid: valid)
                                emit(d1, row: o + 1, n: n, valid: valid)
                                emit(d2, row: o + 2, n: n, valid: valid)
                            } else {
                                emit(dotRow4Inputs(w, kc, x0, x1, x2, x3), row: o, n: n, valid: valid)
                            }
                            n += 4
                        }
                        o += rows
                    }
                    k0 += kc
                } while k0 < C
                if let partial {
                    for row in r {
                        let s = scales?[row] ?? 1, b = bias?[row] ?? 0
                        for n in 0..<N { out[n * OC + row] = partial[(row - r.lowerBound) * N + n] * s + b }
                    }
                }

                @inline(__always) func emit(_ d: SIMD4<Float>, row: Int, n: Int, valid: Int) {
                    guard let partial else { return store(d, row: row, n: n, valid: valid) }
                    let p = partial + (row - r.lowerBound) * N + n
                    if k0 == 0 {
                        for i in 0..<valid { p[i] = d[i] }
                    } else {
                        for i in 0..<valid { p[i] += d[i] }
                    }
                }
            }

            @inline(__always) func store(_ d: SIMD4<Float>, row: Int, n: Int, valid: Int) {
                let s = scales?[row] ?? 1, b = bias?[row] ?? 0
                for i in 0..<valid { out[(n + i) * OC + row] = d[i] * s + b }
            }
        }
    }
}

/// A weight element the small-batch kernel can read eight at a time as floats.
protocol SmallMatmulWeight {
    static func load8(_ p: UnsafePointer<Self>) -> Float8
    static func value(_ p: UnsafePointer<Self>) -> Float
}

extension Float: SmallMatmulWeight {
    @inline(__always) static func load8(_ p: UnsafePointer<Float>) -> Float8 { UnsafeRawPointer(p).loadUnaligned(as: Float8.self) }
    @inline(__always) static func value(_ p: UnsafePointer<Float>) -> Float { p.pointee }
}

extension Int8: SmallMatmulWeight {
    @inline(__always) static func load8(_ p: UnsafePointer<Int8>) -> Float8 { int8Load8(p) }
    @inline(__always) static func value(_ p: UnsafePointer<Int8>) -> Float { Float(p.pointee) }
}

extension Float16: SmallMatmulWeight {
    @inline(__always) static func load8(_ p: UnsafePointer<Float16>) -> Float8 {
        Float8(UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float16>.self))
    }
    @inline(__always) static func value(_ p: UnsafePointer<Float16>) -> Float { Float(p.pointee) }
}

/// What a KV cache can hold: fp32, or f16 (half the bytes each decoding step reads).
protocol KVCacheElement: SmallMatmulWeight {
    static var isFloat: Bool { get }
    /// Stores `count` floats as this type (rounded to nearest for f16).
    static func store(_ source: UnsafePointer<Float>, count: Int, to destination: UnsafeMutablePointer<Self>)
    /// `count` values as floats: the values themselves for fp32, else converted into `scratch`.
    static func floats(_ p: UnsafeMutablePointer<Self>, count: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float>
}

extension Float: KVCacheElement {
    static var isFloat: Bool { true }
    @inline(__always) static func store(_ source: UnsafePointer<Float>, count: Int, to destination: UnsafeMutablePointer<Float>) {
        destination.update(from: source, count: count)
    }
    @inline(__always) static func floats(_ p: UnsafeMutablePointer<Float>, count: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> { p }
}

extension Float16: KVCacheElement {
    static var isFloat: Bool { false }
    @inline(__always) static func store(_ source: UnsafePointer<Float>, count: Int, to destination: UnsafeMutablePointer<Float16>) {
        var c = 0
        while c + 8 <= count {
            UnsafeMutableRawPointer(destination + c).storeBytes(of: SIMD8<Float16>(Float.load8(source + c)), as: SIMD8<Float16>.self)
            c += 8
        }
        while c < count { destination[c] = Float16(source[c]); c += 1 }
    }
    @inline(__always) static func floats(_ p: UnsafeMutablePointer<Float16>, count: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        var c = 0
        while c + 8 <= count { store8(Float16.load8(UnsafePointer(p) + c), scratch + c); c += 8 }
        while c < count { scratch[c] = Float(p[c]); c += 1 }
        return scratch
    }
}

@inline(__always)
func int8Load8(_ p: UnsafePointer<Int8>) -> Float8 {
    Float8(SIMD8<Int32>(truncatingIfNeeded: UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Int8>.self)))
}

/// Dot product of one weight row with one input, streaming the row front to back with four
/// accumulators.
@inline(__always)
func dotRow<W: SmallMatmulWeight>(_ w: UnsafePointer<W>, _ x: UnsafePointer<Float>, _ C: Int) -> Float {
    var a0 = Float8(), a1 = Float8(), a2 = Float8(), a3 = Float8()
    var k = 0
    while k + 32 <= C {
        a0 = a0.addingProduct(W.load8(w + k), load8(x + k))
        a1 = a1.addingProduct(W.load8(w + k + 8), load8(x + k + 8))
        a2 = a2.addingProduct(W.load8(w + k + 16), load8(x + k + 16))
        a3 = a3.addingProduct(W.load8(w + k + 24), load8(x + k + 24))
        k += 32
    }
    while k + 8 <= C { a0 = a0.addingProduct(W.load8(w + k), load8(x + k)); k += 8 }
    var s = ((a0 + a1) + (a2 + a3)).sum()
    while k < C { s += W.value(w + k) * x[k]; k += 1 }
    return s
}

/// Three consecutive weight rows against four inputs: twelve independent accumulators (with the
/// three weight vectors and one input vector, all sixteen AVX registers). The next three rows are
/// prefetched from `pf` on, so DRAM streams while this triple's arithmetic runs; with several
/// groups of four inputs each call prefetches its `share` of the block's columns (eight inputs: the
/// first group the first half, the second group the second), so the requests are spread over the
/// whole triple instead of all coming in the first group (measured: 8 × (3072×768) from memory
/// 467–478 µs against 522–535 µs, four alternating rounds). Each (row, input) sum runs in
/// the same order as in `dotRow4Inputs`, so results do not depend on how rows fall into tiles.
@inline(__always)
func dot3Rows4Inputs<W: SmallMatmulWeight>(_ w: UnsafePointer<W>, stride C: Int, count K: Int, _ x0: UnsafePointer<Float>,
                                           _ x1: UnsafePointer<Float>, _ x2: UnsafePointer<Float>,
                                           _ x3: UnsafePointer<Float>, prefetch pf: UnsafePointer<W>,
                                           prefetchShare share: Int) -> (SIMD4<Float>, SIMD4<Float>, SIMD4<Float>) {
    var a0 = Float8(), a1 = Float8(), a2 = Float8(), a3 = Float8()
    var b0 = Float8(), b1 = Float8(), b2 = Float8(), b3 = Float8()
    var c0 = Float8(), c1 = Float8(), c2 = Float8(), c3 = Float8()
    let v = w + C, u = v + C
    @inline(__always) func step(_ k: Int) {
        let wa = W.load8(w + k), wb = W.load8(v + k), wc = W.load8(u + k)
        var y = load8(x0 + k)
        a0 = a0.addingProduct(wa, y); b0 = b0.addingProduct(wb, y); c0 = c0.addingProduct(wc, y)
        y = load8(x1 + k)
        a1 = a1.addingProduct(wa, y); b1 = b1.addingProduct(wb, y); c1 = c1.addingProduct(wc, y)
        y = load8(x2 + k)
        a2 = a2.addingProduct(wa, y); b2 = b2.addingProduct(wb, y); c2 = c2.addingProduct(wc, y)
        y = load8(x3 + k)
        a3 = a3.addingProduct(wa, y); b3 = b3.addingProduct(wb, y); c3 = c3.addingProduct(wc, y)
    }
    var k = 0
    var ahead = pf
    let aheadStep = 16 / share
    // The next three rows, one prefetch per 64-byte line into L2 (the T1 hint measured best here:
    // ~510 µs for 8 × (3072×768) from memory against ~550 with L1 prefetches; no prefetch ~690).
    while k + 16 <= K {
        sgpt_prefetch_l2(ahead)
        sgpt_prefetch_l2(ahead + C)
        sgpt_prefetch_l2(ahead + 2 * C)
        ahead += aheadStep
        step(k)
        step(k + 8)
        k += 16
    }
    while k + 8 <= K { step(k); k += 8 }
    var s = SIMD4<Float>(a0.sum(), a1.sum(), a2.sum(), a3.sum())
    var t = SIMD4<Float>(b0.sum(), b1.sum(), b2.sum(), b3.sum())
    var q = SIMD4<Float>(c0.sum(), c1.sum(), c2.sum(), c3.sum())
    while k < K {
        let wa = W.value(w + k), wb = W.value(v + k), wc = W.value(u + k)
        let xs = SIMD4<Float>(x0[k], x1[k], x2[k], x3[k])
        s += wa * xs; t += wb * xs; q += wc * xs
        k += 1
    }
    return (s, t, q)
}

/// Dot products of one weight row with four inputs (the row is loaded once).
@inline(__always)
func dotRow4Inputs<W: SmallMatmulWeight>(_ w: UnsafePointer<W>, _ C: Int, _ x0: UnsafePointer<Float>,
                                         _ x1: UnsafePointer<Float>, _ x2: UnsafePointer<Float>,
                                         _ x3: UnsafePointer<Float>) -> SIMD4<Float> {
    var a0 = Float8(), a1 = Float8(), a2 = Float8(), a3 = Float8()
    var k = 0
    while k + 8 <= C {
        let wv = W.load8(w + k)
        a0 = a0.addingProduct(wv, load8(x0 + k))
        a1 = a1.addingProduct(wv, load8(x1 + k))
        a2 = a2.addingProduct(wv, load8(x2 + k))
        a3 = a3.addingProduct(wv, load8(x3 + k))
        k += 8
    }
    var s = SIMD4<Float>(a0.sum(), a1.sum(), a2.sum(), a3.sum())
    while k < C {
        let wv = W.value(w + k)
        s[0] += wv * x0[k]
        s[1] += wv * x1[k]
        s[2] += wv * x2[k]
        s[3] += wv * x3[k]
        k += 1
    }
    return s
}

/// One query row against `length` cached keys: scores, softmax, weighted sum of values. Decoding a
/// batch reads every sequence's cache once per layer, so the loops keep several independent
/// accumulators in registers (four keys at a time for the scores; up to 64 output channels for the
/// values) instead of one dependent chain per key.
@inline(__always)
func decodeAttentionRow<E: SmallMatmulWeight>(out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, K: UnsafePointer<E>,
                                               V: UnsafePointer<E>, length: Int, hs: Int, scale: Float,
                                               scores: UnsafeMutablePointer<Float>) {
    var j = 0
    if hs % 8 == 0 {
        while j + 4 <= length {
            let k0 = K + j * hs, k1 = k0 + hs, k2 = k1 + hs, k3 = k2 + hs
            var a0 = Float8(), a1 = Float8(), a2 = Float8(), a3 = Float8()
            var c = 0
            while c < hs {
                let qv = load8(q + c)
                a0 = a0.addingProduct(qv, E.load8(k0 + c)); a1 = a1.addingProduct(qv, E.load8(k1 + c))
                a2 = a2.addingProduct(qv, E.load8(k2 + c)); a3 = a3.addingProduct(qv, E.load8(k3 + c))
                c += 8
            }
            scores[j] = a0.sum() * scale; scores[j + 1] = a1.sum() * scale
            scores[j + 2] = a2.sum() * scale; scores[j + 3] = a3.sum() * scale
            j += 4
        }
    }
    while j < length {
        let k = K + j * hs
        var acc = Float8()
        var c = 0
        while c + 8 <= hs { acc = acc.addingProduct(load8(q + c), E.load8(k + c)); c += 8 }
        var s = acc.sum()
        while c < hs { s += q[c] * E.value(k + c); c += 1 }
        scores[j] = s * scale
        j += 1
    }
    _ = softmaxRowInPlace(scores, valid: length, total: length)
    var c0 = 0
    while c0 + 64 <= hs {
        var a0 = Float8(), a1 = Float8(), a2 = Float8(), a3 = Float8()
        var a4 = Float8(), a5 = Float8(), a6 = Float8(), a7 = Float8()
        for j in 0..<length {
            let p = Float8(repeating: scores[j]), v = V + j * hs + c0
            a0 = a0.addingProduct(p, E.load8(v)); a1 = a1.addingProduct(p, E.load8(v + 8))
            a2 = a2.addingProduct(p, E.load8(v + 16)); a3 = a3.addingProduct(p, E.load8(v + 24))
            a4 = a4.addingProduct(p, E.load8(v + 32)); a5 = a5.addingProduct(p, E.load8(v + 40))
            a6 = a6.addingProduct(p, E.load8(v + 48)); a7 = a7.addingProduct(p, E.load8(v + 56))
        }
        let o = out + c0
        store8(a0, o); store8(a1, o + 8); store8(a2, o + 16); store8(a3, o + 24)
        store8(a4, o + 32); store8(a5, o + 40); store8(a6, o + 48); store8(a7, o + 56)
        c0 += 64
    }
    while c0 + 8 <= hs {
        var a = Float8()
        for j in 0..<length { a = a.addingProduct(Float8(repeating: scores[j]), E.load8(V + j * hs + c0)) }
        store8(a, out + c0)
        c0 += 8
    }
    if c0 < hs {
        for c in c0..<hs { out[c] = 0 }
        for j in 0..<length {
            let p = scores[j], v = V + j * hs
            for c in c0..<hs { out[c] += p * E.value(v + c) }
        }
    }
}
