// The register-tiled attention for short contexts (CPUBackend+SmallAttention.swift) against the
// BLAS path it replaces there (which the naive and PyTorch checks cover), forward and backward,
// with grouped-query heads, dropout, contexts that are not a multiple of 8 and gradients that
// already hold values. KernelGradientTests.testShortContextAttention checks it against finite
// differences through the public entry points.

import XCTest
@testable import Compute

final class SmallAttentionTests: XCTestCase {
    struct Shape { let B, T, C, NH, KVH: Int }

    func compareWithBlockedPath(_ s: Shape, dropout: DropoutSpec?, file: StaticString = #filePath, line: UInt = #line) {
        let hs = s.C / s.NH, W = s.C + 2 * s.KVH * hs
        XCTAssertTrue(usesSmallAttention(T: s.T, headSize: hs), "shape must take the small path", file: file, line: line)
        let qkv = randomArray(s.B * s.T * W, seed: UInt64(s.T * 31 + s.C), scale: 1.5)
        let dout = randomArray(s.B * s.T * s.C, seed: UInt64(s.T * 7 + 3))
        let start = randomArray(s.B * s.T * W, seed: 99, scale: 0.1)  // backward adds into this
        let h = Host()
        let q = h.buffer(qkv), dO = h.buffer(dout)
        let out1 = h.zeros(s.B * s.T * s.C), lse1 = h.zeros(s.B * s.NH * s.T), d1 = h.buffer(start)
        let out2 = h.zeros(s.B * s.T * s.C), lse2 = h.zeros(s.B * s.NH * s.T), d2 = h.buffer(start)
        h.backend.smallAttentionForward(out: out1.pointer, lse: lse1.pointer, qkv: q.pointer, B: s.B, T: s.T, C: s.C,
                                        NH: s.NH, KVH: s.KVH, dropout: dropout)
        h.backend.blockedAttentionForward(out: out2.pointer, lse: lse2.pointer, qkv: q.pointer, B: s.B, T: s.T, C: s.C,
                                          NH: s.NH, KVH: s.KVH, dropout: dropout)
        h.backend.smallAttentionBackward(dqkv: d1.pointer, dout: dO.pointer, lse: lse1.pointer, qkv: q.pointer, B: s.B,
                                         T: s.T, C: s.C, NH: s.NH, KVH: s.KVH, dropout: dropout)
        h.backend.blockedAttentionBackward(dqkv: d2.pointer, dout: dO.pointer, lse: lse2.pointer, qkv: q.pointer, B: s.B,
                                           T: s.T, C: s.C, NH: s.NH, KVH: s.KVH, dropout: dropout)
        assertClose(h.read(out1), h.read(out2), "output \(s)", file: file, line: line)
        assertClose(h.read(lse1), h.read(lse2), "log-sum-exp \(s)", file: file, line: line)
        assertClose(h.read(d1), h.read(d2), "dqkv \(s)", file: file, line: line)
    }

    func assertClose(_ got: [Float], _ expected: [Float], _ what: String, atol: Float = 2e-5, rtol: Float = 1e-4,
                     file: StaticString, line: UInt) {
        XCTAssertEqual(got.count, expected.count, what, file: file, line: line)
        var worst: Float = 0, first = -1
        for i in 0..<min(got.count, expected.count) {
            let d = abs(got[i] - expected[i])
            worst = max(worst, d)
            if first < 0 && !(d <= atol + rtol * abs(expected[i])) { first = i }
        }
        XCTAssertEqual(first, -1, "\(what): first bad index \(first), max |difference| \(worst)", file: file, line: line)
    }

    let shapes = [
        Shape(B: 2, T: 5, C: 16, NH: 2, KVH: 2),    // T below one 8-column tile
        Shape(B: 1, T: 13, C: 32, NH: 4, KVH: 2),   // grouped-query heads, T not a multiple of 4 or 8
        Shape(B: 2, T: 64, C: 128, NH: 4, KVH: 4),  // the char-baby shape
        Shape(B: 1, T: 70, C: 96, NH: 2, KVH: 1),   // hs 48 (a 16-column tile and an 8-column one), one KV head
        Shape(B: 1, T: 150, C: 32, NH: 4, KVH: 4),  // several BLAS row blocks on the other side
    ]

    func testMatchesBlockedPath() {
        for s in shapes { compareWithBlockedPath(s, dropout: nil) }
    }

    func testMatchesBlockedPathWithDropout() {
        for s in shapes { compareWithBlockedPath(s, dropout: DropoutSpec(probability: 0.25, seed: 5)) }
    }
}
