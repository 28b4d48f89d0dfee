// AdamW update and the global gradient norm.

extension CPUBackend {
    public func sumOfSquares(_ buffer: FloatBuffer) -> Double {
        // Fixed-size blocks summed in double, then added in block order: the same bits on any
        // core count.
        let x = buffer.pointer, n = buffer.count
        let block = 1 << 14
        let blocks = (n + block - 1) / block
        if blocks == 0 { return 0 }
        let partial = scratchDoubles(blocks)
        Parallel.forEachRange(blocks, chunks: Parallel.chunkCount(blocks, minItemsPerChunk: 4), (x, n, block, partial)) { c, r in
            let (x, n, block, partial) = c
            for bi in r {
                let lo = bi * block, hi = min(n, lo + block)
                var acc = Float8()
                var total = 0.0
                var i = lo
                while i + 8 <= hi {
                    let v = load8(x + i)
                    acc += v * v
                    i += 8
                    if (i - lo) % 1024 == 0 { total += Double(acc.sum()); acc = Float8() }
                }
                total += Double(acc.sum())
                while i < hi { total += Double(x[i]) * Double(x[i]); i += 1 }
                partial[bi] = total
            }
        }
        var sum = 0.0
        for bi in 0..<blocks { sum += partial[bi] }
        return sum
    }

    public func adamw(params: FloatBuffer, grads: FloatBuffer, m: FloatBuffer, v: FloatBuffer, count: Int,
                      step s: AdamWStep) {
        let p = params.pointer, g = grads.pointer, m = m.pointer, v = v.pointer
        let k = AdamWConstants(s, weightDecay: s.weightDecay)
        Parallel.forEachRange(count, chunks: Parallel.chunkCount(count, minItemsPerChunk: 1 << 15), (p, g, m, v, k)) { c, r in
            adamwRange(c.0, c.1, c.2, c.3, r, c.4, zeroGradients: false)
        }
    }

    public func adamw(params: FloatBuffer, grads: FloatBuffer, m: FloatBuffer, v: FloatBuffer, segments: [AdamWSegment],
                      step s: AdamWStep, zeroGradients: Bool) {
        guard let last = segments.last else { return }
        let p = params.pointer, g = grads.pointer, m = m.pointer, v = v.pointer
        let k = AdamWConstants(s, weightDecay: 0)
        // Chunks of the whole range; each runs the pieces of the segments it overlaps (segments are
        // in arena order). Element-wise, so any split gives the same bits.
        let total = last.offset + last.count
        segments.withUnsafeBufferPointer { segs in
            Parallel.forEachRange(total, chunks: Parallel.chunkCount(total, minItemsPerChunk: 1 << 15),
                                  (p, g, m, v, k, segs, zeroGradients)) { c, r in
                let (p, g, m, v, k, segs, zeroGradients) = c
                for segment in segs {
                    let lo = max(r.lowerBound, segment.offset), hi = min(r.upperBound, segment.offset + segment.count)
                    if lo >= hi { continue }
                    var ks = k
                    ks.decay = 1 - k.learningRate * segment.weightDecay
                    adamwRange(p, g, m, v, lo..<hi, ks, zeroGradients: zeroGradients)
                }
            }
        }
    }
}

/// The per-step constants of an AdamW update.
struct AdamWConstants {
    var b1, b2, bc2Sqrt, stepSize, decay, eps, scale, learningRate: Float

    init(_ s: AdamWStep, weightDecay: Float) {
        b1 = s.beta1
        b2 = s.beta2
        bc2Sqrt = Float((1 - pow(Double(s.beta2), Double(s.step))).squareRoot())
        stepSize = s.learningRate / (1 - Float(pow(Double(s.beta1), Double(s.step))))
        decay = 1 - s.learningRate * weightDecay
        eps = s.epsilon
        scale = s.gradientScale
        learningRate = s.learningRate
    }
}

/// AdamW (PyTorch's formula, decoupled decay) on elements r; optionally zeroes each gradient read.
@inline(__always)
func adamwRange(_ p: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, _ m: UnsafeMutablePointer<Float>,
                _ v: UnsafeMutablePointer<Float>, _ r: Range<Int>, _ k: AdamWConstants, zeroGradients: Bool) {
    let b1 = k.b1, b2 = k.b2, bc2Sqrt = k.bc2Sqrt, stepSize = k.stepSize, decay = k.decay, eps = k.eps, scale = k.scale
    var i = r.lowerBound
    while i + 8 <= r.upperBound {
        let grad = load8(g + i) * scale
        if zeroGradients { store8(Float8(), g + i) }
        let mi = b1 * load8(m + i) + (1 - b1) * grad
        let vi = b2 * load8(v + i) + (1 - b2) * grad * grad
        store8(mi, m + i)
        store8(vi, v + i)
        let denom = vi.squareRoot() / bc2Sqrt + eps
        store8(load8(p + i) * decay - stepSize * mi / denom, p + i)
        i += 8
    }
    while i < r.upperBound {
        let grad = g[i] * scale
        if zeroGradients { g[i] = 0 }
        let mi = b1 * m[i] + (1 - b1) * grad
        let vi = b2 * v[i] + (1 - b2) * grad * grad
        m[i] = mi
        v[i] = vi
        p[i] = p[i] * decay - stepSize * mi / (vi.squareRoot() / bc2Sqrt + eps)
        i += 1
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
