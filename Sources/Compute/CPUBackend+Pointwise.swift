// Element-wise kernels: encoder (embedding lookup), GELU, residual add, dropout.
// Legend: B batch, T time, C channels.

extension CPUBackend {
    public func encoderForward(out: FloatBuffer, tokens: TokenBuffer, wte: FloatBuffer, wpe: FloatBuffer?,
                               B: Int, T: Int, C: Int) {
        let out = out.pointer, tok = tokens.pointer, wte = wte.pointer  // (B,T,C) (B,T) (Vp,C)
        guard let wpe = wpe?.pointer else {  // rotary positions: the token embedding alone
            for bt in 0..<(B * T) { (out + bt * C).update(from: wte + Int(tok[bt]) * C, count: C) }
            return
        }
        Parallel.forEachRange(B * T, chunks: Parallel.chunkCount(B * T, minItemsPerChunk: 64), (out, tok, wte, wpe, T, C)) { ctx, rows in
            let (out, tok, wte, wpe, T, C) = ctx
            for bt in rows {
                let t = bt % T
                let o = out + bt * C
                let e = wte + Int(tok[bt]) * C
                let p = wpe + t * C
                var c = 0
                while c + 8 <= C { store8(load8(e + c) + load8(p + c), o + c); c += 8 }
                while c < C { o[c] = e[c] + p[c]; c += 1 }
            }
        }
    }

    public func encoderBackward(dwte: FloatBuffer, dwpe: FloatBuffer?, dout: FloatBuffer, tokens: TokenBuffer,
                                B: Int, T: Int, C: Int) {
        // Each chunk owns a slice of channels and walks every token in order: no two chunks write
        // the same gradient element, and the summation order never depends on the core count.
        let dwte = dwte.pointer, dwpe = dwpe?.pointer, dout = dout.pointer, tok = tokens.pointer
        let width = 16
        let slices = (C + width - 1) / width
        Parallel.forEach(slices, (dwte, dwpe, dout, tok, B, T, C, width)) { ctx, s in
            let (dwte, dwpe, dout, tok, B, T, C, width) = ctx
            let c0 = s * width
            let c1 = min(C, c0 + width)
            for bt in 0..<(B * T) {
                let t = bt % T
                let d = dout + bt * C
                let e = dwte + Int(tok[bt]) * C
                for c in c0..<c1 { e[c] += d[c] }
                if let dwpe {
                    let p = dwpe + t * C
                    for c in c0..<c1 { p[c] += d[c] }
                }
            }
        }
    }

    public func geluForward(out: FloatBuffer, input: FloatBuffer, count: Int) {
        let out = out.pointer, inp = input.pointer
        Parallel.forEachRange(count, chunks: Parallel.chunkCount(count, minItemsPerChunk: 1 << 15), (out, inp)) { c, r in
            geluRange(out: c.0, input: c.1, r)
        }
    }

    public func geluBackward(dinput: FloatBuffer, input: FloatBuffer, dout: FloatBuffer, count: Int) {
        let dinp = dinput.pointer, inp = input.pointer, dout = dout.pointer
        Parallel.forEachRange(count, chunks: Parallel.chunkCount(count, minItemsPerChunk: 1 << 15), (dinp, inp, dout)) { c, r in
            geluBackwardRange(dinput: c.0, input: c.1, dout: c.2, r, accumulate: true)
        }
    }

    public func residualForward(out: FloatBuffer, a: FloatBuffer, b: FloatBuffer, count: Int) {
        let out = out.pointer, a = a.pointer, b = b.pointer
        Parallel.forEachRange(count, chunks: Parallel.chunkCount(count, minItemsPerChunk: 1 << 16), (out, a, b)) { c, r in
            let (out, a, b) = c
            var i = r.lowerBound
            while i + 8 <= r.upperBound { store8(load8(a + i) + load8(b + i), out + i); i += 8 }
            while i < r.upperBound { out[i] = a[i] + b[i]; i += 1 }
        }
    }

    public func dropoutForward(_ x: FloatBuffer, count: Int, dropout: DropoutSpec) {
        applyDropoutMask(x.pointer, count: count, dropout: dropout)
    }

    public func dropoutBackward(_ dx: FloatBuffer, count: Int, dropout: DropoutSpec) {
        applyDropoutMask(dx.pointer, count: count, dropout: dropout)
    }

    private func applyDropoutMask(_ x: UnsafeMutablePointer<Float>, count: Int, dropout: DropoutSpec) {
        guard dropout.isActive else { return }
        let p = dropout.probability, seed = dropout.seed
        let scale = 1 / (1 - p)
        Parallel.forEachRange(count, chunks: Parallel.chunkCount(count, minItemsPerChunk: 1 << 15), (x, p, seed, scale)) { c, r in
            let (x, p, seed, scale) = c
            for i in r {
                x[i] = dropoutKeeps(seed: seed, index: UInt64(i), probability: p) ? x[i] * scale : 0
            }
        }
    }
}

/// sqrt(2/π), the GELU tanh-approximation constant.
let geluScale: Float = 0.7978845608028654

// GELU goes four vectors per loop step: its exp/tanh is one long chain of dependent operations
// per vector (~45 deep), ~36 cycles per 8 floats with one vector per step on the Zen 2 machine.
// Four per step made the fused MLP calls ~5-10% faster there (the compiler still emits the four
// chains one after another; writing the two-vector steps interleaved by hand was no faster).

