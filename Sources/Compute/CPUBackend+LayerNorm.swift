// Layer norm over the channel axis. Legend: N rows (B*T), C channels.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let layerNormEpsilon: Float = 1e-5

extension CPUBackend {
    public func layerNormForward(out: FloatBuffer, mean: FloatBuffer, rstd: FloatBuffer, input: FloatBuffer,
                                 weight: FloatBuffer, bias: FloatBuffer, N: Int, C: Int) {
        let out = out.pointer, mean = mean.pointer, rstd = rstd.pointer  // (N,C) (N) (N)
        let inp = input.pointer, w = weight.pointer, b = bias.pointer    // (N,C) (C) (C)
        Parallel.forEachRange(N, chunks: Parallel.chunkCount(N, minItemsPerChunk: 16), (out, mean, rstd, inp, w, b, C)) { c, rows in
            let (out, mean, rstd, inp, w, b, C) = c
            for n in rows {
                let x = inp + n * C
                let o = out + n * C
                var acc = Float8()
                var c = 0
                while c + 8 <= C { acc += load8(x + c); c += 8 }
                var s = acc.sum()
                while c < C { s += x[c]; c += 1 }
                let m = s / Float(C)
                var vacc = Float8()
                c = 0
                while c + 8 <= C { let d = load8(x + c) - m; vacc += d * d; c += 8 }
                var v = vacc.sum()
                while c < C { let d = x[c] - m; v += d * d; c += 1 }
                let r = 1 / (v / Float(C) + layerNormEpsilon).squareRoot()
                c = 0
                while c + 8 <= C {
                    store8((load8(x + c) - m) * r * load8(w + c) + load8(b + c), o + c)
                    c += 8
                }
                while c < C { o[c] = (x[c] - m) * r * w[c] + b[c]; c += 1 }
                mean[n] = m
                rstd[n] = r
            }
        }
    }

    public func layerNormBackward(dinput: FloatBuffer, dweight: FloatBuffer, dbias: FloatBuffer, dout: FloatBuffer,
                                  input: FloatBuffer, weight: FloatBuffer, mean: FloatBuffer, rstd: FloatBuffer,
                                  N: Int, C: Int) {
        let dinp = dinput.pointer, dw = dweight.pointer, db = dbias.pointer, dout = dout.pointer
        let inp = input.pointer, w = weight.pointer, mean = mean.pointer, rstd = rstd.pointer
        // Pass 1: input gradient, row by row.
        Parallel.forEachRange(N, chunks: Parallel.chunkCount(N, minItemsPerChunk: 16), (dinp, dout, inp, w, mean, rstd, C)) { c, rows in
            let (dinp, dout, inp, w, mean, rstd, C) = c
            for n in rows {
                let x = inp + n * C, d = dout + n * C, di = dinp + n * C
                let m = mean[n], r = rstd[n]
                var a1 = Float8(), a2 = Float8()
                var c = 0
                while c + 8 <= C {
                    let norm = (load8(x + c) - m) * r
                    let dnorm = load8(d + c) * load8(w + c)
                    a1 += dnorm
                    a2 += dnorm * norm
                    c += 8
                }
                var s1 = a1.sum(), s2 = a2.sum()
                while c < C {
                    let norm = (x[c] - m) * r
                    let dnorm = d[c] * w[c]
                    s1 += dnorm
                    s2 += dnorm * norm
                    c += 1
                }
                let dmean = s1 / Float(C), dnormMean = s2 / Float(C)
                c = 0
                while c + 8 <= C {
                    let norm = (load8(x + c) - m) * r
                    let dnorm = load8(d + c) * load8(w + c)
                    store8(load8(di + c) + (dnorm - dmean - norm * dnormMean) * r, di + c)
                    c += 8
                }
                while c < C {
                    let norm = (x[c] - m) * r
                    let dnorm = d[c] * w[c]
                    di[c] += (dnorm - dmean - norm * dnormMean) * r
                    c += 1
                }
            }
        }
        // Pass 2: weight and bias gradients, each chunk owning a slice of channels and summing
        // over rows in order (deterministic on any core count).
        let width = 32
        let slices = (C + width - 1) / width
        Parallel.forEach(slices, (dw, db, dout, inp, mean, rstd, N, C, width)) { ctx, s in
            let (dw, db, dout, inp, mean, rstd, N, C, width) = ctx
            let c0 = s * width, c1 = min(C, c0 + width)
            for n in 0..<N {
                let x = inp + n * C, d = dout + n * C
                let m = mean[n], r = rstd[n]
                for c in c0..<c1 {
                    dw[c] += d[c] * (x[c] - m) * r
                    db[c] += d[c]
                }
            }
        }
    }
}
