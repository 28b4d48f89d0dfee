// Task evaluation: BLEU and chrF equal sacrebleu on a committed fixture, accuracy/F1 on a hand-made
// set, the prompt of each task, TSV errors with line numbers, and batched label scoring equal to
// scoring each reply by full recomputation.

import Compute
import Engine
import Foundation
import Model
import Tokenizer
import Training
import XCTest
@testable import Evaluation

final class EvaluationTests: XCTestCase {
    struct Fixture: Decodable {
        struct Corpus: Decodable {
            let hypotheses: [String]
            let references: [String]
            let bleu: Double
            let precisions: [Double]
            let brevity_penalty: Double
            let hyp_len: Int
            let ref_len: Int
            let chrf: Double
        }
        struct Tokenized: Decodable { let input: String; let tokens: [String] }
        let corpora: [Corpus]
        let tokenize_13a: [Tokenized]
    }

    func fixture() throws -> Fixture {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/metrics.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    func testBLEUAndChrFMatchSacrebleu() throws {
        for (i, c) in try fixture().corpora.enumerated() {
            let bleu = BLEU.corpusScore(hypotheses: c.hypotheses, references: c.references)
            XCTAssertEqual(bleu.score, c.bleu, accuracy: 1e-9, "BLEU of corpus \(i)")
            XCTAssertEqual(bleu.hypothesisLength, c.hyp_len, "corpus \(i)")
            XCTAssertEqual(bleu.referenceLength, c.ref_len, "corpus \(i)")
            XCTAssertEqual(bleu.brevityPenalty, c.brevity_penalty, accuracy: 1e-12, "corpus \(i)")
            for (a, b) in zip(bleu.precisions, c.precisions) { XCTAssertEqual(a, b, accuracy: 1e-9, "precisions of corpus \(i)") }
            XCTAssertEqual(CHRF.corpusScore(hypotheses: c.hypotheses, references: c.references), c.chrf, accuracy: 1e-9, "chrF of corpus \(i)")
        }
    }

    func testTokenize13aMatchesSacrebleu() throws {
        for t in try fixture().tokenize_13a {
            XCTAssertEqual(BLEU.tokenize13a(t.input.trimmingPythonTrailingSpace()), t.tokens, t.input)
        }
    }

    func testAccuracyIntervalsAndTestsMatchSciPy() throws {
        struct Case: Decodable { let successes: Int; let total: Int; let chance: Double; let p_greater: Double; let wilson_low: Double; let wilson_high: Double }
        struct Fixture: Decodable { let cases: [Case] }
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/binomial.json")
        let cases = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url)).cases
        XCTAssertGreaterThan(cases.count, 10)
        for c in cases {
            let label = "\(c.successes)/\(c.total) against \(c.chance)"
            let p = BinomialStatistics.pValueAbove(successes: c.successes, total: c.total, chance: c.chance)
            XCTAssertEqual(p, c.p_greater, accuracy: 1e-9 * max(c.p_greater, 1e-300) + 1e-15, label)
            let r = BinomialStatistics.wilsonInterval(successes: c.successes, total: c.total)
            XCTAssertEqual(r.lowerBound, c.wilson_low, accuracy: 1e-12, label)
            XCTAssertEqual(r.upperBound, c.wilson_high, accuracy: 1e-12, label)
        }
        XCTAssertEqual(BinomialStatistics.describeInterval(successes: 424, total: 800), "95% interval 49.5–56.4%")
        XCTAssertEqual(BinomialStatistics.wilsonInterval(successes: 0, total: 0), 0...1)
    }

    func testClassificationReportOnAHandMadeSet() {
        // gold:      n n n p p p p
        // predicted: n p n p p n p
        let r = ClassificationReport(labels: ["negative", "positive"], gold: [0, 0, 0, 1, 1, 1, 1], predicted: [0, 1, 0, 1, 1, 0, 1])
        XCTAssertEqual(r.accuracy, 5.0 / 7.0, accuracy: 1e-12)
        XCTAssertEqual(r.confusion, [[2, 1], [1, 3]])
        XCTAssertEqual(r.perClass[0].precision, 2.0 / 3.0, accuracy: 1e-12)
        XCTAssertEqual(r.perClass[0].recall, 2.0 / 3.0, accuracy: 1e-12)
        XCTAssertEqual(r.perClass[1].precision, 3.0 / 4.0, accuracy: 1e-12)
        XCTAssertEqual(r.perClass[1].recall, 3.0 / 4.0, accuracy: 1e-12)
        XCTAssertEqual(r.f1, (2.0 / 3.0 + 3.0 / 4.0) / 2, accuracy: 1e-12)
        XCTAssertEqual(r.perClass.map(\.support), [3, 4])
        // A class never predicted has precision 0, not NaN.
        let never = ClassificationReport(labels: ["a", "b"], gold: [0, 1], predicted: [0, 0])
        XCTAssertEqual(never.perClass[1].f1, 0)
    }

    func testTaskPrompts() throws {
        let s = try SentimentTask()
        XCTAssertEqual(s.conversation(SentimentExample(text: "a fine film .", label: 1, line: 2)), [
            ChatMessage(role: .user, content: "Is the sentiment of this text negative or positive?\na fine film ."),
            ChatMessage(role: .assistant, content: "positive"),
        ])
        let t = try TranslationTask(source: "en", target: "de")
        XCTAssertEqual(t.conversation(TranslationPair(source: "A dog.", target: "Ein Hund.", line: 2)), [
            ChatMessage(role: .user, content: "Translate from English to German:\nA dog."),
            ChatMessage(role: .assistant, content: "Ein Hund."),
        ])
        XCTAssertEqual(try TranslationTask(source: "xx", target: "fr").prompt("hi")[0].content, "Translate from xx to French:\nhi")
        XCTAssertThrowsError(try SentimentTask(labels: ["same", "same"]))
    }

    func testPromptTemplatesRenderTheirPlaceholdersAndRejectTypos() throws {
        let s = try SentimentTask(labels: ["bad", "good"], template: "{text}\nIs this {labels}?")
        XCTAssertEqual(s.prompt("a fine film .")[0].content, "a fine film .\nIs this bad or good?")
        // A text with braces of its own is inserted as it is, not expanded again.
        XCTAssertEqual(s.prompt("{labels} {text}")[0].content, "{labels} {text}\nIs this bad or good?")
        let t = try TranslationTask(source: "en", target: "fr", template: "{source} → {target}: {text}")
        XCTAssertEqual(t.prompt("Hi.")[0].content, "English → French: Hi.")
        for bad in ["no placeholder", "{txt}", "{text} in {source}"] {
            XCTAssertThrowsError(try SentimentTask(template: bad), bad) { error in
                XCTAssertTrue("\(error)".contains("prompt template"), "\(error)")
            }
        }
        XCTAssertThrowsError(try TranslationTask(source: "en", target: "de", template: "{labels}: {text}"))
    }

    func testTaskRecordIsFoundFromTheRunAndItsCheckpoints() throws {
        let run = NSTemporaryDirectory() + "swiftgpt-task-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: run) }
        try FileManager.default.createDirectory(atPath: run + "/best", withIntermediateDirectories: true)
        XCTAssertNil(try TaskRecord.find(near: run + "/best"))
        let record = TaskRecord(task: "sentiment", labels: ["negative", "positive"], template: "{text}\nIs it {labels}?")
        try record.write(toRun: run)
        XCTAssertEqual(try TaskRecord.find(near: run)?.record, record)
        XCTAssertEqual(try TaskRecord.find(near: run + "/best")?.record, record)
        XCTAssertEqual(try TaskRecord.find(near: run + "/best/")?.path, run + "/task.json")
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: run + "/task.json"))
        XCTAssertThrowsError(try TaskRecord.find(near: run + "/best")) { error in
            XCTAssertTrue("\(error)".contains("task.json"), "\(error)")
        }
    }

    func write(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "swiftgpt-eval-\(UUID().uuidString).tsv"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testTSVRowsWithProblemsAreReportedWithLineNumbers() throws {
        let path = try write("sentence\tlabel\ngood .\t1\nbad .\t0\nno label here\n\t1\nmeh .\tneutral\nawful .\tnegative\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (examples, malformed) = try SentimentTask().load(path)
        XCTAssertEqual(examples.map(\.label), [1, 0, 0])
        XCTAssertEqual(examples.map(\.line), [2, 3, 7])
        XCTAssertEqual(malformed.count, 3)
        XCTAssertTrue(malformed[0].hasSuffix(":4: 1 tab-separated fields; expected 2"), malformed[0])
        XCTAssertTrue(malformed[1].hasSuffix(":5: empty text"), malformed[1])
        XCTAssertTrue(malformed[2].contains(":6: unknown label 'neutral'"), malformed[2])

        let bad = try write("en\tde\n\tEin Hund.\n")
        defer { try? FileManager.default.removeItem(atPath: bad) }
        XCTAssertThrowsError(try TranslationTask.load(bad)) { XCTAssertTrue("\($0)".contains("no usable rows"), "\($0)") }
        XCTAssertThrowsError(try TSVFile(path: "/nonexistent.tsv")) { XCTAssertTrue("\($0)".contains("does not exist"), "\($0)") }
        let invalid = NSTemporaryDirectory() + "swiftgpt-eval-\(UUID().uuidString).tsv"
        try Data([0x65, 0x6E, 0x09, 0x64, 0x65, 0x0A, 0x61, 0xFF, 0x09, 0x62, 0x0A]).write(to: URL(fileURLWithPath: invalid))
        defer { try? FileManager.default.removeItem(atPath: invalid) }
        XCTAssertThrowsError(try TranslationTask.load(invalid)) { XCTAssertTrue("\($0)".contains("no usable rows"), "\($0)") }
        XCTAssertEqual(try TSVFile(path: invalid).malformed, ["\(invalid):2: invalid UTF-8"])
    }

    static let corpus = String(repeating: "a fine film . a bad film . Translate from English to German: Ein Hund. positive negative\n", count: 20)

    func tinyModel(context: Int = 64) throws -> (GPT, TextCodec) {
        var counts = PieceCounts()
        Array(Self.corpus.utf8).withUnsafeBufferPointer { counts.count($0, pattern: .gpt4, threads: 1) }
        let bpe = try BPETrainer(vocabularySize: 300, pattern: .gpt4, specialTokens: ChatTokens.all).train(counts)
        let model = try GPT(config: GPTConfig(vocabSize: bpe.vocabularySize, contextLength: context, layers: 2, heads: 2, width: 16),
                            backend: CPUBackend())
        model.initialize(seed: 9)
        return (model, .bpe(bpe))
    }

    func testBatchedLabelScoresEqualFullRecomputation() throws {
        let (model, codec) = try tinyModel()
        guard case .bpe(let bpe) = codec else { return XCTFail() }
        let format = try ChatFormat(bpe)
        let task = try SentimentTask()
        let examples = ["a fine film .", "a bad film . a bad film .", "film", "a fine bad fine film ."].enumerated().map {
            SentimentExample(text: $0.element, label: $0.offset % 2, line: $0.offset + 2)
        }
        var reported: [[Int]] = []
        let result = try SentimentEvaluation.run(model: model, codec: codec, task: task, examples: examples, batchSize: 3) {
            reported.append([$0, $1])
        }
        XCTAssertEqual(reported, [[3, 4], [4, 4]], "progress counts examples of the whole set")
        XCTAssertEqual(result.scores.count, examples.count)
        for (e, scores) in zip(examples, result.scores) {
            for (k, label) in task.labels.enumerated() {
                // Reference: the whole conversation through the training forward, summing the
                // log-probabilities of the reply tokens (label and <|end|>).
                let (ids, mask) = try format.render(task.conversation(SentimentExample(text: e.text, label: k, line: 0)))
                let T = ids.count - 1
                let inputs = Array(ids.dropLast()), targets = Array(ids.dropFirst())
                try inputs.withUnsafeBufferPointer { tk in
                    try targets.withUnsafeBufferPointer { tg in _ = try model.forward(tokens: tk, targets: tg, batchSize: 1, sequenceLength: T) }
                }
                let losses = model.tokenLosses()
                var expected = 0.0
                for t in 0..<T where mask[t + 1] == 1 { expected -= Double(losses[t]) }
                XCTAssertEqual(scores[k], expected, accuracy: 1e-3, "\(e.text) / \(label)")
            }
            XCTAssertEqual(result.predictions[examples.firstIndex(of: e)!], scores[0] >= scores[1] ? 0 : 1)
        }
        XCTAssertEqual(result.report.examples, 4)
    }

    func testLongTextsAreShortenedToFitTheContext() throws {
        let (model, codec) = try tinyModel(context: 64)
        let long = String(repeating: "a fine film . ", count: 40)
        let result = try SentimentEvaluation.run(model: model, codec: codec, task: try SentimentTask(),
                                                 examples: [SentimentExample(text: long, label: 1, line: 2)])
        XCTAssertEqual(result.truncated, 1)
        XCTAssertEqual(result.predictions.count, 1)
    }

    func testTranslationProducesOneHypothesisPerSourceAndScoresIt() throws {
        let (model, codec) = try tinyModel()
        let pairs = ["A dog.", "A fine film.", "Ein Hund."].enumerated().map { TranslationPair(source: $0.element, target: "Ein Hund.", line: $0.offset + 2) }
        let result = try TranslationEvaluation.run(model: model, codec: codec, task: try TranslationTask(source: "en", target: "de"),
                                                   pairs: pairs, batchSize: 2, maxNewTokens: 6)
        XCTAssertEqual(result.hypotheses.count, 3)
        XCTAssertEqual(result.bleu.score, BLEU.corpusScore(hypotheses: result.hypotheses, references: pairs.map(\.target)).score)
        // The copy baseline: one of three sources equals its reference.
        XCTAssertEqual(result.copyChrF, CHRF.corpusScore(hypotheses: pairs.map(\.source), references: pairs.map(\.target)))
        XCTAssertLessThanOrEqual(result.generatedTokens, 18)
    }

    func testCharacterModelsHaveNoChatTemplate() throws {
        let model = try GPT(config: GPTConfig(vocabSize: 8, contextLength: 16, layers: 1, heads: 1, width: 8), backend: CPUBackend())
        let codec = TextCodec.characters(CharacterVocabulary(scalars: Set("abcdefgh".unicodeScalars)))
        XCTAssertThrowsError(try SentimentEvaluation.run(model: model, codec: codec, task: try SentimentTask(),
                                                         examples: [SentimentExample(text: "abc", label: 0, line: 2)])) {
            XCTAssertTrue("\($0)".contains("no chat template"), "\($0)")
        }
    }

    /// SFT with --dropout: masks are active in the training steps (the losses differ from a run
    /// without), seeded (a second run is identical), recorded in the checkpoint's config, and
    /// impossible values are rejected.
    func testSupervisedFineTuningWithDropout() throws {
        let task = try SentimentTask()
        let conversations = ["a fine film .", "a bad film .", "a fine fine film .", "a bad bad film .", "film ."].enumerated().map {
            task.conversation(SentimentExample(text: $0.element, label: $0.offset % 2, line: $0.offset + 2))
        }
        func fineTune(dropout: Float?) throws -> (losses: [Double], directory: String) {
            let (model, codec) = try tinyModel()
            var config = FineTuneConfig()
            config.iterations = 3
            config.batchSize = 2
            config.lr = 1e-3
            config.valFraction = 0
            config.dropout = dropout
            let directory = NSTemporaryDirectory() + "swiftgpt-sft-dropout-\(UUID().uuidString)"
            _ = try SupervisedFineTuning.run(model: model, codec: codec, conversations: conversations, config: config,
                                             directory: directory, log: { _ in })
            let lines = try String(contentsOfFile: directory + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            let losses = try lines.compactMap { line -> Double? in
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                return object?["train_loss"] as? Double
            }
            return (losses, directory)
        }
        let (plain, d0) = try fineTune(dropout: nil)
        let (dropped, d1) = try fineTune(dropout: 0.25)
        let (again, d2) = try fineTune(dropout: 0.25)
        defer { for d in [d0, d1, d2] { try? FileManager.default.removeItem(atPath: d) } }
        XCTAssertEqual(plain.count, 3)
        XCTAssertEqual(dropped, again)
        XCTAssertNotEqual(plain, dropped)
        let saved = try Checkpoint.load(d1 + "/last", backend: CPUBackend())
        XCTAssertEqual(saved.model.config.dropout, 0.25)

        var bad = FineTuneConfig()
        bad.dropout = 1.5
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("dropout must be in [0, 1)"), "\($0)") }
    }

    /// --keep-checkpoints in sft and dpo: weights at every evaluation as OUT/step-NNNNNN/, the
    /// final one equal to OUT/last, none without the flag.
    func testFineTuningKeepsCheckpointsWhenAsked() throws {
        let task = try SentimentTask()
        let conversations = ["a fine film .", "a bad film .", "a fine fine film .", "a bad bad film ."].enumerated().map {
            task.conversation(SentimentExample(text: $0.element, label: $0.offset % 2, line: $0.offset + 2))
        }
        let pairs = [PreferencePair(prompt: [ChatMessage(role: .user, content: "a film")], chosen: "positive", rejected: "negative"),
                     PreferencePair(prompt: [ChatMessage(role: .user, content: "film")], chosen: "fine", rejected: "bad")]
        let fm = FileManager.default
        func kept(_ directory: String) throws -> [String] {
            try fm.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("step-") }.sorted()
        }
        func assertLastIsFinalSnapshot(_ directory: String, _ snapshot: String) throws {
            let last = try Checkpoint.load(directory + "/last", backend: CPUBackend()).model
            let final = try Checkpoint.load(directory + "/" + snapshot, backend: CPUBackend()).model
            XCTAssertFalse(fm.fileExists(atPath: directory + "/" + snapshot + "/optimizer.safetensors"))
            for e in last.parameters.entries { XCTAssertEqual(final.parameter(e.name), last.parameter(e.name), e.name) }
        }
        var config = FineTuneConfig()
        config.iterations = 4
        config.batchSize = 2
        config.lr = 1e-3
        config.valFraction = 0
        config.evalEvery = 2
        for keep in [false, true] {
            config.keepCheckpoints = keep
            let sft = NSTemporaryDirectory() + "swiftgpt-sft-keep-\(UUID().uuidString)"
            let dpo = NSTemporaryDirectory() + "swiftgpt-dpo-keep-\(UUID().uuidString)"
            defer { try? fm.removeItem(atPath: sft); try? fm.removeItem(atPath: dpo) }
            let (model, codec) = try tinyModel()
            _ = try SupervisedFineTuning.run(model: model, codec: codec, conversations: conversations, config: config,
                                             directory: sft, log: { _ in })
            _ = try PreferenceOptimization.run(model: model, codec: codec, pairs: pairs, config: config, directory: dpo, log: { _ in })
            XCTAssertEqual(try kept(sft), keep ? ["step-000002", "step-000004"] : [])
            XCTAssertEqual(try kept(dpo), keep ? ["step-000002", "step-000004"] : [])
            if keep {
                try assertLastIsFinalSnapshot(sft, "step-000004")
                try assertLastIsFinalSnapshot(dpo, "step-000004")
                let earlier = try Checkpoint.load(sft + "/step-000002", backend: CPUBackend()).model
                let final = try Checkpoint.load(sft + "/step-000004", backend: CPUBackend()).model
                XCTAssertNotEqual(earlier.parameter("wte.weight"), final.parameter("wte.weight"))
            }
        }
    }

    /// `dpo --val-data`: the held-out pairs come from their own file (all of --data is trained on),
    /// and the reported held-out reward accuracy is theirs, as `eval --task preference` scores them.
    func testDPOEvaluatesOnGivenHeldOutPairs() throws {
        let pairs = [PreferencePair(prompt: [ChatMessage(role: .user, content: "a film")], chosen: "positive", rejected: "negative"),
                     PreferencePair(prompt: [ChatMessage(role: .user, content: "film")], chosen: "fine", rejected: "bad"),
                     PreferencePair(prompt: [ChatMessage(role: .user, content: "a fine film")], chosen: "fine", rejected: "bad")]
        let held = [PreferencePair(prompt: [ChatMessage(role: .user, content: "the film")], chosen: "good", rejected: "bad"),
                    PreferencePair(prompt: [ChatMessage(role: .user, content: "films")], chosen: "fine", rejected: "poor")]
        var config = FineTuneConfig()
        config.iterations = 3
        config.batchSize = 2
        config.lr = 1e-3
        config.valFraction = 0.5  // ignored: the held-out pairs are given
        let dir = NSTemporaryDirectory() + "swiftgpt-dpo-val-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (model, codec) = try tinyModel()
        let (reference, _) = try tinyModel()
        let summary = try PreferenceOptimization.run(model: model, codec: codec, pairs: pairs, validation: held, config: config,
                                                     directory: dir, log: { _ in })
        XCTAssertEqual(summary.examples, 3)
        XCTAssertEqual(summary.validationExamples, 2)
        let score = try PreferenceOptimization.score(model: model, reference: reference, codec: codec, pairs: held)
        XCTAssertEqual(try XCTUnwrap(summary.rewardAccuracy), try XCTUnwrap(score.rewardAccuracy), accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(summary.rewardMargin), 0.1 * (try XCTUnwrap(score.rewardMargin)), accuracy: 1e-3)

        // A reference of another architecture is refused before any training, with the reason.
        let other = try GPT(config: GPTConfig(vocabSize: model.config.vocabSize, contextLength: 32, layers: 1, heads: 2, width: 16),
                            backend: CPUBackend())
        let refused = NSTemporaryDirectory() + "swiftgpt-dpo-ref-\(UUID().uuidString)"
        XCTAssertThrowsError(try PreferenceOptimization.run(model: model, reference: other, codec: codec, pairs: pairs, config: config,
                                                            directory: refused, log: { _ in })) {
            XCTAssertTrue("\($0)".contains("configuration differs from the policy's"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: refused + "/last"))
    }

    /// Preference pairs longer than the context keep the end of their prompt and are scored on it
    /// (the log-probabilities equal a direct forward of that suffix); replies too long for the
    /// context keep their start; a reference model gives the implicit-reward accuracy.
    func testLongPreferencePairsKeepTheEndOfTheirPrompt() throws {
        let (model, codec) = try tinyModel(context: 32)
        guard case .bpe(let bpe) = codec else { return XCTFail() }
        let format = try ChatFormat(bpe)
        let longPrompt = [ChatMessage(role: .user, content: String(repeating: "a fine film . ", count: 12))]
        let pairs = [
            PreferencePair(prompt: [ChatMessage(role: .user, content: "a film")], chosen: "positive", rejected: "negative"),
            PreferencePair(prompt: longPrompt, chosen: "a fine film", rejected: "a bad film"),
            PreferencePair(prompt: [ChatMessage(role: .user, content: "film")], chosen: String(repeating: "a fine film . ", count: 10),
                           rejected: "bad"),
        ]
        let score = try PreferenceOptimization.score(model: model, codec: codec, pairs: pairs)
        XCTAssertEqual(score.pairs, 3)
        XCTAssertEqual(score.truncated, 2)
        XCTAssertEqual(score.skipped, 0)
        let strict = try PreferenceOptimization.score(model: model, codec: codec, pairs: pairs, truncatePrompts: false)
        XCTAssertEqual(strict.pairs, 1)
        XCTAssertEqual(strict.skipped, 2)

        // The long pair alone, against a direct forward of each row without the prompt tokens that
        // do not fit beside the longer reply (33 tokens: the context plus the last target).
        let prompt = try format.render(longPrompt, addGenerationPrompt: true).ids
        let rows = try ["a fine film", "a bad film"].map { try format.render(longPrompt + [ChatMessage(role: .assistant, content: $0)]).ids }
        let cut = prompt.count - (33 - (rows.map(\.count).max()! - prompt.count))
        XCTAssertGreaterThan(cut, 0)
        func replyLogProbability(_ row: [Int32]) throws -> Double {
            let kept = Array(row[cut...])
            let tokens = Array(kept.dropLast()), targets = Array(kept.dropFirst())
            try tokens.withUnsafeBufferPointer { tk in
                try targets.withUnsafeBufferPointer { tg in
                    _ = try model.forward(tokens: tk, targets: tg, batchSize: 1, sequenceLength: tokens.count)
                }
            }
            let losses = model.tokenLosses()
            return -(prompt.count - cut - 1..<tokens.count).reduce(0) { $0 + Double(losses[$1]) }
        }
        let alone = try PreferenceOptimization.score(model: model, codec: codec, pairs: [pairs[1]])
        XCTAssertEqual(alone.truncated, 1)
        let expected = try replyLogProbability(rows[0]) - replyLogProbability(rows[1])
        XCTAssertEqual(alone.margin, expected, accuracy: 1e-4 * max(1, abs(expected)))
        // Per-pair scores (eval --output): the same numbers, one pair each, with reply token counts.
        XCTAssertEqual(alone.details.count, 1)
        let detail = try XCTUnwrap(alone.details.first)
        XCTAssertEqual(detail.index, 0)
        XCTAssertTrue(detail.truncated)
        XCTAssertEqual(detail.chosenLogp - detail.rejectedLogp, expected, accuracy: 1e-4 * max(1, abs(expected)))
        XCTAssertEqual(detail.chosenTokens, rows[0].count - prompt.count)
        XCTAssertNil(detail.reward)
        let all = try PreferenceOptimization.score(model: model, reference: model, codec: codec, pairs: pairs)
        XCTAssertEqual(all.details.map(\.index), Array(pairs.indices))
        XCTAssertEqual(all.details.map(\.reward), [Double?](repeating: 0, count: pairs.count))
        XCTAssertEqual(all.details.filter { $0.chosenLogp > $0.rejectedLogp }.count, Int((all.accuracy * Double(pairs.count)).rounded()))
        let line = String(decoding: try JSONEncoder().encode(detail), as: UTF8.self)
        XCTAssertTrue(line.contains("\"chosen_logp\"") && !line.contains("reward"), line)
        XCTAssertEqual(try JSONDecoder().decode(PairScore.self, from: Data(line.utf8)), detail)

        // Implicit reward against a reference: the model itself gives zero rewards.
        let same = try PreferenceOptimization.score(model: model, reference: model, codec: codec, pairs: pairs)
        XCTAssertEqual(same.rewardAccuracy, 0)
        XCTAssertEqual(same.rewardMargin ?? .nan, 0, accuracy: 1e-12)
        let other = try GPT(config: GPTConfig(vocabSize: model.config.vocabSize, contextLength: 32, layers: 1, heads: 2, width: 16),
                            backend: CPUBackend())
        XCTAssertThrowsError(try PreferenceOptimization.score(model: model, reference: other, codec: codec, pairs: pairs)) {
            XCTAssertTrue("\($0)".contains("configuration differs"), "\($0)")
        }
    }
}
