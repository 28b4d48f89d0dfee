// Every backward kernel against finite differences of its forward kernel, with the objective
// L = Σ r ⊙ out for a fixed random r (so dout = r).

import XCTest
@testable import Compute

final class KernelGradientTests: XCTestCase {
    func testLayerNorm() {
        let N = 3, C = 10
        let x = randomArray(N * C, seed: 1, scale: 2), w = randomArray(C, seed: 2), b = randomArray(C, seed: 3)
        let r = randomArray(N * C, seed: 4)
        func forward(_ x: [Float], _ w: [Float], _ b: [Float]) -> Double {
            let h = Host()
            let out = h.zeros(N * C)
            h.backend.layerNormForward(out: out, mean: h.zeros(N), rstd: h.zeros(N), input: h.buffer(x),
                                       weight: h.buffer(w), bias: h.buffer(b), N: N, C: C)
            return dot(h.read(out), r)
        }
        let h = Host()
        let out = h.zeros(N * C), mean = h.zeros(N), rstd = h.zeros(N)
        let xb = h.buffer(x), wb = h.buffer(w)
        h.backend.layerNormForward(out: out, mean: mean, rstd: rstd, input: xb, weight: wb, bias: h.buffer(b), N: N, C: C)
        let dx = h.zeros(N * C), dw = h.zeros(C), db = h.zeros(C)
        h.backend.layerNormBackward(dinput: dx, dweight: dw, dbias: db, dout: h.buffer(r), input: xb, weight: wb,
                                    mean: mean, rstd: rstd, N: N, C: C)
        checkFiniteDifferences("layernorm dinput", x: x, analytic: h.read(dx)) { forward($0, w, b) }
        checkFiniteDifferences("layernorm dweight", x: w, analytic: h.read(dw)) { forward(x, $0, b) }
        checkFiniteDifferences("layernorm dbias", x: b, analytic: h.read(db)) { forward(x, w, $0) }
    }

    func testMatmul() {
        let N = 5, C = 7, OC = 6
        let x = randomArray(N * C, seed: 1), w = randomArray(OC * C, seed: 2), b = randomArray(OC, seed: 3)
        let r = randomArray(N * OC, seed: 4)
        func forward(_ x: [Float], _ w: [Float], _ b: [Float]) -> Double {
            let h = Host()
            let out = h.zeros(N * OC)
            h.backend.matmulForward(out: out, input: h.buffer(x), weight: h.buffer(w), bias: h.buffer(b), N: N, C: C, OC: OC)
            return dot(h.read(out), r)
        }
        let h = Host()
        let dx = h.zeros(N * C), dw = h.zeros(OC * C), db = h.zeros(OC)
        h.backend.matmulBackward(dinput: dx, dweight: dw, dbias: db, dout: h.buffer(r), input: h.buffer(x),
                                 weight: h.buffer(w), N: N, C: C, OC: OC)
        checkFiniteDifferences("matmul dinput", x: x, analytic: h.read(dx)) { forward($0, w, b) }
        checkFiniteDifferences("matmul dweight", x: w, analytic: h.read(dw)) { forward(x, $0, b) }
        checkFiniteDifferences("matmul dbias", x: b, analytic: h.read(db)) { forward(x, w, $0) }
    }

    /// hs = C / NH: 4 takes the BLAS path, multiples of 8 the short-context kernels.
    func attentionCheck(dropout: DropoutSpec?, T: Int = 5, C: Int = 8, NH: Int = 2) {
        let B = 2
        let qkv = randomArray(B * T * 3 * C, seed: 11)
        let r = randomArray(B * T * C, seed: 12)
        func forward(_ qkv: [Float]) -> Double {
            let h = Host()
            let out = h.zeros(B * T * C)
            h.backend.attentionForward(out: out, lse: h.zeros(B * NH * T), qkv: h.buffer(qkv), B: B, T: T, C: C, NH: NH,
                                       dropout: dropout)
            return dot(h.read(out), r)
        }
        let h = Host()
        let out = h.zeros(B * T * C), lse = h.zeros(B * NH * T), q = h.buffer(qkv)
        h.backend.attentionForward(out: out, lse: lse, qkv: q, B: B, T: T, C: C, NH: NH, dropout: dropout)
        let dq = h.zeros(B * T * 3 * C)
        h.backend.attentionBackward(dqkv: dq, dout: h.buffer(r), lse: lse, qkv: q, B: B, T: T, C: C, NH: NH,
                                    dropout: dropout)
        checkFiniteDifferences("attention dqkv (dropout \(dropout?.probability ?? 0))", x: qkv, analytic: h.read(dq),
                               objective: forward)
    }