/// out[i] = GELU(input[i]) for i in r (tanh form).
@inline(__always)
func geluRange(out: UnsafeMutablePointer<Float>, input inp: UnsafePointer<Float>, _ r: Range<Int>) {
    var i = r.lowerBound
    while i + 32 <= r.upperBound {
        let g0 = gelu8(load8(inp + i)), g1 = gelu8(load8(inp + i + 8))
        let g2 = gelu8(load8(inp + i + 16)), g3 = gelu8(load8(inp + i + 24))
        store8(g0, out + i); store8(g1, out + i + 8); store8(g2, out + i + 16); store8(g3, out + i + 24)
        i += 32
    }
    while i + 8 <= r.upperBound {
        store8(gelu8(load8(inp + i)), out + i)
        i += 8
    }
    while i < r.upperBound {
        out[i] = gelu8(Float8(repeating: inp[i]))[0]
        i += 1
    }
}

/// out[i] = GELU(x[i]) and x[i] replaced by GELU'(x[i]) for i in r: the forward of a GELU whose
/// backward only needs the derivative (`geluDerivativeBackwardRange`), so the backward does no
/// exp or division. The activations equal `geluRange`'s; the derivative is `geluGradient`'s formula
/// evaluated from the same tanh (within an ulp of it).
@inline(__always)
func geluKeepingDerivativeRange(out: UnsafeMutablePointer<Float>, input x: UnsafeMutablePointer<Float>, _ r: Range<Int>) {
    var i = r.lowerBound
    while i + 16 <= r.upperBound {
        let (a0, d0) = geluAndDerivative(load8(x + i)), (a1, d1) = geluAndDerivative(load8(x + i + 8))
        store8(a0, out + i); store8(d0, x + i); store8(a1, out + i + 8); store8(d1, x + i + 8)
        i += 16
    }
    while i + 8 <= r.upperBound {
        let (a, d) = geluAndDerivative(load8(x + i))
        store8(a, out + i); store8(d, x + i)
        i += 8
    }
    while i < r.upperBound {
        let (a, d) = geluAndDerivative(Float8(repeating: x[i]))
        out[i] = a[0]; x[i] = d[0]
        i += 1
    }
}

/// GELU (exactly as `gelu8`) and its derivative from the same tanh.
@inline(__always)
func geluAndDerivative(_ x: Float8) -> (Float8, Float8) {
    let k = Float8(repeating: geluScale)
    let cube: Float8 = 0.044715 * x * x * x
    let t = tanh8(k * (x + cube))
    let half: Float8 = 0.5 * (1 + t)
    let slope: Float8 = k * (1 + 3 * 0.044715 * (x * x))
    let sech2: Float8 = 1 - t * t
    return (x * half, half + 0.5 * x * sech2 * slope)
}

/// dinput[i] = derivative[i] · dout[i] for i in r (the backward after `geluKeepingDerivativeRange`).
@inline(__always)
func geluDerivativeBackwardRange(dinput dinp: UnsafeMutablePointer<Float>, derivative g: UnsafePointer<Float>,
                                 dout: UnsafePointer<Float>, _ r: Range<Int>) {
    var i = r.lowerBound
    while i + 8 <= r.upperBound { store8(load8(g + i) * load8(dout + i), dinp + i); i += 8 }
    while i < r.upperBound { dinp[i] = g[i] * dout[i]; i += 1 }
}

/// dinput[i] (+)= GELU'(input[i]) · dout[i] for i in r; `accumulate` false overwrites dinput.
@inline(__always)
func geluBackwardRange(dinput dinp: UnsafeMutablePointer<Float>, input inp: UnsafePointer<Float>, dout: UnsafePointer<Float>,
                       _ r: Range<Int>, accumulate: Bool) {
    @inline(__always) func put(_ g: Float8, _ i: Int) { store8(accumulate ? load8(dinp + i) + g : g, dinp + i) }
    var i = r.lowerBound
    while i + 32 <= r.upperBound {
        let g0 = geluGradient(load8(inp + i)), g1 = geluGradient(load8(inp + i + 8))
        let g2 = geluGradient(load8(inp + i + 16)), g3 = geluGradient(load8(inp + i + 24))
        put(g0 * load8(dout + i), i); put(g1 * load8(dout + i + 8), i + 8)
        put(g2 * load8(dout + i + 16), i + 16); put(g3 * load8(dout + i + 24), i + 24)
        i += 32
    }
    while i + 8 <= r.upperBound {
        put(geluGradient(load8(inp + i)) * load8(dout + i), i)
        i += 8
    }
    while i < r.upperBound {
        let g = geluGradient(Float8(repeating: inp[i]))[0] * dout[i]
        dinp[i] = accumulate ? dinp[i] + g : g
        i += 1
    }
}

/// GELU (tanh form) for 8 lanes.
@inline(__always)
func gelu8(_ x: Float8) -> Float8 {
    let u = Float8(repeating: geluScale) * (x + 0.044715 * x * x * x)
    return 0.5 * x * (1 + tanh8(u))
}

/// d/dx of GELU (tanh form) for 8 lanes.
@inline(__always)
func geluGradient(_ x: Float8) -> Float8 {
    let k = Float8(repeating: geluScale)
    let x2 = x * x
    let u = k * (x + 0.044715 * x2 * x)
    let t = tanh8(u)
    let sech2 = 1 - t * t
    return 0.5 * (1 + t) + 0.5 * x * sech2 * k * (1 + 3 * 0.044715 * x2)
}
