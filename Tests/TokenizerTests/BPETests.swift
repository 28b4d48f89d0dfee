import Foundation
import XCTest
@testable import Tokenizer

final class BPETests: XCTestCase {
    static let corpus = String(repeating: """
        The quick brown fox jumps over the lazy dog. It's the dog's day; they'll see.
        Numbers: 12345, 2024-11-22, 3.14159 and 1,000,000. Émilie a mangé des crêpes à Paris.
        東京は日本の首都です。 Москва — столица России. 🦊🐶👍🏽 done.\n\n
        """, count: 20)

    func trained(_ size: Int = 400, pattern: SplitPattern = .gpt4, specials: [String] = ChatTokens.all) throws -> BPE {
        var counts = PieceCounts()
        Array(Self.corpus.utf8).withUnsafeBufferPointer { counts.count($0, pattern: pattern, threads: 2) }
        return try BPETrainer(vocabularySize: size, pattern: pattern, specialTokens: specials).train(counts)
    }

    func testTrainingReachesTheVocabularyAndRoundTrips() throws {
        for pattern in SplitPattern.allCases {
            let bpe = try trained(pattern: pattern)
            XCTAssertEqual(bpe.vocabularySize, 400)
            XCTAssertEqual(bpe.merges.count, 400 - 256 - ChatTokens.all.count)
            let ids = try bpe.encode(Self.corpus)
            XCTAssertLessThan(ids.count, Self.corpus.utf8.count * 2 / 5, "BPE compresses the text it was trained on")
            XCTAssertEqual(try bpe.decode(ids), Self.corpus)
        }
    }

    func testTrainingIsDeterministicAcrossThreadCounts() throws {
        func train(_ threads: Int) throws -> BPE {
            var counts = PieceCounts()
            Array(Self.corpus.utf8).withUnsafeBufferPointer { counts.count($0, pattern: .gpt4, threads: threads) }
            return try BPETrainer(vocabularySize: 350, pattern: .gpt4).train(counts)
        }
        let a = try train(1), b = try train(3)
        XCTAssertEqual(a.tokenBytes, b.tokenBytes)
    }

    func testEveryByteStringRoundTrips() throws {
        let bpe = try trained()
        var state: UInt64 = 99
        for length in 0..<200 {
            var bytes: [UInt8] = []
            for _ in 0..<length {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                bytes.append(UInt8(truncatingIfNeeded: state >> 56))
            }
            var ids: [Int32] = []
            bytes.withUnsafeBufferPointer { bpe.encodeOrdinary($0, into: &ids) }
            XCTAssertEqual(try bpe.decodeBytes(ids), bytes)
        }
        let scalars = "aé東🦊\u{301}\u{200D}' \n\t1".unicodeScalars.map { $0 }
        for length in 0..<100 {
            var s = String.UnicodeScalarView()
            for _ in 0..<length {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                s.append(scalars[Int(state >> 33) % scalars.count])
            }
            let text = String(s)
            XCTAssertEqual(try bpe.decode(try bpe.encode(text)), text)
        }
    }

    func testLongRunsWithoutSpacesAreNotQuadratic() throws {
        let bpe = try trained()
        let run = String(repeating: "a", count: 200_000)
        let start = Date()
        let ids = try bpe.encode(run)
        XCTAssertLessThan(Date().timeIntervalSince(start), 5, "200 KB of one letter (debug build)")
        XCTAssertEqual(try bpe.decode(ids), run)
        // The heap path and the simple path agree.
        var small: [Int32] = [], large: [Int32] = []
        let piece = Array(String(repeating: "ab", count: 30).utf8)
        piece.withUnsafeBufferPointer { bpe.encodePiece($0, into: &large) }
        piece[0..<40].withUnsafeBufferPointer { bpe.encodePiece($0, into: &small) }
        XCTAssertEqual(try bpe.decodeBytes(large), piece)
        XCTAssertEqual(try bpe.decodeBytes(small), Array(piece[0..<40]))
    }

    func testSpecialTokensOnlyWhenAllowed() throws {
        let bpe = try trained()
        let text = "hi<|end|>there"
        let plain = try bpe.encode(text)
        XCTAssertFalse(plain.contains(bpe.specialTokens["<|end|>"]!))
        let special = try bpe.encode(text, allowedSpecial: ["<|end|>"])
        XCTAssertTrue(special.contains(bpe.specialTokens["<|end|>"]!))
        XCTAssertEqual(try bpe.decode(special), text)
        XCTAssertThrowsError(try bpe.encode(text, disallowOtherSpecial: true)) {
            XCTAssertEqual($0 as? TokenizerError, .disallowedSpecialToken("<|end|>"))
        }
    }

