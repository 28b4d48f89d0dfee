import Foundation
import Tokenizer
import TestSupport
import XCTest
@testable import Training

final class DataPreparationTests: XCTestCase {
    func temporaryDirectory() -> String {
        let dir = scratchRoot + "/training-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func testShardsRoundTripAndRejectTruncation() throws {
        let dir = temporaryDirectory()
        let ids: [Int32] = [0, 1, 65535, 7, 42]
        try TokenShard.write(ids, vocabularySize: 65536, to: dir + "/a.bin")
        XCTAssertEqual(try TokenShard.read(dir + "/a.bin"), ids)
        let wide: [Int32] = [0, 70000, 123]
        try TokenShard.write(wide, vocabularySize: 100_000, to: dir + "/b.bin")
        XCTAssertEqual(try TokenShard.read(dir + "/b.bin"), wide)
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/b.bin"))
        try data.prefix(data.count - 2).write(to: URL(fileURLWithPath: dir + "/c.bin"))
        XCTAssertThrowsError(try TokenShard.read(dir + "/c.bin")) { XCTAssertTrue("\($0)".contains("truncated")) }
        try Data("not a shard at all, just text".utf8).write(to: URL(fileURLWithPath: dir + "/d.bin"))
        XCTAssertThrowsError(try TokenShard.read(dir + "/d.bin")) { XCTAssertTrue("\($0)".contains("header")) }
    }

    func testCharacterPreparationCleansSplitsAndDeduplicates() throws {
        let dir = temporaryDirectory()
        let a = dir + "/a.txt", b = dir + "/b.jsonl"
        var bytes = Array("hello\r\nworld\u{07}!\r".utf8)
        bytes += [0xFF, 0xFE]  // invalid UTF-8
        bytes += Array("ok\n".utf8)
        try Data(bytes).write(to: URL(fileURLWithPath: a))
        try "{\"text\": \"abc\"}\n{\"text\": \"abc\"}\n{\"text\": \"xyz\"}\n".write(toFile: b, atomically: true, encoding: .utf8)
        var job = DataPreparation(inputs: [a, b], outputDirectory: dir + "/out", tokenizerPath: nil)
        job.valFraction = 0.25
        job.deduplicate = true
        let meta = try job.run()
        XCTAssertEqual(meta.invalidBytesDropped, 2)
        XCTAssertEqual(meta.controlCharactersRemoved, 1)
        XCTAssertEqual(meta.duplicateDocumentsSkipped, 1)
        XCTAssertEqual(meta.documents, 3)
        let codec = try TextCodec.load(path: dir + "/out/tokenizer.json")
        let train = try TokenShard.read(dir + "/out/train.bin"), val = try TokenShard.read(dir + "/out/val.bin")
        XCTAssertEqual(try codec.decode(train + val), "hello\nworld!\nok\nabcxyz")
        XCTAssertEqual(val.count, Int((Double(train.count + val.count) * 0.25).rounded()))
        XCTAssertEqual(meta.valFirstDocument, 2, "the 6 validation tokens are the documents abc and xyz")
        XCTAssertEqual(try DataPreparation.loadMeta(dir + "/out"), meta)
    }

    func testBPEPreparationSeparatesDocuments() throws {
        let dir = temporaryDirectory()
        var counts = PieceCounts()
        Array(String(repeating: "the cat sat on the mat. ", count: 50).utf8).withUnsafeBufferPointer { counts.count($0, pattern: .gpt4, threads: 1) }
        let bpe = try BPETrainer(vocabularySize: 300, pattern: .gpt4, specialTokens: ChatTokens.all).train(counts)
        try bpe.saveHuggingFace(to: dir + "/tok.json")
        try "{\"text\": \"the cat\"}\n{\"text\": \"sat on the mat\"}\n".write(toFile: dir + "/d.jsonl", atomically: true, encoding: .utf8)
        var job = DataPreparation(inputs: [dir + "/d.jsonl"], outputDirectory: dir + "/out", tokenizerPath: dir + "/tok.json")
        job.valFraction = 0
        XCTAssertNil(try job.run().valFirstDocument, "no validation split")
        let ids = try TokenShard.read(dir + "/out/train.bin")
        XCTAssertEqual(try bpe.decode(ids), "the cat<|endoftext|>sat on the mat")
        // A split inside the second document (it starts after the first's 2 tokens and <|endoftext|>).
        job.valFraction = 0.3
        XCTAssertEqual(try job.run().valFirstDocument, 2)
    }

    func testMissingAndEmptyInputsAreClearErrors() throws {
        let dir = temporaryDirectory()
        XCTAssertThrowsError(try DataPreparation(inputs: [dir + "/nope.txt"], outputDirectory: dir + "/o", tokenizerPath: nil).run()) {
            XCTAssertTrue("\($0)".contains("nope.txt"))
        }
        try "".write(toFile: dir + "/empty.txt", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try DataPreparation(inputs: [dir + "/empty.txt"], outputDirectory: dir + "/o", tokenizerPath: nil).run()) {
            XCTAssertTrue("\($0)".contains("empty"))
        }
        XCTAssertThrowsError(try DataPreparation.loadMeta(dir)) { XCTAssertTrue("\($0)".contains("prepare")) }
    }
}
