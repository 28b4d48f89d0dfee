// Kernels of the Llama-style options: RMSNorm, rotary position embeddings, SwiGLU.
// Legend: N rows, C channels, H hidden channels, NH query heads, KVH key/value heads, hs head size.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension CPUBackend {
    public func rmsNormForward(out: FloatBuffer, rstd: FloatBuffer, input: FloatBuffer, weight: FloatBuffer,
                               N: Int, C: Int, epsilon: Float) {
        let out = out.pointer, rstd = rstd.pointer, inp = input.pointer, w = weight.pointer  // (N,C) (N) (N,C) (C)
        Parallel.forEachRange(N, chunks: Parallel.chunkCount(N, minItemsPerChunk: 16), (out, rstd, inp, w, C, epsilon)) { c, rows in
            let (out, rstd, inp, w, C, epsilon) = c
            for n in rows {
                let x = inp + n * C, o = out + n * C
                var acc = Float8()
                var c = 0
                while c + 8 <= C { let v = load8(x + c); acc += v * v; c += 8 }
                var s = acc.sum()
                while c < C { s += x[c] * x[c]; c += 1 }
                let r = 1 / (s / Float(C) + epsilon).squareRoot()
                c = 0
                while c + 8 <= C { store8(load8(x + c) * r * load8(w + c), o + c); c += 8 }
                while c < C { o[c] = x[c] * r * w[c]; c += 1 }
                rstd[n] = r
            }
        }
    }

    public func rmsNormBackward(dinput: FloatBuffer, dweight: FloatBuffer, dout: FloatBuffer, input: FloatBuffer,
                                weight: FloatBuffer, rstd: FloatBuffer, N: Int, C: Int) {
        let dinp = dinput.pointer, dw = dweight.pointer, dout = dout.pointer
        let inp = input.pointer, w = weight.pointer, rstd = rstd.pointer
        // y = x·r·w with r = (mean(x²) + ε)^-½, so dx = r·(w⊙dy) − x·r³·mean(w⊙dy⊙x).
        Parallel.forEachRange(N, chunks: Parallel.chunkCount(N, minItemsPerChunk: 16), (dinp, dout, inp, w, rstd, C)) { c, rows in
            let (dinp, dout, inp, w, rstd, C) = c
            for n in rows {
                let x = inp + n * C, d = dout + n * C, di = dinp + n * C
                let r = rstd[n]
                var acc = Float8()
                var c = 0
                while c + 8 <= C { acc += load8(d + c) * load8(w + c) * load8(x + c); c += 8 }
                var s = acc.sum()
                while c < C { s += d[c] * w[c] * x[c]; c += 1 }
                let k = r * r * r * s / Float(C)
                c = 0
                while c + 8 <= C {
                    store8(load8(di + c) + r * load8(d + c) * load8(w + c) - k * load8(x + c), di + c)
                    c += 8
                }
                while c < C { di[c] += r * d[c] * w[c] - k * x[c]; c += 1 }
            }
        }
        // Gain gradient: each chunk owns a slice of channels and sums rows in order.
        let width = 32
        let slices = (C + width - 1) / width
        Parallel.forEach(slices, (dw, dout, inp, rstd, N, C, width)) { ctx, s in
            let (dw, dout, inp, rstd, N, C, width) = ctx
            let c0 = s * width, c1 = min(C, c0 + width)
            for n in 0..<N {
                let x = inp + n * C, d = dout + n * C, r = rstd[n]
                for c in c0..<c1 { dw[c] += d[c] * x[c] * r }
            }
        }
    }

    public func rotaryEmbedding(_ qkv: FloatBuffer, positions: TokenBuffer?, N: Int, T: Int, heads NH: Int, kvHeads KVH: Int,
                                headSize hs: Int, theta: Float, inverse: Bool) {
        let qkv = qkv.pointer, pos = positions?.pointer
        let half = hs / 2
        // The frequencies θ^(-2i/hs), i < hs/2, and the angles position·frequency rounded to fp32
        // as Hugging Face computes them (so long contexts match its cos/sin tables).
        let frequencies = scratchFloats(half)
        for i in 0..<half { frequencies[i] = Float(1 / pow(Double(theta), Double(2 * i) / Double(hs))) }
        let rowWidth = (NH + 2 * KVH) * hs, rotatedHeads = NH + KVH  // queries, then keys; values stay
        let sign: Float = inverse ? -1 : 1
        Parallel.forEachRange(N, chunks: Parallel.chunkCount(N, minItemsPerChunk: 8),
                              (qkv, pos, frequencies, half, T, rowWidth, rotatedHeads, sign)) { ctx, rows in
            let (qkv, pos, frequencies, half, T, rowWidth, rotatedHeads, sign) = ctx
            // cos and sin of this row's angles, on the stack for head sizes up to 256.
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * half) { table in
                let cosines = table.baseAddress!, sines = cosines + half
                for n in rows {
                    let p = Float(pos.map { Int($0[n]) } ?? n % T)
                    for i in 0..<half {
                        let angle = Double(p * frequencies[i])
                        cosines[i] = Float(cos(angle))
                        sines[i] = sign * Float(sin(angle))
                    }
                    // Pairs (i, i + hs/2) rotate by the angle (Hugging Face's rotate_half layout).
                    let row = qkv + n * rowWidth
                    for h in 0..<rotatedHeads {
                        let a = row + h * 2 * half, b = a + half
                        for i in 0..<half {
                            let x = a[i], y = b[i]
                            a[i] = x * cosines[i] - y * sines[i]
                            b[i] = y * cosines[i] + x * sines[i]
                        }
                    }
                }
            }
        }
    }

    public func swigluForward(out: FloatBuffer, input: FloatBuffer, N: Int, H: Int) {
        let out = out.pointer, inp = input.pointer  // (N, H) (N, 2H): gate then up
        Parallel.forEachRange(N, chunks: Parallel.chunkCount(N * H, minItemsPerChunk: 1 << 14) , (out, inp, H)) { c, rows in
            let (out, inp, H) = c
            for n in rows {
                let g = inp + n * 2 * H, u = g + H, o = out + n * H
                var j = 0
                while j + 8 <= H {
                    let x = load8(g + j)
                    store8(x / (1 + exp8(-x)) * load8(u + j), o + j)
                    j += 8
                }
                while j < H { let x = g[j]; o[j] = x / (1 + expScalar(-x)) * u[j]; j += 1 }
            }
        }
    }

    public func swigluBackward(dinput: FloatBuffer, input: FloatBuffer, dout: FloatBuffer, N: Int, H: Int) {
        let dinp = dinput.pointer, inp = input.pointer, dout = dout.pointer
        Parallel.forEachRange(N, chunks: Parallel.chunkCount(N * H, minItemsPerChunk: 1 << 14), (dinp, inp, dout, H)) { c, rows in
            let (dinp, inp, dout, H) = c
            for n in rows {
                let g = inp + n * 2 * H, u = g + H, d = dout + n * H
                let dg = dinp + n * 2 * H, du = dg + H
                var j = 0
                while j + 8 <= H {
                    // silu(x) = x·σ(x); silu'(x) = σ(x)·(1 + x·(1 − σ(x)))
                    let x = load8(g + j), s = 1 / (1 + exp8(-x)), dy = load8(d + j)
                    store8(load8(dg + j) + dy * load8(u + j) * s * (1 + x * (1 - s)), dg + j)
                    store8(load8(du + j) + dy * x * s, du + j)
                    j += 8
                }
                while j < H {
                    let x = g[j], s = 1 / (1 + expScalar(-x)), dy = d[j]
                    dg[j] += dy * u[j] * s * (1 + x * (1 - s))
                    du[j] += dy * x * s
                    j += 1
                }
            }
        }
    }
}
