// Fast kernels against naive references: attention against a direct triple loop, AdamW against
// PyTorch's formula written out, the fast exp against libm.

import XCTest
@testable import Compute
#if canImport(Glibc)
import Glibc
#endif

final class ReferenceKernelTests: XCTestCase {
    /// Naive causal attention: materialises every (T, T) score matrix.
    func naiveAttention(_ qkv: [Float], B: Int, T: Int, C: Int, NH: Int) -> [Float] {
        let hs = C / NH
        var out = [Float](repeating: 0, count: B * T * C)
        for b in 0..<B {
            for h in 0..<NH {
                for i in 0..<T {
                    var scores = [Double](repeating: 0, count: i + 1)
                    for j in 0...i {
                        var s = 0.0
                        for d in 0..<hs {
                            s += Double(qkv[(b * T + i) * 3 * C + h * hs + d]) * Double(qkv[(b * T + j) * 3 * C + C + h * hs + d])
                        }
                        scores[j] = s / Double(hs).squareRoot()
                    }
                    let m = scores.max()!
                    let e = scores.map { Foundation_exp($0 - m) }
                    let z = e.reduce(0, +)
                    for d in 0..<hs {
                        var acc = 0.0
                        for j in 0...i { acc += e[j] / z * Double(qkv[(b * T + j) * 3 * C + 2 * C + h * hs + d]) }
                        out[(b * T + i) * C + h * hs + d] = Float(acc)
                    }
                }
            }
        }
        return out
    }

    func testAttentionMatchesNaiveAcrossBlockBoundaries() {
        // T = 150 spans three 64-row query blocks.
        let B = 2, T = 150, C = 32, NH = 4
        let qkv = randomArray(B * T * 3 * C, seed: 21, scale: 1.5)
        let h = Host()
        let out = h.zeros(B * T * C)
        h.backend.attentionForward(out: out, lse: h.zeros(B * NH * T), qkv: h.buffer(qkv), B: B, T: T, C: C, NH: NH, dropout: nil)
        let expected = naiveAttention(qkv, B: B, T: T, C: C, NH: NH)
        let got = h.read(out)
        for i in 0..<got.count { XCTAssertEqual(got[i], expected[i], accuracy: 2e-5, "index \(i)") }
    }

    /// The weight-gradient path that splits rows into blocks (N ≥ 384) computes dinput, partial
    /// dweight and partial dbias per block; every gradient must add onto what it held before.
    func testMatmulBackwardInRowBlocksMatchesReference() { checkMatmulBackwardInRowBlocks() }

    /// The MLP's fused calls (GELU applied per block of rows) against the separate kernels.
    func testMatmulGELUMatchesSeparateKernels() { checkMatmulGELUFusion() }

    /// The backward that overwrites dinput equals zeroing it and adding, bit for bit.
    func testMatmulBackwardOverwritingInputMatchesZeroThenAdd() { checkMatmulBackwardOverwritingInput() }

    /// AdamW over several segments in one call equals one call per segment, bit for bit, and
    /// zeroes the gradients it read; elements outside every segment are left alone.
    func testSegmentedAdamWMatchesPerTensorCalls() {
        let n = 70000  // more than one parallel chunk
        let segments = [AdamWSegment(offset: 0, count: 21, weightDecay: 0.1), AdamWSegment(offset: 32, count: 40000, weightDecay: 0),
                        AdamWSegment(offset: 40032, count: 29968, weightDecay: 0.1)]
        let p0 = randomArray(n, seed: 51), g0 = randomArray(n, seed: 52), m0 = randomArray(n, seed: 53)
        let v0 = randomArray(n, seed: 54).map { abs($0) }
        let step = AdamWStep(learningRate: 1e-2, beta1: 0.9, beta2: 0.99, epsilon: 1e-8, step: 3, gradientScale: 0.7)
        let h = Host()
        let p1 = h.buffer(p0), g1 = h.buffer(g0), m1 = h.buffer(m0), v1 = h.buffer(v0)
        h.backend.adamw(params: p1, grads: g1, m: m1, v: v1, segments: segments, step: step, zeroGradients: true)
        let p2 = h.buffer(p0), g2 = h.buffer(g0), m2 = h.buffer(m0), v2 = h.buffer(v0)
        for s in segments {
            var st = step
            st.weightDecay = s.weightDecay
            h.backend.adamw(params: p2.slice(s.offset, s.count), grads: g2.slice(s.offset, s.count), m: m2.slice(s.offset, s.count),
                            v: v2.slice(s.offset, s.count), count: s.count, step: st)
        }
        XCTAssertEqual(h.read(p1), h.read(p2), "parameters")
        XCTAssertEqual(h.read(m1), h.read(m2), "first moments")
        XCTAssertEqual(h.read(v1), h.read(v2), "second moments")
        let g = h.read(g1)
        for s in segments { XCTAssertTrue(g[s.offset..<(s.offset + s.count)].allSatisfy { $0 == 0 }, "gradients zeroed") }
        XCTAssertEqual(Array(g[21..<32]), Array(g0[21..<32]), "a gap between segments is untouched")
        XCTAssertEqual(h.read(p1)[21..<32].map { $0 }, Array(p0[21..<32]), "parameters in the gap are untouched")
    }

