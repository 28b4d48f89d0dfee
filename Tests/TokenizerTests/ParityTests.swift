// Identical ids to Hugging Face `tokenizers` and tiktoken on the parity texts
// (fixtures from Tools/reference/tokenizer_parity.py).

import Foundation
import TestSupport
import XCTest
@testable import Tokenizer

final class ParityTests: XCTestCase {
    struct Parity: Decodable {
        struct Case: Decodable {
            let name: String
            let text: String
            let hf: [Int32]
            let tiktoken: [Int32]?
        }
        let cases: [Case]
    }

    static let fixtures = String(#filePath.dropLast("ParityTests.swift".count)) + "Fixtures/"

    func check(tokenizer: String, ids: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let bpe = try BPE.loadHuggingFace(path: Self.fixtures + tokenizer)
        let parity = try JSONDecoder().decode(Parity.self, from: Data(contentsOf: URL(fileURLWithPath: Self.fixtures + ids)))
        XCTAssertGreaterThan(parity.cases.count, 10)
        var mismatches = 0
        for c in parity.cases {
            let ours = try bpe.encode(c.text)
            if ours != c.hf {
                mismatches += 1
                if mismatches <= 5 {
                    let at = zip(ours, c.hf).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(ours.count, c.hf.count)
                    XCTFail("\(tokenizer) '\(c.name)': first difference at token \(at): ours \(Array(ours[at..<min(ours.count, at + 5)])), HF \(Array(c.hf[at..<min(c.hf.count, at + 5)]))",
                            file: file, line: line)
                }
            }
            if let tk = c.tiktoken { XCTAssertEqual(tk, c.hf, "fixture: tiktoken and HF agree", file: file, line: line) }
            XCTAssertEqual(try bpe.decode(ours), c.text, "\(c.name): decode(encode(x)) == x", file: file, line: line)
        }
        XCTAssertEqual(mismatches, 0, "\(tokenizer): cases whose ids differ from Hugging Face tokenizers", file: file, line: line)
    }

    func testGPT4PatternMatchesHuggingFaceAndTiktoken() throws {
        try check(tokenizer: "hf_bpe_gpt4.json", ids: "parity_ids.json")
    }

    func testGPT2PatternMatchesHuggingFace() throws {
        try check(tokenizer: "hf_bpe_gpt2.json", ids: "parity_ids_gpt2.json")
    }

    /// The same vocabulary read as a tiktoken rank file gives tiktoken's ids.
    func testTiktokenRanksFromTheSameVocabulary() throws {
        let hf = try BPE.loadHuggingFace(path: Self.fixtures + "hf_bpe_gpt4.json")
        let special = hf.specialTokens
        var lines = ""
        for (id, bytes) in hf.tokenBytes.enumerated() where !special.values.contains(Int32(id)) {
            lines += Data(bytes).base64EncodedString() + " \(id)\n"
        }
        let path = scratchRoot + "/parity.tiktoken"
        try lines.write(toFile: path, atomically: true, encoding: .utf8)
        let tk = try BPE.loadTiktoken(path: path, pattern: .gpt4, specialTokens: special)
        let parity = try JSONDecoder().decode(Parity.self, from: Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "parity_ids.json")))
        for c in parity.cases {
            guard let expected = c.tiktoken else { continue }
            XCTAssertEqual(try tk.encode(c.text), expected, c.name)
        }
    }
}

final class SwiftTrainedInHFTests: XCTestCase {
    struct Check: Decodable {
        let identical_ids: Bool
        let hf_decode_roundtrip: Bool
        let hf_ids: [Int32]
    }

    /// A tokenizer trained by SwiftGPT, encoded by Hugging Face tokenizers (ids recorded by
    /// Tools/reference/check_swift_tokenizer.py), encodes identically here.
    func testOurTrainedTokenizerEncodesAsHuggingFaceDoes() throws {
        let dir = ParityTests.fixtures
        let check = try JSONDecoder().decode(Check.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "swift_trained_in_hf.json")))
        XCTAssertTrue(check.identical_ids)
        XCTAssertTrue(check.hf_decode_roundtrip)
        let bpe = try BPE.loadHuggingFace(path: dir + "swift_trained_gpt4.json")
        let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: dir + "parity_text.txt")), as: UTF8.self)
        XCTAssertEqual(try bpe.encode(text), check.hf_ids)
    }
}
