// The pre-tokenizer against Python's `regex` package on an adversarial corpus
// (fixture from Tools/reference/pretokenize_fixture.py).

import Foundation
import XCTest
@testable import Tokenizer

final class PreTokenizerTests: XCTestCase {
    struct Fixture: Decodable {
        struct Case: Decodable {
            let name: String
            let text: String
            let gpt2: [String]
            let gpt4: [String]
        }
        let cases: [Case]
    }

    static func hexBytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var it = hex.utf8.makeIterator()
        func nibble(_ c: UInt8) -> UInt8 { c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x61 + 10 }
        while let hi = it.next(), let lo = it.next() { out.append(nibble(hi) << 4 | nibble(lo)) }
        return out
    }

    func testSplitsMatchPythonRegexOnAdversarialCorpus() throws {
        let path = String(#filePath.dropLast("PreTokenizerTests.swift".count)) + "Fixtures/pretokenize.json"
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertGreaterThan(fixture.cases.count, 100)
        var failures = 0
        for pattern in SplitPattern.allCases {
            let splitter = PreTokenizer(pattern: pattern)
            for c in fixture.cases {
                let text = Self.hexBytes(c.text)
                let expected = (pattern == .gpt2 ? c.gpt2 : c.gpt4).map(Self.hexBytes)
                let got = splitter.split(text)
                let fast: [[UInt8]] = text.withUnsafeBufferPointer { buffer in
                    var pieces: [[UInt8]] = []
                    splitter.forEachPiece(buffer) { pieces.append(Array(buffer[$0])) }
                    return pieces
                }
                if got != expected || fast != expected {
                    failures += 1
                    if failures <= 10 {
                        XCTFail("\(pattern) '\(c.name)': fast \(fast.map { String(decoding: $0, as: UTF8.self).debugDescription }) got \(got.map { String(decoding: $0, as: UTF8.self).debugDescription }) expected \(expected.map { String(decoding: $0, as: UTF8.self).debugDescription })")
                    }
                }
            }
        }
        XCTAssertEqual(failures, 0, "cases that differ from Python's regex")
    }

    func testPiecesTileEveryByteString() {
        var state: UInt64 = 12345
        for length in 0..<300 {
            var bytes: [UInt8] = []
            for _ in 0..<(length % 64) {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                bytes.append(UInt8(truncatingIfNeeded: state >> 56))
            }
            for pattern in SplitPattern.allCases {
                let splitter = PreTokenizer(pattern: pattern)
                let reference = splitter.split(bytes)
                XCTAssertEqual(reference.flatMap { $0 }, bytes)
                var fast: [[UInt8]] = []
                bytes.withUnsafeBufferPointer { buffer in splitter.forEachPiece(buffer) { fast.append(Array(buffer[$0])) } }
                XCTAssertEqual(fast, reference, "byte scanner and unit scanner agree")
            }
        }
    }

    func testKnownSplits() {
        XCTAssertEqual(PreTokenizer(pattern: .gpt2).split("Hello world's  12345 !!"),
                       ["Hello", " world", "'s", " ", " 12345", " !!"])
        XCTAssertEqual(PreTokenizer(pattern: .gpt4).split("Hello WORLD'S 12345\n\n x"),
                       ["Hello", " WORLD", "'S", " ", "123", "45", "\n\n", " x"])
    }
}
