import ArgumentParser
import Compute
import Engine
import Evaluation
import Foundation
import Tokenizer
import Training

struct EvalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a model: perplexity, sentiment accuracy/F1, translation BLEU/chrF, preference accuracy.",
        discussion: """
            perplexity: --data is a .txt file (one document) or .jsonl (a "text" field per line, \
            documents joined by the end-of-text token when the tokenizer has one). The text is scored \
            in consecutive windows of the model's context; loss is the mean negative log-likelihood \
            per token in nats, perplexity = e^loss, bits_per_byte = total nats / ln 2 / UTF-8 bytes \
            (comparable across tokenizers). --quantize int8 measures what int8 weights cost. \
            --json: {"loss","perplexity","bits_per_byte","tokens","bytes"}. preference: --data holds \
            pairs as for dpo; accuracy = share of pairs whose chosen reply gets the higher summed \
            log-probability, margin = mean difference: {"accuracy","margin"}; with --reference, the \
            implicit-reward accuracy {"reward_accuracy","reward_margin"}; each accuracy comes with its \
            95% Wilson interval and one-sided binomial p-value against 50% ("accuracy_interval", \
            "accuracy_p", ...), so a gain on a small held-out set can be told from noise. sentiment: --data is a \
            TSV (header line, then text<TAB>label; a label is 0/1 or a label word); each label word is \
            scored as the assistant's reply to the task prompt (no free generation) and the likeliest \
            wins: {"accuracy","accuracy_interval","f1" (macro),"per_class","confusion"}; --output writes one predicted label a \
            line. translation: --data is a source<TAB>target TSV whose header names the languages (en, de, \
            fr, ...); sources are translated greedily in batches and scored with sacrebleu's corpus BLEU \
            and chrF, next to the copy-the-source baseline: {"bleu","chrf","copy_bleu","copy_chrf"}; \
            --output writes one hypothesis a line. Malformed TSV rows are reported with their line \
            numbers and skipped.
            """
    )

    @Option(help: "A run folder (uses best/ then last/) or a checkpoint folder.") var model: String
    @Option(help: "perplexity, sentiment, translation or preference.") var task: String = "perplexity"
    @Option(help: "Evaluation data (see the task).") var data: String
    @Option(help: "Weights: none (fp32) or int8.") var quantize: String = "none"
    @Option(help: "perplexity: KV cache precision, f32 or f16 (measures what an f16 cache costs).") var kvCache: String = "f32"
    @Option(help: "Score at most this many tokens (preference, sentiment, translation: examples) (0: all).") var maxTokens: Int = 0
    @Option(help: "sentiment: the label words, in label-index order (default: those the model was fine-tuned with, else negative,positive).") var labels: String?
    @Option(help: "sentiment, translation: the task's user turn with {text} (default: the template recorded by sft --task in the run's task.json, else the built-in question).")
    var promptTemplate: String?
    @Option(help: "Examples scored or translated together.") var batchSize: Int = 32
    @Flag(help: "sentiment: subtract each label's score on an empty text (removes a prior preference for one label).") var calibrate = false
    @Option(help: "translation: at most this many new tokens (default: 2 × source tokens + 16).") var maxNewTokens: Int?
    @Option(help: "sentiment: predicted labels, one a line; translation: hypotheses, one a line; preference: one JSON line of scores per pair.") var output: String?
    @Flag(help: "Print one JSON object on the last line.") var json = false
    @Option(help: "preference: a reference model (e.g. the SFT checkpoint DPO started from) for the implicit-reward accuracy.")
    var reference: String?

    /// Preference accuracy: how often the model gives the chosen reply a higher summed log-probability.
    func preference() throws {
        let loaded = try Checkpoint.load(model, backend: CPUBackend())
        let (pairs, report) = try loadPreferencePairs(data)
        printJSONLReport(report, path: data, what: "pairs with an empty or identical reply")
        let limited = maxTokens > 0 ? Array(pairs.prefix(maxTokens)) : pairs
        let ref = try reference.map { try Checkpoint.load($0, backend: CPUBackend()).model }
        let score = try PreferenceOptimization.score(model: loaded.model, reference: ref, codec: loaded.codec, pairs: limited)
        if let output {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try writeLines(try score.details.map { String(decoding: try encoder.encode($0), as: UTF8.self) })
            if !json { print("wrote \(score.details.count) per-pair scores to \(output)") }
        }
        // How sure each accuracy is on this many pairs: a 95% interval and the one-sided test against chance (50%).
        let wins = score.details.filter { $0.chosenLogp > $0.rejectedLogp }.count
        let rewardWins = score.rewardAccuracy == nil ? nil : score.details.filter { ($0.reward ?? 0) > 0 }.count
        func interval(_ k: Int) -> [Double] {
            let r = BinomialStatistics.wilsonInterval(successes: k, total: score.pairs)
            return [r.lowerBound, r.upperBound]
        }
        func pValue(_ k: Int) -> Double { BinomialStatistics.pValueAbove(successes: k, total: score.pairs) }
        struct Output: Encodable {
            let accuracy: Double; let margin: Double; let pairs: Int; let skipped: Int; let truncated: Int
            let reward_accuracy: Double?; let reward_margin: Double?
            let accuracy_interval: [Double]?; let accuracy_p: Double?
            let reward_accuracy_interval: [Double]?; let reward_accuracy_p: Double?
        }
        let scored = score.pairs > 0
        let out = Output(accuracy: score.accuracy, margin: score.margin, pairs: score.pairs, skipped: score.skipped,
                         truncated: score.truncated, reward_accuracy: score.rewardAccuracy, reward_margin: score.rewardMargin,
                         accuracy_interval: scored ? interval(wins) : nil, accuracy_p: scored ? pValue(wins) : nil,
                         reward_accuracy_interval: scored ? rewardWins.map(interval) : nil,
                         reward_accuracy_p: scored ? rewardWins.map(pValue) : nil)
        if json {
            print(try jsonLine(out))
        } else {
            func sureness(_ k: Int) -> String {
                guard scored else { return "" }
                return "; \(BinomialStatistics.describeInterval(successes: k, total: score.pairs)), "
                    + "one-sided p = \(BinomialStatistics.formatP(pValue(k))) against 50%"
            }
            print("\(loaded.directory): prefers the chosen reply in \(fmt(100 * score.accuracy))% of \(score.pairs) pairs "
                  + "(mean log-prob margin \(fmt(score.margin, 3)) nats; \(score.truncated) scored on the end of their prompt, "
                  + "\(score.skipped) skipped\(sureness(wins)))")
            if let acc = score.rewardAccuracy, let margin = score.rewardMargin, let rewardWins {
                print("against the reference \(reference ?? ""): chosen log-probability ratio above the rejected one's in "
                      + "\(fmt(100 * acc))% of pairs (mean difference \(fmt(margin, 3)) nats\(sureness(rewardWins)))")
            }
        }
    }

    /// The task record `sft --task` left next to the model, when it is for `task` and no
    /// --prompt-template overrides it; says which prompt the evaluation uses.
    func recordedTask(_ task: String, _ directory: String) throws -> TaskRecord? {
        guard let (record, path) = try TaskRecord.find(near: directory), record.task == task else { return nil }
        if promptTemplate == nil && !json { print("prompt template from \(path): \(String(reflecting: record.template))") }
        return record
    }

    func writeLines(_ lines: [String]) throws {
        guard let output else { return }
        try AtomicFile.write(Data((lines.joined(separator: "\n") + "\n").utf8), to: output)
    }

    func sentiment(_ format: WeightFormat) throws {
        let loaded = try Checkpoint.load(model, backend: CPUBackend())
        let recorded = try recordedTask("sentiment", loaded.directory)
        let task: SentimentTask
        if let labels {
            task = try SentimentTask(commaSeparated: labels, template: promptTemplate ?? recorded?.template ?? SentimentTask.defaultTemplate)
        } else {
            task = try SentimentTask(labels: recorded?.labels ?? ["negative", "positive"],
                                     template: promptTemplate ?? recorded?.template ?? SentimentTask.defaultTemplate)
        }
        var (examples, malformed) = try task.load(data)
        printSkippedRows(malformed, of: data)
        if maxTokens > 0 { examples = Array(examples.prefix(maxTokens)) }
        let bar = CountProgress("scoring", unit: "examples")
        let result = try SentimentEvaluation.run(model: loaded.model, codec: loaded.codec, task: task, examples: examples,
                                                 batchSize: batchSize, weightFormat: format, calibrate: calibrate) { bar.update($0, of: $1) }
        bar.finish()
        try writeLines(result.predictions.map { task.labels[$0] })
        let r = result.report
        struct Output: Encodable {
            let accuracy: Double, f1: Double, per_class: [ClassificationReport.ClassScores], confusion: [[Int]]
            let examples: Int, truncated: Int, skipped_rows: Int, seconds: Double, examples_per_sec: Double
            let calibration: [Double]?; let accuracy_interval: [Double]
        }
        let correct = (0..<r.confusion.count).reduce(0) { $0 + r.confusion[$1][$1] }
        let range = BinomialStatistics.wilsonInterval(successes: correct, total: r.examples)
        let out = Output(accuracy: r.accuracy, f1: r.f1, per_class: r.perClass, confusion: r.confusion, examples: r.examples,
                         truncated: result.truncated, skipped_rows: malformed.count, seconds: result.seconds,
                         examples_per_sec: Double(r.examples) / max(result.seconds, 1e-9), calibration: result.calibration,
                         accuracy_interval: [range.lowerBound, range.upperBound])
        if json { print(try jsonLine(out)); return }
        print("\(loaded.directory): sentiment accuracy \(fmt(100 * r.accuracy))% "
              + "(\(BinomialStatistics.describeInterval(successes: correct, total: r.examples))), macro F1 \(fmt(100 * r.f1)) on \(r.examples) examples "
              + "(\(fmt(result.seconds)) s, \(result.truncated) shortened to fit the context)")
        let width = max(9, task.labels.map(\.count).max()! + 2)
        func pad(_ s: String) -> String { s.padding(toLength: width, withPad: " ", startingAt: 0) }
        print(pad("label") + "precision  recall     F1  support")
        for c in r.perClass {
            print(pad(c.label) + String(format: "%9.1f %7.1f %6.1f %8d", 100 * c.precision, 100 * c.recall, 100 * c.f1, c.support))
        }
        print("confusion (rows: gold, columns: predicted)")
        print(pad("") + task.labels.map { $0.padding(toLength: width, withPad: " ", startingAt: 0) }.joined())
        for (i, row) in r.confusion.enumerated() {
            print(pad(task.labels[i]) + row.map { String($0).padding(toLength: width, withPad: " ", startingAt: 0) }.joined())
        }
    }

    func translation(_ format: WeightFormat) throws {
        let loaded = try Checkpoint.load(model, backend: CPUBackend())
        let recorded = try recordedTask("translation", loaded.directory)
        var (task, pairs, malformed) = try TranslationTask.load(data, template: promptTemplate ?? recorded?.template ?? TranslationTask.defaultTemplate)
        printSkippedRows(malformed, of: data)
        if maxTokens > 0 { pairs = Array(pairs.prefix(maxTokens)) }
        if let maxNewTokens, maxNewTokens < 1 { throw ValidationError("--max-new-tokens must be ≥ 1") }
        let bar = CountProgress("translating", unit: "sentences")
        let result = try TranslationEvaluation.run(model: loaded.model, codec: loaded.codec, task: task, pairs: pairs,
                                                   batchSize: batchSize, maxNewTokens: maxNewTokens, weightFormat: format) { bar.update($0, of: $1) }
        bar.finish()
        try writeLines(result.hypotheses.map { $0.replacingOccurrences(of: "\n", with: " ") })
        struct Output: Encodable {
            let bleu: Double, chrf: Double, copy_bleu: Double, copy_chrf: Double, bleu_precisions: [Double], brevity_penalty: Double
            let examples: Int, truncated: Int, skipped_rows: Int, generated_tokens: Int, seconds: Double, examples_per_sec: Double
        }
        let out = Output(bleu: result.bleu.score, chrf: result.chrf, copy_bleu: result.copyBLEU, copy_chrf: result.copyChrF,
                         bleu_precisions: result.bleu.precisions, brevity_penalty: result.bleu.brevityPenalty, examples: pairs.count,
                         truncated: result.truncated, skipped_rows: malformed.count, generated_tokens: result.generatedTokens,
                         seconds: result.seconds, examples_per_sec: Double(pairs.count) / max(result.seconds, 1e-9))
        if json { print(try jsonLine(out)); return }
        print("\(loaded.directory): \(TranslationTask.languageName(task.source)) → \(TranslationTask.languageName(task.target)), \(pairs.count) sentences in \(fmt(result.seconds)) s")
        print("             BLEU   chrF")
        print(String(format: "model      %6.2f %6.2f", result.bleu.score, result.chrf))
        print(String(format: "copy source%6.2f %6.2f", result.copyBLEU, result.copyChrF))
        let p = result.bleu.precisions.map { String(format: "%.1f", $0) }.joined(separator: "/")
        print("BLEU n-gram precisions \(p), brevity penalty \(String(format: "%.3f", result.bleu.brevityPenalty))")
        for i in 0..<min(3, pairs.count) {
            print("  source: \(pairs[i].source)\n  model:  \(result.hypotheses[i])\n  ref:    \(pairs[i].target)")
        }
    }

    func run() async throws {
        guard let format = WeightFormat(rawValue: quantize) else { throw ValidationError("--quantize must be none or int8") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be ≥ 1") }
        switch task {
        case "preference": return try preference()
        case "sentiment": return try sentiment(format)
        case "translation": return try translation(format)
        case "perplexity": break
        default: throw ValidationError("unknown --task \(task); available: perplexity, sentiment, translation, preference")
        }
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be ≥ 0") }
        let loaded = try Checkpoint.load(model, backend: CPUBackend())
        let reader = try CorpusReader(paths: [data])
        var ids: [Int32] = []
        var document: [UInt8] = []
        try reader.forEachDocumentPart { part, ends, _ in
            document += part
            if ends {
                guard let text = String(validating: document, as: UTF8.self) else {
                    throw ValidationError("\(data) contains invalid UTF-8; clean it (swiftgpt prepare drops invalid bytes)")
                }
                if !ids.isEmpty, let eot = loaded.codec.endOfText { ids.append(eot) }
                ids += try loaded.codec.encode(text)
                document.removeAll(keepingCapacity: true)
            }
        }
        if maxTokens > 0 && ids.count > maxTokens + 1 { ids = Array(ids.prefix(maxTokens + 1)) }
        guard ids.count >= 2 else { throw ValidationError("\(data) has fewer than 2 tokens; nothing to score") }
        let inference = try InferenceModel(model: loaded.model, slots: 1, rowsPerPass: 128, weightFormat: format,
                                           kvCache: try parseKVCache(kvCache))
        let t0 = MonotonicClock.now()
        let (nll, count) = try inference.negativeLogLikelihood(ids)
        let seconds = MonotonicClock.now() - t0
        // UTF-8 bytes of the predicted tokens (document separators excluded).
        var scoredBytes = 0
        for id in ids.dropFirst() where id != loaded.codec.endOfText { scoredBytes += try loaded.codec.bytes(of: id).count }
        let loss = nll / Double(count)
        struct Output: Encodable {
            let loss: Double
            let perplexity: Double
            let bits_per_byte: Double
            let tokens: Int
            let bytes: Int
            let quantize: String
            let kv_cache: String
            let seconds: Double
        }
        let out = Output(loss: loss, perplexity: exp(loss), bits_per_byte: nll / log(2) / Double(max(1, scoredBytes)),
                         tokens: count, bytes: scoredBytes, quantize: quantize, kv_cache: kvCache, seconds: seconds)
        if json {
            print(try jsonLine(out))
        } else {
            print("\(loaded.directory): loss \(fmt(loss, 4)) nats/token, perplexity \(fmt(exp(loss), 3)), "
                  + "\(fmt(out.bits_per_byte, 4)) bits/byte over \(count) tokens (\(quantize == "int8" ? "int8" : "fp32"), \(kvCache) KV cache, \(fmt(seconds)) s)")
        }
    }
}

/// "label done/total unit, rate/s, ETA" on standard error.
final class CountProgress {
    let line = ProgressLine()
    let label: String, unit: String
    let start = MonotonicClock.now()
    init(_ label: String, unit: String) { self.label = label; self.unit = unit }
    func update(_ done: Int, of total: Int) {
        let rate = Double(done) / max(MonotonicClock.now() - start, 1e-9)
        line.show("\(label) \(done)/\(total) \(unit), \(fmt(rate)) \(unit)/s, ETA \(fmt(Double(total - done) / max(rate, 1e-9), 0)) s")
    }
    func finish() { line.finish() }
}

/// The rows of a task TSV that could not be used, with their line numbers.
func printSkippedRows(_ malformed: [String], of path: String) {
    guard !malformed.isEmpty else { return }
    printError("\(malformed.count) rows of \(path) were skipped:")
    for m in malformed.prefix(20) { printError("  \(m)") }
    if malformed.count > 20 { printError("  … and \(malformed.count - 20) more") }
}
