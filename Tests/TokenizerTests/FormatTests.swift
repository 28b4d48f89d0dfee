// tiktoken rank files and GPT-2 encoder.json + vocab.bpe, written from a trained tokenizer and read back.

import Foundation
import TestSupport
import XCTest
@testable import Tokenizer

final class FormatTests: XCTestCase {
    func temporaryPath(_ name: String) -> String {
        let dir = scratchRoot
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir + "/" + name
    }

    func trained(_ pattern: SplitPattern) throws -> BPE {
        var counts = PieceCounts()
        Array(BPETests.corpus.utf8).withUnsafeBufferPointer { counts.count($0, pattern: pattern, threads: 1) }
        return try BPETrainer(vocabularySize: 420, pattern: pattern, specialTokens: ["<|endoftext|>"]).train(counts)
    }

    func testTiktokenRankFileReproducesTheMerges() throws {
        let bpe = try trained(.gpt4)
        let eot = bpe.specialTokens["<|endoftext|>"]!
        var lines = ""
        for (id, bytes) in bpe.tokenBytes.enumerated() where Int32(id) != eot {
            lines += Data(bytes).base64EncodedString() + " \(id)\n"
        }
        let path = temporaryPath("test.tiktoken")
        try lines.write(toFile: path, atomically: true, encoding: .utf8)
        let loaded = try BPE.loadTiktoken(path: path, pattern: .gpt4, specialTokens: ["<|endoftext|>": eot])
        XCTAssertEqual(loaded.vocabularySize, bpe.vocabularySize)
        let text = BPETests.corpus + " unseen wordsmithery 1234567 ünïcödé"
        XCTAssertEqual(try loaded.decode(try loaded.encode(text)), text)
        XCTAssertEqual(try loaded.encode(text), try bpe.encode(text))
    }

    func testGPT2EncoderAndMergesFiles() throws {
        let bpe = try trained(.gpt2)
        var encoder: [String: Int] = [:]
        for (id, bytes) in bpe.tokenBytes.enumerated() { encoder[ByteLevelAlphabet.encode(bytes)] = id }
        let encoderPath = temporaryPath("encoder.json"), mergesPath = temporaryPath("vocab.bpe")
        try JSONEncoder().encode(encoder).write(to: URL(fileURLWithPath: encoderPath))
        var merges = "#version: 0.2\n"
        for m in bpe.merges {
            merges += ByteLevelAlphabet.encode(bpe.tokenBytes[Int(m.left)]) + " " + ByteLevelAlphabet.encode(bpe.tokenBytes[Int(m.right)]) + "\n"
        }
        try merges.write(toFile: mergesPath, atomically: true, encoding: .utf8)
        let loaded = try BPE.loadGPT2(encoderPath: encoderPath, mergesPath: mergesPath)
        XCTAssertEqual(loaded.pattern, .gpt2)
        XCTAssertEqual(loaded.specialTokens["<|endoftext|>"], bpe.specialTokens["<|endoftext|>"])
        XCTAssertEqual(try loaded.encode(BPETests.corpus), try bpe.encode(BPETests.corpus))
    }

    func testMalformedFilesNameTheProblem() throws {
        let path = temporaryPath("bad.tiktoken")
        try "not-base64!! x\n".write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try BPE.loadTiktoken(path: path)) { XCTAssertTrue("\($0)".contains("line 1")) }
        let json = temporaryPath("bad.json")
        try #"{"model": {"type": "WordPiece", "vocab": {"a": 0}}}"#.write(toFile: json, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try BPE.loadHuggingFace(path: json)) { XCTAssertTrue("\($0)".contains("WordPiece")) }
        XCTAssertThrowsError(try BPE.loadGPT2(encoderPath: "/nonexistent/encoder.json", mergesPath: "/nonexistent/vocab.bpe"))
    }
}
