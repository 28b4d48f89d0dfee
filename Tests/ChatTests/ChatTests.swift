// Text on top of the engine: stop strings across tokens, streaming that never splits a character,
// streamed text equal to the full decode, chat history trimming.

import Compute
import XCTest
@testable import Chat
import Engine
import Model
import Tokenizer
import Training

final class ChatTests: XCTestCase {
    static let corpus = String(repeating: """
        The cat sat on the mat. Le café était très chaud — 日本語のテキスト 🙂🚀 and numbers 12345.
        User asks, assistant answers: "Hello there!" Über naïve coöperation.

        """, count: 10)

    func tokenizer() throws -> BPE {
        var counts = PieceCounts()
        Array(Self.corpus.utf8).withUnsafeBufferPointer { counts.count($0, pattern: .gpt4, threads: 1) }
        return try BPETrainer(vocabularySize: 300, pattern: .gpt4, specialTokens: ChatTokens.all).train(counts)
    }

    func engine(vocab: Int, context: Int = 64, seed: UInt64 = 5) throws -> Engine {
        let model = try GPT(config: GPTConfig(vocabSize: vocab, contextLength: context, layers: 1, heads: 2, width: 16),
                            backend: CPUBackend())
        model.initialize(seed: seed)
        return Engine(model: try InferenceModel(model: model, slots: 1))
    }

    func testStopStringsSplitAcrossPiecesAreCaught() {
        var m = StopMatcher(["STOP", "\n\n"])
        var out = ""
        for piece in ["Hello S", "T", "OP there"] { out += m.push(piece) }
        XCTAssertEqual(out, "Hello ")
        XCTAssertEqual(m.matched, "STOP")
        XCTAssertEqual(m.push("more"), "")
        // A partial match that does not complete is released.
        var n = StopMatcher(["STOP"])
        var text = n.push("a ST")
        XCTAssertEqual(text, "a ")
        text += n.push("ar")
        text += n.finish()
        XCTAssertEqual(text, "a STar")
        XCTAssertNil(n.matched)
        // The earliest of several stops wins; multi-byte text around it survives intact.
        var e = StopMatcher(["🚀", "x"])
        XCTAssertEqual(e.push("日本🙂 x 🚀"), "日本🙂 ")
        XCTAssertEqual(e.matched, "x")
    }

    func testStreamingNeverSplitsACharacterAndEqualsTheFullDecode() throws {
        let bpe = try tokenizer()
        let codec = TextCodec.bpe(bpe)
        let text = "café 日本語 🙂🚀 Über"
        // Feed single bytes' tokens so every multi-byte character is split across tokens.
        let ids = Array(text.utf8).map { bpe.byteTokens[Int($0)] }
        var stream = TextStream(codec: codec)
        var pieces: [String] = []
        for id in ids { pieces.append(try stream.push(id)) }
        pieces.append(stream.finish())
        XCTAssertEqual(pieces.joined(), text)
        for p in pieces { XCTAssertFalse(p.contains("\u{FFFD}"), "a piece split a character: \(p.debugDescription)") }
    }

    func testStreamedTextEqualsCompletionAndDecode() throws {
        let bpe = try tokenizer()
        let codec = TextCodec.bpe(bpe)
        let generator = TextGenerator(engine: try engine(vocab: bpe.vocabularySize), codec: codec)
        var streamed = ""
        let sampling = SamplingParameters(temperature: 1, seed: 3)
        // Forbid the end-of-text token so the run is long.
        var noEnd = sampling
        noEnd.logitBias = [bpe.specialTokens[ChatTokens.endOfText]!: -100]
        let c = try generator.generate(prompt: "The cat", maxTokens: 40, sampling: noEnd, onText: { streamed += $0 })
        XCTAssertEqual(c.finishReason, .length)
        XCTAssertEqual(c.ids.count, 40)
        XCTAssertEqual(streamed, c.text)
        XCTAssertEqual(try codec.decode(c.ids), c.text)
        // A stop string taken from the middle of that text ends the same run early, before it.
        let scalars = Array(c.text.unicodeScalars)
        let stop = String(String.UnicodeScalarView(scalars[(scalars.count / 2)..<(scalars.count / 2 + 2)]))
        var streamed2 = ""
        let d = try generator.generate(prompt: "The cat", maxTokens: 40, sampling: noEnd, stop: [stop], onText: { streamed2 += $0 })
        XCTAssertEqual(d.finishReason, .stop)
        XCTAssertEqual(streamed2, d.text)
        XCTAssertFalse(d.text.contains(stop))
        XCTAssertTrue(c.text.hasPrefix(d.text + stop), "\(d.text.debugDescription) + \(stop.debugDescription)")
    }

    func testChatDropsOldestTurnsKeepsSystemAndRejectsHugeMessages() throws {
        let bpe = try tokenizer()
        let session = try ChatSession(engine: try engine(vocab: bpe.vocabularySize, context: 64), codec: .bpe(bpe),
                                      system: "Be brief.", sampling: .greedy, maxReplyTokens: 8)
        var dropped = 0
        for i in 0..<6 {
            let reply = try session.send("Hello there number \(i), the cat sat.")
            dropped += reply.droppedMessages
            XCTAssertLessThanOrEqual(reply.promptTokens + reply.completionTokens, 64)
        }
        XCTAssertGreaterThan(dropped, 0, "six exchanges cannot fit a 64-token context")
        XCTAssertEqual(session.messages.first?.role, .system)
        XCTAssertEqual(session.messages.last?.role, .assistant)
        XCTAssertThrowsError(try session.send(String(repeating: "The café était très chaud. ", count: 20))) {
            guard case ChatError.messageTooLong = $0 else { return XCTFail("\($0)") }
        }
        try session.set("temperature", "0.5")
        XCTAssertEqual(session.sampling.temperature, 0.5)
        XCTAssertThrowsError(try session.set("top_p", "2"))
        XCTAssertThrowsError(try session.set("bogus", "1"))
    }

    func testCharacterModelsHaveNoChatTemplate() throws {
        let codec = TextCodec.characters(CharacterVocabulary(scalars: Set("abc \n".unicodeScalars)))
        XCTAssertThrowsError(try ChatSession(engine: try engine(vocab: 5), codec: codec)) {
            XCTAssertTrue("\($0)".contains("character vocabulary"))
        }
    }
}
