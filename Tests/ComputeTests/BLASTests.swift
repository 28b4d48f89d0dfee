import Foundation
import XCTest
@testable import Compute

final class BLASTests: XCTestCase {
    func testSgemmMatchesReferenceForEveryTransposeCombination() {
        let m = 7, n = 13, k = 9
        var rng = SeededRandom(seed: 3)
        let a = (0..<(m * k)).map { _ in rng.nextUniform() - 0.5 }
        let b = (0..<(k * n)).map { _ in rng.nextUniform() - 0.5 }
        let c0 = (0..<(m * n)).map { _ in rng.nextUniform() - 0.5 }
        for ta in [false, true] {
            for tb in [false, true] {
                var fast = c0, slow = c0
                fast.withUnsafeMutableBufferPointer { c in
                    sgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.7, a: a, lda: ta ? m : k, b: b,
                          ldb: tb ? k : n, beta: 0.3, c: c.baseAddress!, ldc: n)
                }
                slow.withUnsafeMutableBufferPointer { c in
                    referenceSgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.7, a: a, lda: ta ? m : k, b: b,
                                   ldb: tb ? k : n, beta: 0.3, c: c.baseAddress!, ldc: n)
                }
                for i in 0..<(m * n) { XCTAssertEqual(fast[i], slow[i], accuracy: 1e-5, "transA \(ta) transB \(tb) at \(i)") }
            }
        }
    }

    /// The built-in kernel used without a system BLAS: every transpose, beta 0 / 1 / other, edge
    /// tiles in both directions, and shapes that cross the row, column and shared-dimension blocks.
    func testPortableKernelMatchesReferenceAcrossBlocksAndEdges() {
        let shapes = [(1, 1, 1), (7, 13, 9), (6, 16, 8), (100, 37, 300), (5, 2_053, 3)]
        var rng = SeededRandom(seed: 11)
        for (m, n, k) in shapes {
            let a = (0..<(m * k)).map { _ in rng.nextUniform() - 0.5 }
            let b = (0..<(k * n)).map { _ in rng.nextUniform() - 0.5 }
            let c0 = (0..<(m * n)).map { _ in rng.nextUniform() - 0.5 }
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                for beta: Float in [0, 1, 0.3] {
                    var fast = c0, slow = c0
                    if beta == 0 { fast = fast.map { _ in .nan } }  // beta 0 must not read C
                    fast.withUnsafeMutableBufferPointer { c in
                        portableSgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.7, a: a, lda: ta ? m : k, b: b,
                                      ldb: tb ? k : n, beta: beta, c: c.baseAddress!, ldc: n)
                    }
                    slow.withUnsafeMutableBufferPointer { c in
                        referenceSgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.7, a: a, lda: ta ? m : k, b: b,
                                       ldb: tb ? k : n, beta: beta, c: c.baseAddress!, ldc: n)
                    }
                    let bad = (0..<(m * n)).first { !(abs(fast[$0] - slow[$0]) <= 1e-4) }
                    XCTAssertNil(bad, "m \(m) n \(n) k \(k) transA \(ta) transB \(tb) beta \(beta): first bad \(bad ?? -1)")
                }
            }
        }
    }

    func testSystemBLASIsLoaded() throws {
        // CI installs OpenBLAS and sets SWIFTGPT_REQUIRE_SYSTEM_BLAS, so its benchmarks and timings
        // are OpenBLAS's. Elsewhere a machine without a BLAS is fine: the built-in kernel runs.
        guard ProcessInfo.processInfo.environment["SWIFTGPT_REQUIRE_SYSTEM_BLAS"] != nil else {
            throw XCTSkip("system BLAS required only in CI; this machine uses \(BLASLibrary.shared.summary)")
        }
        XCTAssertTrue(BLASLibrary.shared.isSystem, "no system BLAS found: \(BLASLibrary.shared.summary)")
    }

    func testOpenBLASGetsAnAVX512KernelOnAVX512Machines() throws {
        // The trap: Debian's OpenBLAS 0.3.21 falls back to a generic kernel on recent Intel CPUs
        // unless OPENBLAS_CORETYPE is set before it loads. SwiftGPT sets it from CPUID.
        let lib = BLASLibrary.shared
        guard CPUFeatures.current.avx512, lib.path.contains("openblas") else {
            throw XCTSkip("not an AVX-512 machine with OpenBLAS (CPU: \(CPUFeatures.current), BLAS: \(lib.summary))")
        }
        let core = lib.coreName.lowercased()
        if lib.requestedCoreType == nil, let own = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] {
            // OPENBLAS_CORETYPE came from the environment (some machines set it, e.g. to Haswell):
            // SwiftGPT leaves that choice alone, and OpenBLAS follows it.
            XCTAssertEqual(core, own.lowercased(), "OPENBLAS_CORETYPE=\(own) in the environment, OpenBLAS chose \(lib.coreName)")
            return
        }
        XCTAssertEqual(lib.requestedCoreType, "SkylakeX")
        XCTAssertTrue(["skylakex", "cooperlake", "sapphirerapids", "zen"].contains { core.contains($0) },
                      "OpenBLAS chose the \(lib.coreName) kernel on an AVX-512 CPU")
    }
}

