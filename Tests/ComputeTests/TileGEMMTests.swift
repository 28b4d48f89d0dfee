// SwiftGPT's own small-product kernel (TileGEMM.swift) against a double-precision product: both
// packings of B, A read in place with either stride, the three ways of writing C, row ranges and
// column counts that are not whole tiles; and the training entry points that use it (forward with
// bias, row-blocked backward) on shapes that take it.

import XCTest
@testable import Compute

final class TileGEMMTests: XCTestCase {
    func testTileProductMatchesDoubleProduct() {
        // (m, n, k, rows): rows a sub-range of 0..<m that starts and ends inside tiles.
        for (m, n, k, rows) in [(12, 16, 8, 0..<12), (13, 40, 24, 1..<13), (7, 65, 33, 0..<7), (30, 17, 128, 5..<26)] {
            for transposedA in [false, true] {
                for transposedB in [false, true] {
                    for mode in 0..<3 {
                        check(m: m, n: n, k: k, rows: rows, transposedA: transposedA, transposedB: transposedB, mode: mode)
                    }
                }
            }
        }
    }

    private func check(m: Int, n: Int, k: Int, rows: Range<Int>, transposedA: Bool, transposedB: Bool, mode: Int) {
        let a = randomArray(m * k, seed: UInt64(m * 7 + k)), b = randomArray(k * n, seed: UInt64(n * 5 + k))
        let bias = randomArray(n, seed: 77), start = randomArray(m * n, seed: 78)
        // A element (i, p): row-major (m, k), or stored transposed as (k, m).
        func aAt(_ i: Int, _ p: Int) -> Float { transposedA ? a[p * m + i] : a[i * k + p] }
        // op(B) element (p, j): (k, n) row-major, or Wᵀ with W stored (n, k).
        func bAt(_ p: Int, _ j: Int) -> Float { transposedB ? b[j * k + p] : b[p * n + j] }
        let panels = panelCount(n)
        var packed = [Float](repeating: .nan, count: packedPanelFloats(k: k, n: n))
        var paddedBias = bias + [Float](repeating: 0, count: panels * tilePanelWidth - n)
        var c = start
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                packed.withUnsafeMutableBufferPointer { pp in
                    // Two calls over disjoint panel ranges, as the parallel packing does.
                    let half = panels / 2
                    packColumnPanels(bp.baseAddress!, ld: transposedB ? k : n, transposed: transposedB, k: k, n: n,
                                     panels: 0..<half, into: pp.baseAddress!)
                    packColumnPanels(bp.baseAddress!, ld: transposedB ? k : n, transposed: transposedB, k: k, n: n,
                                     panels: half..<panels, into: pp.baseAddress!)
                }
                paddedBias.withUnsafeMutableBufferPointer { biasp in
                    let output: TileOutput = mode == 0 ? .overwrite : mode == 1 ? .accumulate : .bias(biasp.baseAddress!)
                    packed.withUnsafeBufferPointer { pp in
                        c.withUnsafeMutableBufferPointer { cp in
                            tileProduct(a: ap.baseAddress!, rowStride: transposedA ? 1 : k, kStride: transposedA ? m : 1,
                                        rows: rows, k: k, packedB: pp.baseAddress!, n: n, output: output,
                                        c: cp.baseAddress!, ldc: n)
                        }
                    }
                }
            }
        }
        let what = "m \(m) n \(n) k \(k) rows \(rows) Aᵀ \(transposedA) Bᵀ \(transposedB) mode \(mode)"
        XCTAssertFalse(packed.contains { $0.isNaN }, "every packed element written: \(what)")
        for i in 0..<m {
            for j in 0..<n {
                var expected = Double(start[i * n + j])
                if rows.contains(i) {
                    var sum = mode == 2 ? Double(bias[j]) : 0
                    for p in 0..<k { sum += Double(aAt(i, p)) * Double(bAt(p, j)) }
                    expected = mode == 1 ? expected + sum : sum
                }
                let got = Double(c[i * n + j])
                if abs(got - expected) > 1e-4 + 1e-5 * abs(expected) {
                    XCTFail("\(what): C[\(i), \(j)] = \(got), expected \(expected)")
                    return
                }
            }
        }
    }

    /// The AVX-512 kernel (two panels per tile) gives the AVX2 kernel's bits: every element is the
    /// same fused multiply-adds in the same order. Pairs of panels, a lone last panel, columns
    /// that end inside either panel of a pair, rows that end inside a tile, packed row tiles, and
    /// the three ways of writing C; then a training step's products through the backend.
    func testAVX512KernelGivesTheAVX2KernelsBits() throws {
        guard CPUFeatures.current.avx512 else { throw XCTSkip("no AVX-512 on this CPU (\(CPUFeatures.current))") }
        let saved = tileAVX512Enabled
        defer { tileAVX512Enabled = saved }
        for (m, n, k, rows) in [(12, 32, 8, 0..<12), (13, 40, 24, 1..<13), (7, 65, 33, 0..<7), (30, 17, 128, 5..<26), (20, 96, 64, 0..<20)] {
            for mode in 0..<3 {
                for packedA in [false, true] {
                    var results: [[Float]] = []
                    for wide in [true, false] {
                        tileAVX512Enabled = wide
                        results.append(product(m: m, n: n, k: k, rows: packedA ? 0..<m : rows, mode: mode, packedA: packedA))
                    }
                    XCTAssertEqual(results[0], results[1], "m \(m) n \(n) k \(k) mode \(mode) packed A \(packedA)")
                }
            }
        }
        let enabled = tileGEMMEnabled
        tileGEMMEnabled = true
        defer { tileGEMMEnabled = enabled }
        let (N, C, OC) = (96, 64, 200)
        let x = randomArray(N * C, seed: 91), w = randomArray(OC * C, seed: 92), b = randomArray(OC, seed: 93)
        let dout = randomArray(N * OC, seed: 94)
        var outputs: [[Float]] = []
        for wide in [true, false] {
            tileAVX512Enabled = wide
            let h = Host()
            let out = h.zeros(N * OC), dx = h.zeros(N * C), dw = h.zeros(OC * C), db = h.zeros(OC)
            h.backend.matmulForward(out: out, input: h.buffer(x), weight: h.buffer(w), bias: h.buffer(b), N: N, C: C, OC: OC)
            h.backend.matmulBackward(dinput: dx, dweight: dw, dbias: db, dout: h.buffer(dout), input: h.buffer(x), weight: h.buffer(w),
                                     N: N, C: C, OC: OC)
            outputs.append(h.read(out) + h.read(dx) + h.read(dw) + h.read(db))
        }
        XCTAssertEqual(outputs[0], outputs[1], "forward and backward through the backend")
    }

    /// C = op(A) · B through `tileProduct` for random operands (A row-major m × k, or packed into
    /// row tiles from its transpose), B packed from a row-major k × n.
    private func product(m: Int, n: Int, k: Int, rows: Range<Int>, mode: Int, packedA: Bool) -> [Float] {
        let a = randomArray(m * k, seed: UInt64(m * 3 + k)), b = randomArray(k * n, seed: UInt64(n * 11 + k))
        var bias = randomArray(panelCount(n) * tilePanelWidth, seed: 5)
        var c = randomArray(m * n, seed: 6)
        var packed = [Float](repeating: 0, count: packedPanelFloats(k: k, n: n))
        // A stored transposed (k × m) for the row-tile packing.
        var at = [Float](repeating: 0, count: k * m)
        for i in 0..<m { for p in 0..<k { at[p * m + i] = a[i * k + p] } }
        var tiles = [Float](repeating: 0, count: packedRowTileFloats(k: k, m: m))
        b.withUnsafeBufferPointer { bp in
            packed.withUnsafeMutableBufferPointer { pp in
                packColumnPanels(bp.baseAddress!, ld: n, transposed: false, k: k, n: n, panels: 0..<panelCount(n), into: pp.baseAddress!)
            }
        }
        at.withUnsafeBufferPointer { atp in
            tiles.withUnsafeMutableBufferPointer { tp in packRowTiles(transposedFrom: atp.baseAddress!, ld: m, k: k, m: m, into: tp.baseAddress!) }
        }
        (packedA ? tiles : a).withUnsafeBufferPointer { ap in
            bias.withUnsafeMutableBufferPointer { biasp in
                let output: TileOutput = mode == 0 ? .overwrite : mode == 1 ? .accumulate : .bias(biasp.baseAddress!)
                packed.withUnsafeBufferPointer { pp in
                    c.withUnsafeMutableBufferPointer { cp in
                        tileProduct(a: ap.baseAddress!, rowStride: packedA ? 1 : k, kStride: packedA ? tileRows : 1, rows: rows, k: k,
                                    packedB: pp.baseAddress!, n: n, output: output, c: cp.baseAddress!, ldc: n, packedA: packedA)
                    }
                }
            }
        }
        return c
    }

    /// matmulForward (with bias, and fused with GELU) on shapes that take the tile kernel, against
    /// a double product; the result does not depend on the number of threads.
    func testForwardThroughTilesMatchesReference() {
        let enabled = tileGEMMEnabled
        tileGEMMEnabled = true
        defer { tileGEMMEnabled = enabled }
        for (N, C, OC) in [(768, 128, 65), (100, 24, 40), (40, 16, 16)] {
            XCTAssertTrue(tileGEMMApplies(k: C, n: OC))
            let x = randomArray(N * C, seed: 61), w = randomArray(OC * C, seed: 62), b = randomArray(OC, seed: 63)
            let h = Host()
            let out = h.zeros(N * OC)
            h.backend.matmulForward(out: out, input: h.buffer(x), weight: h.buffer(w), bias: h.buffer(b), N: N, C: C, OC: OC)
            let got = h.read(out)
            for n in 0..<N {
                for o in 0..<OC {
                    var e = Double(b[o])
                    for c in 0..<C { e += Double(x[n * C + c]) * Double(w[o * C + c]) }
                    if abs(Double(got[n * OC + o]) - e) > 1e-4 + 1e-5 * abs(e) {
                        return XCTFail("N \(N) C \(C) OC \(OC): out[\(n), \(o)] = \(got[n * OC + o]), expected \(e)")
                    }
                }
            }
            let saved = Parallel.threadCount
            Parallel.threadCount = 1
            let one = h.zeros(N * OC)
            h.backend.matmulForward(out: one, input: h.buffer(x), weight: h.buffer(w), bias: h.buffer(b), N: N, C: C, OC: OC)
            Parallel.threadCount = saved
            XCTAssertEqual(h.read(one), got, "one thread equals \(saved) threads, N \(N)")
        }
    }

    /// The row-blocked backward (dinput through the packed weight, dweight from packed row tiles of
    /// doutᵀ) with the tile kernel on: ReferenceKernelTests' double-precision check.
    func testRowBlockedBackwardThroughTiles() {
        let enabled = tileGEMMEnabled
        tileGEMMEnabled = true
        defer { tileGEMMEnabled = enabled }
        XCTAssertTrue(tileGEMMApplies(k: 70, n: 40))
        checkMatmulBackwardInRowBlocks()
        checkMatmulGELUFusion()
        checkMatmulBackwardOverwritingInput()
    }
}
