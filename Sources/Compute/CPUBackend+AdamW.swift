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
        let b1 = s.beta1, b2 = s.beta2
        let bc1 = 1 - Float(pow(Double(b1), Double(s.step)))
        let bc2Sqrt = Float((1 - pow(Double(b2), Double(s.step))).squareRoot())
        let stepSize = s.learningRate / bc1
        let decay = 1 - s.learningRate * s.weightDecay
        let eps = s.epsilon, scale = s.gradientScale
        let k = (b1, b2, bc2Sqrt, stepSize, decay, eps, scale)
        Parallel.forEachRange(count, chunks: Parallel.chunkCount(count, minItemsPerChunk: 1 << 15), (p, g, m, v, k)) { c, r in
            let (p, g, m, v, k) = c
            let (b1, b2, bc2Sqrt, stepSize, decay, eps, scale) = k
            var i = r.lowerBound
            while i + 8 <= r.upperBound {
                let grad = load8(g + i) * scale
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
                let mi = b1 * m[i] + (1 - b1) * grad
                let vi = b2 * v[i] + (1 - b2) * grad * grad
                m[i] = mi
                v[i] = vi
                p[i] = p[i] * decay - stepSize * mi / (vi.squareRoot() / bc2Sqrt + eps)
                i += 1
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