final class MatmulReferenceTests: XCTestCase {
    func testMatmulForwardMatchesReferenceOnChunkedShapes() {
        for (N, C, OC) in [(48, 64, 128), (48, 64, 192), (300, 40, 24)] {
            let x = randomArray(N * C, seed: 1), w = randomArray(OC * C, seed: 2), b = randomArray(OC, seed: 3)
            let h = Host()
            let out = h.zeros(N * OC)
            h.backend.matmulForward(out: out, input: h.buffer(x), weight: h.buffer(w), bias: h.buffer(b), N: N, C: C, OC: OC)
            var expected = [Float](repeating: 0, count: N * OC)
            for n in 0..<N { for o in 0..<OC { expected[n * OC + o] = b[o] } }
            expected.withUnsafeMutableBufferPointer { e in
                referenceSgemm(transA: false, transB: true, m: N, n: OC, k: C, alpha: 1, a: x, lda: C, b: w, ldb: C,
                               beta: 1, c: e.baseAddress!, ldc: OC)
            }
            let got = h.read(out)
            let bad = (0..<got.count).first { abs(got[$0] - expected[$0]) > 1e-4 }
            XCTAssertNil(bad, "N \(N) C \(C) OC \(OC): first bad \(bad ?? -1)")
        }
    }

    /// Decode-sized products (1–8 rows) take the small-batch kernel: 3-row × 4-input tiles with
    /// single-row tails, every input-group remainder, channel counts that are not a multiple of 8,
    /// long inputs that go in column blocks — fp32 and int8 against a double-precision reference.
    func testSmallBatchProductsMatchReferenceOnEveryTileShape() throws {
        for N in 1...8 {
            // C above 512 takes the column-blocked path (blocks of 512 and a tail, odd tails too).
            for (C, OC) in [(8, 1), (13, 2), (24, 3), (16, 4), (40, 5), (32, 7), (19, 67), (64, 130), (1100, 7), (1037, 130)] {
                let x = randomArray(N * C, seed: UInt64(N * 100 + C)), w = randomArray(OC * C, seed: UInt64(OC))
                let b = randomArray(OC, seed: 9)
                let h = Host()
                let out = h.zeros(N * OC)
                h.backend.matmulForward(out: out, input: h.buffer(x), weight: h.buffer(w), bias: h.buffer(b), N: N, C: C, OC: OC)
                let got = h.read(out)
                // int8 weights: quantise, then the same product against the dequantised values.
                let q = try h.backend.allocateInt8(OC * C), scales = h.zeros(OC)
                defer { h.backend.deallocateInt8(q) }
                h.backend.quantizeRows(weight: h.buffer(w), into: q, scales: scales, rows: OC, C: C)
                let outQ = h.zeros(N * OC)
                h.backend.matmulInt8Forward(out: outQ, input: h.buffer(x), weight: q, scales: scales, bias: h.buffer(b),
                                            N: N, C: C, OC: OC)
                let gotQ = h.read(outQ), sc = h.read(scales)
                for n in 0..<N {
                    for o in 0..<OC {
                        var e: Double = Double(b[o]), eq: Double = Double(b[o])
                        for c in 0..<C {
                            e += Double(x[n * C + c]) * Double(w[o * C + c])
                            eq += Double(x[n * C + c]) * Double(q.pointer[o * C + c]) * Double(sc[o])
                        }
                        XCTAssertEqual(Double(got[n * OC + o]), e, accuracy: 1e-4, "fp32 N \(N) C \(C) OC \(OC) [\(n),\(o)]")
                        XCTAssertEqual(Double(gotQ[n * OC + o]), eq, accuracy: 1e-4, "int8 N \(N) C \(C) OC \(OC) [\(n),\(o)]")
                    }
                }
            }
        }
    }