    func testHuggingFaceJSONRoundTrip() throws {
        for pattern in SplitPattern.allCases {
            let bpe = try trained(pattern: pattern)
            let data = try bpe.huggingFaceJSON()
            let loaded = try BPE.loadHuggingFace(data: data)
            XCTAssertEqual(loaded.tokenBytes, bpe.tokenBytes)
            XCTAssertEqual(loaded.specialTokens, bpe.specialTokens)
            XCTAssertEqual(loaded.pattern, pattern)
            XCTAssertEqual(try loaded.encode(Self.corpus), try bpe.encode(Self.corpus))
        }
    }

    func testBadInputGivesClearErrors() throws {
        XCTAssertThrowsError(try BPETrainer(vocabularySize: 260, specialTokens: ChatTokens.all).validate()) {
            XCTAssertTrue("\($0)".contains("too small"))
        }
        XCTAssertThrowsError(try BPETrainer(vocabularySize: 1000, specialTokens: ["<a>", "<a>"]).validate()) {
            XCTAssertEqual($0 as? TokenizerError, .duplicateSpecialToken("<a>"))
        }
        XCTAssertThrowsError(try BPE.loadHuggingFace(path: "/nonexistent/tokenizer.json"))
        XCTAssertThrowsError(try BPE.loadHuggingFace(data: Data("{\"model\": 3}".utf8))) {
            XCTAssertTrue("\($0)".contains("not a valid tokenizer file"))
        }
        XCTAssertThrowsError(try BPE.loadHuggingFace(data: Data("not json".utf8)))
        let bpe = try trained()
        XCTAssertThrowsError(try bpe.decode([Int32(bpe.vocabularySize)]))
    }

    func testStreamingDecoderNeverSplitsACharacter() throws {
        let bpe = try trained()
        let text = "Émilie 東京 🦊👍🏽 done"
        // Encode byte by byte so multi-byte characters span several tokens.
        let ids = Array(text.utf8).map { bpe.byteTokens[Int($0)] }
        var decoder = StreamingDecoder(bpe)
        var out = ""
        for id in ids {
            let piece = try decoder.push(id)
            XCTAssertFalse(piece.contains("\u{FFFD}"), "emitted a broken character")
            out += piece
        }
        out += decoder.finish()
        XCTAssertEqual(out, text)
    }

    func testChatRenderingAndLossMask() throws {
        let bpe = try trained()
        let chat = try ChatFormat(bpe)
        let messages = [ChatMessage(role: .system, content: "Be brief."), ChatMessage(role: .user, content: "Hi <|end|>"),
                        ChatMessage(role: .assistant, content: "Hello!")]
        let (ids, mask) = try chat.render(messages)
        XCTAssertEqual(ids.count, mask.count)
        XCTAssertEqual(ids.first, bpe.specialTokens[ChatTokens.bos])
        let text = try bpe.decode(ids)
        XCTAssertEqual(text, "<|bos|><|system|>Be brief.<|end|><|user|>Hi <|end|><|end|><|assistant|>Hello!<|end|>")
        // User text that looks like a special token stays text.
        XCTAssertEqual(ids.filter { $0 == bpe.specialTokens[ChatTokens.end] }.count, 3)
        let trainedText = try bpe.decode(zip(ids, mask).filter { $0.1 == 1 }.map { $0.0 })
        XCTAssertEqual(trainedText, "Hello!<|end|>")
        let prompt = try chat.render(Array(messages.prefix(2)), addGenerationPrompt: true)
        XCTAssertEqual(prompt.ids.last, bpe.specialTokens[ChatTokens.assistant])
        XCTAssertTrue(prompt.mask.allSatisfy { $0 == 0 })
    }
}

final class BatchTests: XCTestCase {
    func testBatchEncodingEqualsOneByOne() throws {
        var counts = PieceCounts()
        Array(BPETests.corpus.utf8).withUnsafeBufferPointer { counts.count($0, pattern: .gpt4, threads: 1) }
        let bpe = try BPETrainer(vocabularySize: 380, pattern: .gpt4).train(counts)
        let texts = BPETests.corpus.split(separator: "\n").map(String.init) + ["", "x"]
        XCTAssertEqual(try bpe.encodeBatch(texts, threads: 3), try texts.map { try bpe.encode($0) })
    }
}