    func testExpAccuracy() {
        var worst: Float = 0
        var x: Float = -80
        while x < 80 {
            let e = exp8(Float8(repeating: x))[0]
            worst = max(worst, abs(e - expf(x)) / expf(x))
            x += 0.0137
        }
        XCTAssertLessThan(worst, 3e-7)
    }

    func testAdamWMatchesPyTorchFormula() {
        let n = 21
        let p0 = randomArray(n, seed: 1), g = randomArray(n, seed: 2)
        let h = Host()
        let p = h.buffer(p0), m = h.zeros(n), v = h.zeros(n), gb = h.buffer(g)
        let lr: Float = 1e-2, b1: Float = 0.9, b2: Float = 0.95, eps: Float = 1e-8, wd: Float = 0.1
        for step in 1...3 {
            h.backend.adamw(params: p, grads: gb, m: m, v: v, count: n,
                            step: AdamWStep(learningRate: lr, beta1: b1, beta2: b2, epsilon: eps, weightDecay: wd,
                                            step: step, gradientScale: 0.5))
        }
        // Expected, in double precision.
        var ep = p0.map(Double.init), em = [Double](repeating: 0, count: n), ev = em
        for step in 1...3 {
            for i in 0..<n {
                let gi = Double(g[i]) * 0.5
                ep[i] *= 1 - Double(lr * wd)
                em[i] = Double(b1) * em[i] + (1 - Double(b1)) * gi
                ev[i] = Double(b2) * ev[i] + (1 - Double(b2)) * gi * gi
                let bc1 = 1 - pow(Double(b1), Double(step)), bc2 = 1 - pow(Double(b2), Double(step))
                ep[i] -= Double(lr) / bc1 * em[i] / (ev[i].squareRoot() / bc2.squareRoot() + Double(eps))
            }
        }
        let got = h.read(p)
        for i in 0..<n { XCTAssertEqual(Double(got[i]), ep[i], accuracy: 1e-6, "param \(i)") }
    }

    func testSumOfSquares() {
        let x = randomArray(100_003, seed: 9)
        let h = Host()
        let expected = x.reduce(0.0) { $0 + Double($1) * Double($1) }
        XCTAssertEqual(h.backend.sumOfSquares(h.buffer(x)), expected, accuracy: expected * 1e-6)
    }
}

@inline(__always) func Foundation_exp(_ x: Double) -> Double { exp(x) }

/// The row-blocked matrix-product backward against a double product (also run with the tile
/// kernel on by TileGEMMTests).
func checkMatmulBackwardInRowBlocks() {
    for (N, C, OC, withInput, withBias) in [(400, 24, 20, true, true), (1000, 16, 13, true, true), (800, 8, 12, false, true),
                                            (384, 12, 9, true, false),
                                            (500, 40, 70, true, true), (400, 32, 16, false, false)] {  // tile-kernel shapes (TileGEMMTests)
        let x = randomArray(N * C, seed: 31), w = randomArray(OC * C, seed: 32), dout = randomArray(N * OC, seed: 33)
        let dx0 = randomArray(N * C, seed: 34), dw0 = randomArray(OC * C, seed: 35), db0 = randomArray(OC, seed: 36)
        let h = Host()
        let dx = h.buffer(dx0), dw = h.buffer(dw0), db = h.buffer(db0)
        h.backend.matmulBackward(dinput: withInput ? dx : nil, dweight: dw, dbias: withBias ? db : nil, dout: h.buffer(dout),
                                 input: h.buffer(x), weight: h.buffer(w), N: N, C: C, OC: OC)
        var ex = dx0.map(Double.init), ew = dw0.map(Double.init), eb = db0.map(Double.init)
        for n in 0..<N {
            for o in 0..<OC {
                let d = Double(dout[n * OC + o])
                eb[o] += d
                for c in 0..<C {
                    ex[n * C + c] += d * Double(w[o * C + c])
                    ew[o * C + c] += d * Double(x[n * C + c])
                }
            }
        }
        func check(_ got: [Float], _ expected: [Double], _ name: String) {
            for i in 0..<got.count where abs(Double(got[i]) - expected[i]) > 1e-4 + 1e-4 * abs(expected[i]) {
                XCTFail("\(name) N \(N) C \(C) OC \(OC): index \(i) got \(got[i]) expected \(expected[i])")
                return
            }
        }
        check(h.read(dw), ew, "dweight")
        check(h.read(dx), withInput ? ex : dx0.map(Double.init), "dinput")
        check(h.read(db), withBias ? eb : db0.map(Double.init), "dbias")
    }
}