    /// The packed decode layout (24-channel panels, columns in blocks of 256): every input count,
    /// channel counts with a partial last panel, column counts below, at and across the block size,
    /// with and without bias — against a double-precision reference. N = 1 and N > 8 take the plain
    /// product, so they are checked too.
    func testPanelProductsMatchReference() throws {
        let h = Host()
        XCTAssertTrue(h.backend.supportsPanelWeights)
        for N in [1, 2, 3, 4, 5, 7, 8, 9] {
            for (C, OC) in [(8, 1), (13, 23), (24, 24), (255, 25), (256, 48), (257, 67), (600, 130), (1037, 50)] {
                let x = randomArray(N * C, seed: UInt64(N * 100 + C)), w = randomArray(OC * C, seed: UInt64(OC))
                let b = randomArray(OC, seed: 9)
                let packed = h.zeros(h.backend.panelFloats(rows: OC, C: C))
                h.backend.packPanels(weight: h.buffer(w), into: packed, rows: OC, C: C)
                for withBias in [true, false] {
                    let out = h.buffer([Float](repeating: .nan, count: N * OC))
                    h.backend.matmulPanelForward(out: out, input: h.buffer(x), weight: h.buffer(w), panels: packed,
                                                 bias: withBias ? h.buffer(b) : nil, N: N, C: C, OC: OC)
                    let got = h.read(out)
                    for n in 0..<N {
                        for o in 0..<OC {
                            var e: Double = withBias ? Double(b[o]) : 0
                            for c in 0..<C { e += Double(x[n * C + c]) * Double(w[o * C + c]) }
                            XCTAssertEqual(Double(got[n * OC + o]), e, accuracy: 1e-4, "N \(N) C \(C) OC \(OC) bias \(withBias) [\(n),\(o)]")
                        }
                    }
                }
            }
        }
    }
}

final class VectorScanTests: XCTestCase {
    func testFirstArgmaxAndLogSumExp() {
        for count in [1, 7, 8, 9, 127, 128, 129, 1000, 50257] {
            var x = randomArray(count, seed: UInt64(count)).map { $0 * 20 }
            if count > 3 { x[count - 2] = 100; x[count / 3] = 100 }  // a tie: the first index wins
            let (i, v) = x.withUnsafeBufferPointer { firstArgmax($0.baseAddress!, count) }
            let best = x.max()!
            XCTAssertEqual(v, best)
            XCTAssertEqual(i, x.firstIndex(of: best)!, "count \(count)")
            let lse = x.withUnsafeBufferPointer { logSumExp($0.baseAddress!, count) }
            let reference = Double(best) + log(x.reduce(0.0) { $0 + exp(Double($1 - best)) })
            XCTAssertEqual(Double(lse), reference, accuracy: 2e-5 * max(1, abs(reference)), "count \(count)")
        }
    }
}
