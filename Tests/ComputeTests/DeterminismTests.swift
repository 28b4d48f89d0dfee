// Results must not depend on the number of cores.

import XCTest
@testable import Compute

final class DeterminismTests: XCTestCase {
    func run(threads: Int, _ body: () -> [Float]) -> [Float] {
        let saved = Parallel.threadCount
        Parallel.threadCount = threads
        defer { Parallel.threadCount = saved }
        return body()
    }

    func testMatmulIsIndependentOfCoreCount() {
        for (N, C, OC) in [(210, 32, 128), (210, 128, 32), (1000, 64, 96), (37, 20, 11)] {
            let x = randomArray(N * C, seed: 1), w = randomArray(OC * C, seed: 2), b = randomArray(OC, seed: 3)
            let dout = randomArray(N * OC, seed: 4)
            func compute() -> [Float] {
                let h = Host()
                let out = h.zeros(N * OC), dx = h.zeros(N * C), dw = h.zeros(OC * C), db = h.zeros(OC)
                h.backend.matmulForward(out: out, input: h.buffer(x), weight: h.buffer(w), bias: h.buffer(b), N: N, C: C, OC: OC)
                h.backend.matmulBackward(dinput: dx, dweight: dw, dbias: db, dout: h.buffer(dout), input: h.buffer(x),
                                         weight: h.buffer(w), N: N, C: C, OC: OC)
                return h.read(out) + h.read(dx) + h.read(dw) + h.read(db)
            }
            let one = run(threads: 1, compute)
            for t in [2, 3, 5] {
                let other = run(threads: t, compute)
                let firstDiff = zip(one, other).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                XCTAssertNil(firstDiff, "N \(N) C \(C) OC \(OC) threads \(t): first differing element \(firstDiff ?? -1) of out|dx|dw|db (sizes \(N * OC), \(N * C), \(OC * C), \(OC))")
            }
        }
    }
}
