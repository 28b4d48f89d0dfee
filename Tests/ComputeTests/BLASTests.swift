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

    func testSystemBLASIsLoaded() {
        // CI installs OpenBLAS; the portable fallback would make every benchmark meaningless.
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
}