    func testAttention() { attentionCheck(dropout: nil) }
    func testAttentionWithDropout() { attentionCheck(dropout: DropoutSpec(probability: 0.3, seed: 77)) }
    func testShortContextAttention() {
        XCTAssertTrue(usesSmallAttention(T: 6, headSize: 8))
        attentionCheck(dropout: nil, T: 6, C: 16, NH: 2)
        attentionCheck(dropout: DropoutSpec(probability: 0.3, seed: 78), T: 6, C: 16, NH: 2)
    }

    func testGELU() {
        let n = 37
        let x = randomArray(n, seed: 5, scale: 4), r = randomArray(n, seed: 6)
        func forward(_ x: [Float]) -> Double {
            let h = Host()
            let out = h.zeros(n)
            h.backend.geluForward(out: out, input: h.buffer(x), count: n)
            return dot(h.read(out), r)
        }
        let h = Host()
        let dx = h.zeros(n)
        h.backend.geluBackward(dinput: dx, input: h.buffer(x), dout: h.buffer(r), count: n)
        checkFiniteDifferences("gelu", x: x, analytic: h.read(dx), step: 1e-3, objective: forward)
    }

    func testEncoder() {
        let B = 2, T = 3, C = 9, V = 5
        let tokens: [Int32] = [1, 4, 1, 0, 2, 1]
        let wte = randomArray(V * C, seed: 7), wpe = randomArray(T * C, seed: 8), r = randomArray(B * T * C, seed: 9)
        func forward(_ wte: [Float], _ wpe: [Float]) -> Double {
            let h = Host()
            let out = h.zeros(B * T * C)
            h.backend.encoderForward(out: out, tokens: h.tokens(tokens), wte: h.buffer(wte), wpe: h.buffer(wpe), B: B, T: T, C: C)
            return dot(h.read(out), r)
        }
        let h = Host()
        let dwte = h.zeros(V * C), dwpe = h.zeros(T * C)
        h.backend.encoderBackward(dwte: dwte, dwpe: dwpe, dout: h.buffer(r), tokens: h.tokens(tokens), B: B, T: T, C: C)
        checkFiniteDifferences("encoder dwte", x: wte, analytic: h.read(dwte)) { forward($0, wpe) }
        checkFiniteDifferences("encoder dwpe", x: wpe, analytic: h.read(dwpe)) { forward(wte, $0) }
    }

    func testCrossEntropyWithWeightsAndPadding() {
        let N = 4, V = 11, Vp = 16
        let logits = randomArray(N * Vp, seed: 10, scale: 3)
        let targets: [Int32] = [3, 0, 10, 7]
        let weights: [Float] = [0.5, 0, 0.25, 1]
        func loss(_ l: [Float]) -> Double {
            let h = Host()
            let losses = h.zeros(N)
            h.backend.crossEntropyForward(losses: losses, logits: h.buffer(l), targets: h.tokens(targets), weights: nil,
                                          N: N, V: V, Vp: Vp)
            return dot(h.read(losses), weights)
        }
        let h = Host()
        let lb = h.buffer(logits)
        h.backend.crossEntropyForward(losses: h.zeros(N), logits: lb, targets: h.tokens(targets), weights: h.buffer(weights),
                                      N: N, V: V, Vp: Vp)
        let grad = h.read(lb)
        for n in 0..<N { for j in V..<Vp { XCTAssertEqual(grad[n * Vp + j], 0, "padding column gets no gradient") } }
        checkFiniteDifferences("cross-entropy dlogits", x: logits, analytic: grad, step: 1e-3, objective: loss)
    }

    func testDropoutIsInvertedAndRepeatable() {
        let n = 10_000
        let h = Host()
        let x = h.buffer([Float](repeating: 1, count: n))
        let spec = DropoutSpec(probability: 0.25, seed: 5)
        h.backend.dropoutForward(x, count: n, dropout: spec)
        let once = h.read(x)
        let kept = once.filter { $0 != 0 }
        XCTAssertEqual(Double(kept.count) / Double(n), 0.75, accuracy: 0.02)
        XCTAssertTrue(kept.allSatisfy { abs($0 - 1 / 0.75) < 1e-6 })
        let g = h.buffer([Float](repeating: 1, count: n))
        h.backend.dropoutBackward(g, count: n, dropout: spec)
        XCTAssertEqual(h.read(g), once, "backward applies exactly the forward mask")
    }
}