/// matmulBackwardOverwritingInput against zero + matmulBackward, on row blocks and on the small-N
/// fallback, with stale values in dinput (also run with the tile kernel on).
func checkMatmulBackwardOverwritingInput() {
    for (N, C, OC) in [(400, 24, 40), (768, 32, 16), (20, 12, 24)] {
        let x = randomArray(N * C, seed: 51), w = randomArray(OC * C, seed: 52), dout = randomArray(N * OC, seed: 53)
        let dw0 = randomArray(OC * C, seed: 54), db0 = randomArray(OC, seed: 55)
        let h = Host()
        let di1 = h.buffer(randomArray(N * C, seed: 56)), dw1 = h.buffer(dw0), db1 = h.buffer(db0)
        h.backend.matmulBackwardOverwritingInput(dinput: di1, dweight: dw1, dbias: db1, dout: h.buffer(dout), input: h.buffer(x),
                                                 weight: h.buffer(w), N: N, C: C, OC: OC)
        let di2 = h.zeros(N * C), dw2 = h.buffer(dw0), db2 = h.buffer(db0)
        h.backend.matmulBackward(dinput: di2, dweight: dw2, dbias: db2, dout: h.buffer(dout), input: h.buffer(x),
                                 weight: h.buffer(w), N: N, C: C, OC: OC)
        XCTAssertEqual(h.read(di1), h.read(di2), "dinput N \(N)")
        XCTAssertEqual(h.read(dw1), h.read(dw2), "dweight N \(N)")
        XCTAssertEqual(h.read(db1), h.read(db2), "dbias N \(N)")
    }
}

/// The MLP's fused calls against the separate kernels (also run with the tile kernel on).
func checkMatmulGELUFusion() {
    for (N, C, OC) in [(400, 24, 40), (768, 32, 16), (20, 12, 24)] {  // row blocks, and the small-N fallback
        let x = randomArray(N * C, seed: 41), w = randomArray(OC * C, seed: 42), b = randomArray(OC, seed: 43)
        let h = Host()
        let pre1 = h.zeros(N * OC), act1 = h.zeros(N * OC), pre2 = h.zeros(N * OC), act2 = h.zeros(N * OC)
        h.backend.matmulGELUForward(preactivation: pre1, activated: act1, input: h.buffer(x), weight: h.buffer(w),
                                    bias: h.buffer(b), N: N, C: C, OC: OC)
        h.backend.matmulForward(out: pre2, input: h.buffer(x), weight: h.buffer(w), bias: h.buffer(b), N: N, C: C, OC: OC)
        h.backend.geluForward(out: act2, input: pre2, count: N * OC)
        XCTAssertEqual(h.read(act1), h.read(act2), "activation N \(N)")
        // The CPU backend leaves GELU'(x) where the product was (for its backward): compare it with
        // the separate backward's derivative (dout = 1), within float rounding of the tanh argument.
        let derivative = h.zeros(N * OC)
        h.backend.geluBackward(dinput: derivative, input: pre2, dout: h.buffer([Float](repeating: 1, count: N * OC)), count: N * OC)
        assertNearlyEqual(h.read(pre1), h.read(derivative), tolerance: 2e-6, "GELU' kept in the preactivation buffer, N \(N)")

        // Backward of the next layer (OC2 outputs) through the activation.
        let OC2 = 8
        let w2 = randomArray(OC2 * OC, seed: 44), dout = randomArray(N * OC2, seed: 45)
        let dw0 = randomArray(OC2 * OC, seed: 46), db0 = randomArray(OC2, seed: 47)
        let dpre1 = h.buffer(randomArray(N * OC, seed: 48)), scratch = h.buffer(randomArray(N * OC, seed: 49))
        let dw1 = h.buffer(dw0), db1 = h.buffer(db0)
        h.backend.matmulGELUBackward(dpreactivation: dpre1, dactivated: scratch, dweight: dw1, dbias: db1, dout: h.buffer(dout),
                                     preactivation: pre1, activated: act1, weight: h.buffer(w2), N: N, C: OC, OC: OC2)
        let dact2 = h.zeros(N * OC), dpre2 = h.zeros(N * OC), dw2 = h.buffer(dw0), db2 = h.buffer(db0)
        h.backend.matmulBackward(dinput: dact2, dweight: dw2, dbias: db2, dout: h.buffer(dout), input: act1,
                                 weight: h.buffer(w2), N: N, C: OC, OC: OC2)
        h.backend.geluBackward(dinput: dpre2, input: pre2, dout: dact2, count: N * OC)
        assertNearlyEqual(h.read(dpre1), h.read(dpre2), tolerance: 2e-6, "dpreactivation N \(N)")
        XCTAssertEqual(h.read(dw1), h.read(dw2), "dweight N \(N)")
        XCTAssertEqual(h.read(db1), h.read(db2), "dbias N \(N)")
    }
}

/// Element-wise |got - expected| ≤ tolerance · (1 + |expected|).
func assertNearlyEqual(_ got: [Float], _ expected: [Float], tolerance: Float, _ what: String,
                       file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(got.count, expected.count, what, file: file, line: line)
    for i in 0..<min(got.count, expected.count) where !(abs(got[i] - expected[i]) <= tolerance * (1 + abs(expected[i]))) {
        XCTFail("\(what): index \(i): \(got[i]) against \(expected[i])", file: file, line: line)
        return
    }
}
