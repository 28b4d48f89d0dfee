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
}
