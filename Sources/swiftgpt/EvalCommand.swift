import ArgumentParser
import Compute
import Engine
import Foundation
import Tokenizer
import Training

struct EvalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a model: perplexity of a text (fp32 or int8 weights).",
        discussion: """
            perplexity: --data is a .txt file (one document) or .jsonl (a "text" field per line, \
            documents joined by the end-of-text token when the tokenizer has one). The text is scored \
            in consecutive windows of the model's context; loss is the mean negative log-likelihood \
            per token in nats, perplexity = e^loss, bits_per_byte = total nats / ln 2 / UTF-8 bytes \
            (comparable across tokenizers). --quantize int8 measures what int8 weights cost. \
            --json: {"loss","perplexity","bits_per_byte","tokens","bytes"}. preference: --data holds \
            pairs as for dpo; accuracy = share of pairs whose chosen reply gets the higher summed \
            log-probability, margin = mean difference: {"accuracy","margin"}. The sentiment and \
            translation tasks are not implemented yet.
            """
    )

    @Option(help: "A run folder (uses best/ then last/) or a checkpoint folder.") var model: String
    @Option(help: "perplexity or preference (sentiment and translation are not implemented yet).") var task: String = "perplexity"
    @Option(help: "Evaluation data (see the task).") var data: String
    @Option(help: "Weights: none (fp32) or int8.") var quantize: String = "none"
    @Option(help: "Score at most this many tokens (preference: pairs) (0: all).") var maxTokens: Int = 0
    @Flag(help: "Print one JSON object on the last line.") var json = false

    /// Preference accuracy: how often the model gives the chosen reply a higher summed log-probability.
    func preference() throws {
        let loaded = try Checkpoint.load(model, backend: CPUBackend())
        let (pairs, report) = try loadPreferencePairs(data)
        printJSONLReport(report, path: data, what: "pairs with an empty or identical reply")
        let limited = maxTokens > 0 ? Array(pairs.prefix(maxTokens)) : pairs
        let score = try PreferenceOptimization.score(model: loaded.model, codec: loaded.codec, pairs: limited)
        struct Output: Encodable { let accuracy: Double; let margin: Double; let pairs: Int; let skipped: Int }
        let out = Output(accuracy: score.accuracy, margin: score.margin, pairs: score.pairs, skipped: score.skipped)
        if json {
            print(try jsonLine(out))
        } else {
            print("\(loaded.directory): prefers the chosen reply in \(fmt(100 * score.accuracy))% of \(score.pairs) pairs "
                  + "(mean log-prob margin \(fmt(score.margin, 3)) nats; \(score.skipped) longer than the context skipped)")
        }
    }

    func run() async throws {
        if task == "preference" { return try preference() }
        guard task == "perplexity" else {
            throw ValidationError("--task \(task) is not implemented yet; available: perplexity, preference")
        }
        guard let format = WeightFormat(rawValue: quantize) else { throw ValidationError("--quantize must be none or int8") }
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
        let inference = try InferenceModel(model: loaded.model, slots: 1, rowsPerPass: 128, weightFormat: format)
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
            let seconds: Double
        }
        let out = Output(loss: loss, perplexity: exp(loss), bits_per_byte: nll / log(2) / Double(max(1, scoredBytes)),
                         tokens: count, bytes: scoredBytes, quantize: quantize, seconds: seconds)
        if json {
            print(try jsonLine(out))
        } else {
            print("\(loaded.directory): loss \(fmt(loss, 4)) nats/token, perplexity \(fmt(exp(loss), 3)), "
                  + "\(fmt(out.bits_per_byte, 4)) bits/byte over \(count) tokens (\(quantize == "int8" ? "int8" : "fp32"), \(fmt(seconds)) s)")
        }
    }
}
