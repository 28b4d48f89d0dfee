import Compute
import XCTest

/// Host-array helpers around the CPU backend for kernel tests.
final class Host {
    let backend = CPUBackend()
    private var owned: [FloatBuffer] = []
    private var ownedTokens: [TokenBuffer] = []

    deinit {
        for b in owned { backend.deallocate(b) }
        for t in ownedTokens { backend.deallocateTokens(t) }
    }

    func buffer(_ values: [Float]) -> FloatBuffer {
        let b = try! backend.allocate(values.count)
        values.withUnsafeBufferPointer { backend.upload($0, to: b) }
        owned.append(b)
        return b
    }

    func zeros(_ n: Int) -> FloatBuffer { buffer([Float](repeating: 0, count: n)) }

    func tokens(_ values: [Int32]) -> TokenBuffer {
        let t = try! backend.allocateTokens(values.count)
        values.withUnsafeBufferPointer { backend.uploadTokens($0, to: t) }
        ownedTokens.append(t)
        return t
    }

    func read(_ b: FloatBuffer) -> [Float] {
        var out = [Float](repeating: 0, count: b.count)
        out.withUnsafeMutableBufferPointer { backend.download(b, into: $0) }
        return out
    }
}

func randomArray(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var rng = SeededRandom(seed: seed)
    return (0..<n).map { _ in (rng.nextUniform() * 2 - 1) * scale }
}

func dot(_ a: [Float], _ b: [Float]) -> Double {
    var s = 0.0
    for i in 0..<a.count { s += Double(a[i]) * Double(b[i]) }
    return s
}

/// Central finite differences of `objective` with respect to every element of `x`, compared with
/// `analytic`. Reports the worst element.
func checkFiniteDifferences(_ label: String, x: [Float], analytic: [Float], step h: Float = 1e-2,
                            atol: Float = 2e-3, rtol: Float = 2e-2, objective: ([Float]) -> Double,
                            file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(x.count, analytic.count, "\(label): gradient count", file: file, line: line)
    var worst: (Int, Float, Float)? = nil
    for i in 0..<x.count {
        var plus = x, minus = x
        plus[i] += h
        minus[i] -= h
        let numeric = Float((objective(plus) - objective(minus)) / Double(2 * h))
        if abs(numeric - analytic[i]) > atol + rtol * abs(numeric), worst == nil { worst = (i, analytic[i], numeric) }
    }
    if let (i, a, n) = worst {
        XCTFail("\(label): first bad index \(i): analytic \(a), numeric \(n)", file: file, line: line)
    }
}
