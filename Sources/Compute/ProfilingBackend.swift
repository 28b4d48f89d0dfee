// A Backend that forwards every call to another one and adds up the wall time per kernel:
// `swiftgpt bench train --profile` shows where a training step goes.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public final class ProfilingBackend: Backend, @unchecked Sendable {
    public let inner: any Backend
    public private(set) var seconds: [String: Double] = [:]
    public private(set) var calls: [String: Int] = [:]

    public init(_ inner: any Backend) { self.inner = inner }
    public var name: String { inner.name + "+profile" }

    public func reset() {
        seconds.removeAll()
        calls.removeAll()
    }

    @inline(__always) private func time<R>(_ key: String, _ body: () -> R) -> R {
        let t0 = MonotonicClock.now()
        let r = body()
        inner.synchronize()
        seconds[key, default: 0] += MonotonicClock.now() - t0
        calls[key, default: 0] += 1
        return r
    }

    public func allocate(_ count: Int) throws -> FloatBuffer { try inner.allocate(count) }
    public func deallocate(_ buffer: FloatBuffer) { inner.deallocate(buffer) }
    public func allocateTokens(_ count: Int) throws -> TokenBuffer { try inner.allocateTokens(count) }
    public func deallocateTokens(_ buffer: TokenBuffer) { inner.deallocateTokens(buffer) }
    public func upload(_ values: UnsafeBufferPointer<Float>, to buffer: FloatBuffer) { time("copy") { inner.upload(values, to: buffer) } }
    public func download(_ buffer: FloatBuffer, into values: UnsafeMutableBufferPointer<Float>) { time("copy") { inner.download(buffer, into: values) } }
    public func uploadTokens(_ values: UnsafeBufferPointer<Int32>, to buffer: TokenBuffer) { time("copy") { inner.uploadTokens(values, to: buffer) } }
    public func zero(_ buffer: FloatBuffer) { time("zero") { inner.zero(buffer) } }
    public func copy(from source: FloatBuffer, to destination: FloatBuffer) { time("copy") { inner.copy(from: source, to: destination) } }

    public func encoderForward(out: FloatBuffer, tokens: TokenBuffer, wte: FloatBuffer, wpe: FloatBuffer?, B: Int, T: Int, C: Int) {
        time("encoder fwd") { inner.encoderForward(out: out, tokens: tokens, wte: wte, wpe: wpe, B: B, T: T, C: C) }
    }
    public func encoderBackward(dwte: FloatBuffer, dwpe: FloatBuffer?, dout: FloatBuffer, tokens: TokenBuffer, B: Int, T: Int, C: Int) {
        time("encoder bwd") { inner.encoderBackward(dwte: dwte, dwpe: dwpe, dout: dout, tokens: tokens, B: B, T: T, C: C) }
    }
    public func layerNormForward(out: FloatBuffer, mean: FloatBuffer, rstd: FloatBuffer, input: FloatBuffer, weight: FloatBuffer,
                                 bias: FloatBuffer, N: Int, C: Int) {
        time("layernorm fwd") { inner.layerNormForward(out: out, mean: mean, rstd: rstd, input: input, weight: weight, bias: bias, N: N, C: C) }
    }
    public func layerNormBackward(dinput: FloatBuffer, dweight: FloatBuffer, dbias: FloatBuffer, dout: FloatBuffer, input: FloatBuffer,
                                  weight: FloatBuffer, mean: FloatBuffer, rstd: FloatBuffer, N: Int, C: Int) {
        time("layernorm bwd") {
            inner.layerNormBackward(dinput: dinput, dweight: dweight, dbias: dbias, dout: dout, input: input, weight: weight,
                                    mean: mean, rstd: rstd, N: N, C: C)
        }
    }
    public func matmulForward(out: FloatBuffer, input: FloatBuffer, weight: FloatBuffer, bias: FloatBuffer?, N: Int, C: Int, OC: Int) {
        time("matmul fwd") { inner.matmulForward(out: out, input: input, weight: weight, bias: bias, N: N, C: C, OC: OC) }
    }
    public func matmulGELUForward(preactivation: FloatBuffer, activated: FloatBuffer, input: FloatBuffer, weight: FloatBuffer,
                                  bias: FloatBuffer?, N: Int, C: Int, OC: Int) {
        time("matmul+gelu fwd") {
            inner.matmulGELUForward(preactivation: preactivation, activated: activated, input: input, weight: weight, bias: bias,
                                    N: N, C: C, OC: OC)
        }
    }
    public func matmulGELUBackward(dpreactivation: FloatBuffer, dactivated: FloatBuffer, dweight: FloatBuffer,
                                   dbias: FloatBuffer?, dout: FloatBuffer, preactivation: FloatBuffer, activated: FloatBuffer,
                                   weight: FloatBuffer, N: Int, C: Int, OC: Int) {
        time("matmul+gelu bwd") {
            inner.matmulGELUBackward(dpreactivation: dpreactivation, dactivated: dactivated, dweight: dweight, dbias: dbias,
                                     dout: dout, preactivation: preactivation, activated: activated, weight: weight,
                                     N: N, C: C, OC: OC)
        }
    }
    public func matmulBackward(dinput: FloatBuffer?, dweight: FloatBuffer, dbias: FloatBuffer?, dout: FloatBuffer, input: FloatBuffer,
                               weight: FloatBuffer, N: Int, C: Int, OC: Int) {
        time("matmul bwd") {
            inner.matmulBackward(dinput: dinput, dweight: dweight, dbias: dbias, dout: dout, input: input, weight: weight, N: N, C: C, OC: OC)
        }
    }
    public func matmulBackwardOverwritingInput(dinput: FloatBuffer, dweight: FloatBuffer, dbias: FloatBuffer?, dout: FloatBuffer,
                                               input: FloatBuffer, weight: FloatBuffer, N: Int, C: Int, OC: Int) {
        time("matmul bwd") {
            inner.matmulBackwardOverwritingInput(dinput: dinput, dweight: dweight, dbias: dbias, dout: dout, input: input,
                                                 weight: weight, N: N, C: C, OC: OC)
        }
    }
    public func attentionForward(out: FloatBuffer, lse: FloatBuffer, qkv: FloatBuffer, B: Int, T: Int, C: Int, NH: Int, KVH: Int,
                                 dropout: DropoutSpec?) {
        time("attention fwd") { inner.attentionForward(out: out, lse: lse, qkv: qkv, B: B, T: T, C: C, NH: NH, KVH: KVH, dropout: dropout) }
    }
    public func attentionBackward(dqkv: FloatBuffer, dout: FloatBuffer, lse: FloatBuffer, qkv: FloatBuffer, B: Int, T: Int, C: Int, NH: Int,
                                  KVH: Int, dropout: DropoutSpec?) {
        time("attention bwd") {
            inner.attentionBackward(dqkv: dqkv, dout: dout, lse: lse, qkv: qkv, B: B, T: T, C: C, NH: NH, KVH: KVH, dropout: dropout)
        }
    }
    public func rmsNormForward(out: FloatBuffer, rstd: FloatBuffer, input: FloatBuffer, weight: FloatBuffer, N: Int, C: Int, epsilon: Float) {
        time("rmsnorm fwd") { inner.rmsNormForward(out: out, rstd: rstd, input: input, weight: weight, N: N, C: C, epsilon: epsilon) }
    }
    public func rmsNormBackward(dinput: FloatBuffer, dweight: FloatBuffer, dout: FloatBuffer, input: FloatBuffer, weight: FloatBuffer,
                                rstd: FloatBuffer, N: Int, C: Int) {
        time("rmsnorm bwd") {
            inner.rmsNormBackward(dinput: dinput, dweight: dweight, dout: dout, input: input, weight: weight, rstd: rstd, N: N, C: C)
        }
    }
    public func rotaryEmbedding(_ qkv: FloatBuffer, positions: TokenBuffer?, N: Int, T: Int, heads: Int, kvHeads: Int, headSize: Int,
                                theta: Float, inverse: Bool) {
        time(inverse ? "rotary bwd" : "rotary fwd") {
            inner.rotaryEmbedding(qkv, positions: positions, N: N, T: T, heads: heads, kvHeads: kvHeads, headSize: headSize,
                                  theta: theta, inverse: inverse)
        }
    }
    public func swigluForward(out: FloatBuffer, input: FloatBuffer, N: Int, H: Int) {
        time("swiglu fwd") { inner.swigluForward(out: out, input: input, N: N, H: H) }
    }
    public func swigluBackward(dinput: FloatBuffer, input: FloatBuffer, dout: FloatBuffer, N: Int, H: Int) {
        time("swiglu bwd") { inner.swigluBackward(dinput: dinput, input: input, dout: dout, N: N, H: H) }
    }
    public func geluForward(out: FloatBuffer, input: FloatBuffer, count: Int) { time("gelu fwd") { inner.geluForward(out: out, input: input, count: count) } }
    public func geluBackward(dinput: FloatBuffer, input: FloatBuffer, dout: FloatBuffer, count: Int) {
        time("gelu bwd") { inner.geluBackward(dinput: dinput, input: input, dout: dout, count: count) }
    }
    public func residualForward(out: FloatBuffer, a: FloatBuffer, b: FloatBuffer, count: Int) {
        time("residual") { inner.residualForward(out: out, a: a, b: b, count: count) }
    }
    public func dropoutForward(_ x: FloatBuffer, count: Int, dropout: DropoutSpec) { time("dropout") { inner.dropoutForward(x, count: count, dropout: dropout) } }
    public func dropoutBackward(_ dx: FloatBuffer, count: Int, dropout: DropoutSpec) { time("dropout") { inner.dropoutBackward(dx, count: count, dropout: dropout) } }
    public func crossEntropyForward(losses: FloatBuffer, logits: FloatBuffer, targets: TokenBuffer, weights: FloatBuffer?, N: Int, V: Int, Vp: Int) {
        time("cross-entropy") { inner.crossEntropyForward(losses: losses, logits: logits, targets: targets, weights: weights, N: N, V: V, Vp: Vp) }
    }
    public func sumOfSquares(_ buffer: FloatBuffer) -> Double { time("grad norm") { inner.sumOfSquares(buffer) } }
    public func adamw(params: FloatBuffer, grads: FloatBuffer, m: FloatBuffer, v: FloatBuffer, segments: [AdamWSegment],
                      step: AdamWStep, zeroGradients: Bool) {
        time("adamw") {
            inner.adamw(params: params, grads: grads, m: m, v: v, segments: segments, step: step, zeroGradients: zeroGradients)
        }
    }
    public func adamw(params: FloatBuffer, grads: FloatBuffer, m: FloatBuffer, v: FloatBuffer, count: Int, step: AdamWStep) {
        time("adamw") { inner.adamw(params: params, grads: grads, m: m, v: v, count: count, step: step) }
    }
    public func synchronize() { inner.synchronize() }

    public func embedForward(out: FloatBuffer, tokens: TokenBuffer, positions: TokenBuffer, wte: FloatBuffer, wpe: FloatBuffer?,
                             N: Int, C: Int) {
        time("embed fwd") { inner.embedForward(out: out, tokens: tokens, positions: positions, wte: wte, wpe: wpe, N: N, C: C) }
    }
    public func cachedAttentionForward(out: FloatBuffer, qkv: FloatBuffer, keys: FloatBuffer, values: FloatBuffer, slots: TokenBuffer,
                                       positions: TokenBuffer, N: Int, C: Int, NH: Int, KVH: Int, capacity: Int) {
        time("cached attention") {
            inner.cachedAttentionForward(out: out, qkv: qkv, keys: keys, values: values, slots: slots, positions: positions,
                                         N: N, C: C, NH: NH, KVH: KVH, capacity: capacity)
        }
    }
    public func copyCacheSlot(keys: FloatBuffer, values: FloatBuffer, from source: Int, to destination: Int, length: Int, NH: Int,
                              capacity: Int, headSize: Int) {
        time("copy") {
            inner.copyCacheSlot(keys: keys, values: values, from: source, to: destination, length: length, NH: NH,
                                capacity: capacity, headSize: headSize)
        }
    }
    public var supportsHalfPrecisionCache: Bool { inner.supportsHalfPrecisionCache }
    public func allocateHalf(_ count: Int) throws -> HalfBuffer { try inner.allocateHalf(count) }
    public func deallocateHalf(_ buffer: HalfBuffer) { inner.deallocateHalf(buffer) }
    public func cachedAttentionForward(out: FloatBuffer, qkv: FloatBuffer, keys: HalfBuffer, values: HalfBuffer, slots: TokenBuffer,
                                       positions: TokenBuffer, N: Int, C: Int, NH: Int, KVH: Int, capacity: Int) {
        time("cached attention") {
            inner.cachedAttentionForward(out: out, qkv: qkv, keys: keys, values: values, slots: slots, positions: positions,
                                         N: N, C: C, NH: NH, KVH: KVH, capacity: capacity)
        }
    }
    public func copyCacheSlot(keys: HalfBuffer, values: HalfBuffer, from source: Int, to destination: Int, length: Int, NH: Int,
                              capacity: Int, headSize: Int) {
        time("copy") {
            inner.copyCacheSlot(keys: keys, values: values, from: source, to: destination, length: length, NH: NH,
                                capacity: capacity, headSize: headSize)
        }
    }
    public var supportsPanelWeights: Bool { inner.supportsPanelWeights }
    public func panelFloats(rows: Int, C: Int) -> Int { inner.panelFloats(rows: rows, C: C) }
    public func packPanels(weight: FloatBuffer, into panels: FloatBuffer, rows: Int, C: Int) {
        time("pack panels") { inner.packPanels(weight: weight, into: panels, rows: rows, C: C) }
    }
    public func matmulPanelForward(out: FloatBuffer, input: FloatBuffer, weight: FloatBuffer, panels: FloatBuffer,
                                   bias: FloatBuffer?, N: Int, C: Int, OC: Int) {
        time("matmul fwd") {
            inner.matmulPanelForward(out: out, input: input, weight: weight, panels: panels, bias: bias, N: N, C: C, OC: OC)
        }
    }
    public func allocateInt8(_ count: Int) throws -> Int8Buffer { try inner.allocateInt8(count) }
    public func deallocateInt8(_ buffer: Int8Buffer) { inner.deallocateInt8(buffer) }
    public func quantizeRows(weight: FloatBuffer, into q: Int8Buffer, scales: FloatBuffer, rows: Int, C: Int) {
        time("quantize") { inner.quantizeRows(weight: weight, into: q, scales: scales, rows: rows, C: C) }
    }
    public func matmulInt8Forward(out: FloatBuffer, input: FloatBuffer, weight: Int8Buffer, scales: FloatBuffer, bias: FloatBuffer?,
                                  N: Int, C: Int, OC: Int) {
        time("matmul int8 fwd") {
            inner.matmulInt8Forward(out: out, input: input, weight: weight, scales: scales, bias: bias, N: N, C: C, OC: OC)
        }
    }
}
