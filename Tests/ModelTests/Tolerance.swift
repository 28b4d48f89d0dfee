import XCTest

/// Asserts |a - e| <= atol + rtol·|e| element-wise; on failure reports the max difference and the
/// first bad index (llm.c test_gpt2.c style). Shapes (counts) are checked first.
func assertClose(_ actual: [Float], _ expected: [Float], atol: Float, rtol: Float, _ label: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    guard actual.count == expected.count else {
        XCTFail("\(label): count \(actual.count) != expected \(expected.count)", file: file, line: line)
        return
    }
    var maxDiff: Float = 0
    var firstBad: Int? = nil
    for i in 0..<actual.count {
        let d = abs(actual[i] - expected[i])
        if !(d <= atol + rtol * abs(expected[i])) && firstBad == nil { firstBad = i }
        if d > maxDiff || d.isNaN { maxDiff = d }
    }
    if let i = firstBad {
        XCTFail("\(label): max |diff| \(maxDiff); first bad index \(i): got \(actual[i]), expected \(expected[i]) (atol \(atol), rtol \(rtol))",
                file: file, line: line)
    }
}
