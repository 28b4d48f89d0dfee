// The Llama-style kernels against finite differences (objective L = Σ r ⊙ out), plus the facts
// their backward passes rely on: the inverse rotary rotation undoes the forward one, and
// grouped-query attention equals ordinary attention with every key/value head repeated.

import XCTest
@testable import Compute

final class LlamaKernelTests: XCTestCase {
    func testRMSNorm() {
        let N = 3, C = 10
        let x = randomArray(N * C, seed: 1, scale: 2), w = randomArray(C, seed: 2), r = randomArray(N * C, seed: 4)
        func forward(_ x: [Float], _ w: [Float]) -> Double {
            let h = Host()
            let out = h.zeros(N * C)
            h.backend.rmsNormForward(out: out, rstd: h.zeros(N), input: h.buffer(x), weight: h.buffer(w), N: N, C: C, epsilon: 1e-5)
            return dot(h.read(out), r)
        }
        let h = Host()
        let out = h.zeros(N * C), rstd = h.zeros(N), xb = h.buffer(x), wb = h.buffer(w)
        h.backend.rmsNormForward(out: out, rstd: rstd, input: xb, weight: wb, N: N, C: C, epsilon: 1e-5)
        let dx = h.zeros(N * C), dw = h.zeros(C)
        h.backend.rmsNormBackward(dinput: dx, dweight: dw, dout: h.buffer(r), input: xb, weight: wb, rstd: rstd, N: N, C: C)
        checkFiniteDifferences("rmsnorm dinput", x: x, analytic: h.read(dx)) { forward($0, w) }
        checkFiniteDifferences("rmsnorm dweight", x: w, analytic: h.read(dw)) { forward(x, $0) }
    }

    func testSwiGLU() {
        let N = 3, H = 11
        let x = randomArray(N * 2 * H, seed: 5, scale: 3), r = randomArray(N * H, seed: 6)
        func forward(_ x: [Float]) -> Double {
            let h = Host()
            let out = h.zeros(N * H)
            h.backend.swigluForward(out: out, input: h.buffer(x), N: N, H: H)
            return dot(h.read(out), r)
        }
        let h = Host()
        let dx = h.zeros(N * 2 * H)
        h.backend.swigluBackward(dinput: dx, input: h.buffer(x), dout: h.buffer(r), N: N, H: H)
        checkFiniteDifferences("swiglu dinput", x: x, analytic: h.read(dx), objective: forward)
    }

    func testRotaryBackwardIsTheInverseRotation() {
        // Forward rotation is linear, so its gradient is its transpose = the inverse rotation.
        let N = 6, T = 3, NH = 2, KVH = 1, hs = 8, W = (NH + 2 * KVH) * hs
        let x = randomArray(N * W, seed: 7), r = randomArray(N * W, seed: 8)
        func forward(_ x: [Float]) -> Double {
            let h = Host()
            let b = h.buffer(x)
            h.backend.rotaryEmbedding(b, positions: nil, N: N, T: T, heads: NH, kvHeads: KVH, headSize: hs, theta: 100, inverse: false)
            return dot(h.read(b), r)
        }
        let h = Host()
        let g = h.buffer(r)
        h.backend.rotaryEmbedding(g, positions: nil, N: N, T: T, heads: NH, kvHeads: KVH, headSize: hs, theta: 100, inverse: true)
        checkFiniteDifferences("rotary", x: x, analytic: h.read(g), objective: forward)
        // Values are not rotated; position 0 is the identity; explicit positions equal n mod T.
        let b = h.buffer(x)
        h.backend.rotaryEmbedding(b, positions: nil, N: N, T: T, heads: NH, kvHeads: KVH, headSize: hs, theta: 100, inverse: false)
        let rotated = h.read(b)
        XCTAssertEqual(Array(rotated[0..<W]), Array(x[0..<W]), "position 0")
        XCTAssertEqual(Array(rotated[(W + (NH + KVH) * hs)..<(2 * W)]), Array(x[(W + (NH + KVH) * hs)..<(2 * W)]), "values")
        let c = h.buffer(x)
        h.backend.rotaryEmbedding(c, positions: h.tokens((0..<N).map { Int32($0 % T) }), N: N, T: 1000, heads: NH, kvHeads: KVH,
                                  headSize: hs, theta: 100, inverse: false)
        XCTAssertEqual(h.read(c), rotated)
    }

    /// qkv with KVH key/value heads → the same with every key/value head repeated NH/KVH times.
    func expand(_ qkv: [Float], rows: Int, C: Int, NH: Int, KVH: Int) -> [Float] {
        let hs = C / NH, group = NH / KVH, W = C + 2 * KVH * hs
        var out: [Float] = []
        for n in 0..<rows {
            let row = Array(qkv[(n * W)..<((n + 1) * W)])
            out += row[0..<C]
            for part in 0..<2 {
                for h in 0..<NH {
                    let g = h / group, start = C + part * KVH * hs + g * hs
                    out += row[start..<(start + hs)]
                }
            }
        }
        return out
    }

    func testGroupedQueryAttentionEqualsRepeatedHeads() {
        let B = 2, T = 70, C = 32, NH = 4, KVH = 2, hs = C / NH, W = C + 2 * KVH * hs
        let qkv = randomArray(B * T * W, seed: 9)
        let h = Host()
        let out = h.zeros(B * T * C), lse = h.zeros(B * NH * T)
        h.backend.attentionForward(out: out, lse: lse, qkv: h.buffer(qkv), B: B, T: T, C: C, NH: NH, KVH: KVH, dropout: nil)
        let full = expand(qkv, rows: B * T, C: C, NH: NH, KVH: KVH)
        let outFull = h.zeros(B * T * C)
        h.backend.attentionForward(out: outFull, lse: h.zeros(B * NH * T), qkv: h.buffer(full), B: B, T: T, C: C, NH: NH, dropout: nil)
        let a = h.read(out), b = h.read(outFull)
        for i in 0..<a.count { XCTAssertEqual(a[i], b[i], accuracy: 1e-6) }
    }

    func testGroupedQueryAttentionGradient() {
        let B = 2, T = 5, C = 8, NH = 4, KVH = 2, W = C + 2 * KVH * (C / NH)
        let qkv = randomArray(B * T * W, seed: 13), r = randomArray(B * T * C, seed: 14)
        func forward(_ qkv: [Float]) -> Double {
            let h = Host()
            let out = h.zeros(B * T * C)
            h.backend.attentionForward(out: out, lse: h.zeros(B * NH * T), qkv: h.buffer(qkv), B: B, T: T, C: C, NH: NH, KVH: KVH, dropout: nil)
            return dot(h.read(out), r)
        }
        let h = Host()
        let lse = h.zeros(B * NH * T), q = h.buffer(qkv)
        h.backend.attentionForward(out: h.zeros(B * T * C), lse: lse, qkv: q, B: B, T: T, C: C, NH: NH, KVH: KVH, dropout: nil)
        let dq = h.zeros(B * T * W)
        h.backend.attentionBackward(dqkv: dq, dout: h.buffer(r), lse: lse, qkv: q, B: B, T: T, C: C, NH: NH, KVH: KVH, dropout: nil)
        checkFiniteDifferences("grouped-query attention dqkv", x: qkv, analytic: h.read(dq), objective: forward)
    }
}
