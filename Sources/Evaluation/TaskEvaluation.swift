// Batched task evaluation. Sentiment scores every label as the assistant's whole reply (label
// tokens and <|end|>) after the prompt: each prompt is prefilled once into a KV-cache slot, copied
// to one slot per label, and the label tokens of all examples × labels are scored in one ragged
// pass. Translation decodes greedily, a batch of sentences at a time, with the engine.

import Compute
import Engine
import Foundation
import Model
import Tokenizer
import Training

func chatFormat(_ codec: TextCodec) throws -> ChatFormat {
    guard case .bpe(let bpe) = codec else { throw EvaluationError.noChatTemplate("it is a character vocabulary") }
    do { return try ChatFormat(bpe) } catch { throw EvaluationError.noChatTemplate("\(error)") }
}

/// Renders `messages(text)` with the generation prompt, dropping words from the end of `text` until
/// the prompt plus `reserve` tokens fits in `limit`. Returns nil when even an empty text does not fit.
func fittedPrompt(_ format: ChatFormat, _ text: String, limit: Int, reserve: Int,
                  _ messages: (String) -> [ChatMessage]) throws -> (ids: [Int32], truncated: Bool)? {
    let full = try format.render(messages(text), addGenerationPrompt: true).ids
    if full.count + reserve <= limit { return (full, false) }
    let words = text.split(separator: " ", omittingEmptySubsequences: false)
    // Binary search for the longest prefix of words that fits.
    var lo = 0, hi = words.count - 1, best: [Int32]? = nil
    while lo <= hi {
        let mid = (lo + hi) / 2
        let ids = try format.render(messages(words[0..<mid].joined(separator: " ")), addGenerationPrompt: true).ids
        if ids.count + reserve <= limit { best = ids; lo = mid + 1 } else { hi = mid - 1 }
    }
    return best.map { ($0, true) }
}

public struct SentimentResult: Sendable {
    public var report: ClassificationReport
    public var predictions: [Int]
    /// Summed log-probability of each label's reply, per example.
    public var scores: [[Double]]
    /// Texts shortened (from the end) to fit the context.
    public var truncated: Int
    public var seconds: Double
    /// With calibration: the label scores of the content-free text that were subtracted.
    public var calibration: [Double]?
}

public enum SentimentEvaluation {
    /// Classifies every example by the label whose reply the model finds most likely. With
    /// `calibrate`, each label's score on a content-free input (an empty text) is subtracted first,
    /// which removes the model's prior preference for one label word (Zhao et al., 2021,
    /// "Calibrate before use").
    public static func run(model: GPT, codec: TextCodec, task: SentimentTask, examples: [SentimentExample],
                           batchSize: Int = 32, weightFormat: WeightFormat = .float32, calibrate: Bool = false,
                           progress: (Int, Int) -> Void = { _, _ in }) throws -> SentimentResult {
        let format = try chatFormat(codec)
        let replies = try task.labels.map { try format.render([ChatMessage(role: .assistant, content: $0)]).ids.dropFirst(2) }  // label tokens + <|end|>
        let K = replies.count, longest = replies.map(\.count).max()!
        let capacity = model.config.contextLength
        let batch = max(1, min(batchSize, examples.count))
        // Scoring prefills whole texts and never decodes, so no packed decode copy.
        let inference = try InferenceModel(model: model, slots: batch * K, capacity: capacity, rowsPerPass: 256, weightFormat: weightFormat,
                                           packedDecode: false)
        let start = MonotonicClock.now()
        var scores: [[Double]] = [], predictions: [Int] = [], truncated = 0
        let inputs = (calibrate ? [SentimentExample(text: "", label: 0, line: 0)] : []) + examples
        var i = 0
        while i < inputs.count {
            let chunk = inputs[i..<min(inputs.count, i + batch)]
            var prompts: [[Int32]] = []
            for e in chunk {
                guard let fitted = try fittedPrompt(format, e.text, limit: capacity, reserve: longest, task.prompt) else {
                    throw EvaluationError.invalidSetting("the model's context (\(capacity) tokens) is too short for the sentiment prompt")
                }
                if fitted.truncated { truncated += 1 }
                prompts.append(fitted.ids)
            }
            // Prefill all but the last prompt token, then fan each prompt out to one slot per label.
            _ = try inference.forward(prompts.enumerated().map { SequenceInput(slot: $0.offset * K, tokens: Array($0.element.dropLast()), start: 0) })
            for (e, p) in prompts.enumerated() {
                for k in 1..<K { inference.copySlot(from: e * K, to: e * K + k, length: p.count - 1) }
            }
            // (Not `inputs`: that name is the whole list, whose count the progress reports.)
            var labelInputs: [SequenceInput] = [], targets: [[Int32]] = []
            for (e, p) in prompts.enumerated() {
                for (k, reply) in replies.enumerated() {
                    labelInputs.append(SequenceInput(slot: e * K + k, tokens: [p.last!] + reply.dropLast(), start: p.count - 1))
                    targets.append(Array(reply))
                }
            }
            let logps = try inference.logProbabilities(labelInputs, targets: targets)
            for e in 0..<prompts.count {
                let s = (0..<K).map { k in logps[e * K + k].reduce(0.0) { $0 + Double($1) } }
                scores.append(s)
            }
            i += chunk.count
            progress(i, inputs.count)
        }
        var calibration: [Double]? = nil
        if calibrate {
            let prior = scores.removeFirst()
            calibration = prior
            scores = scores.map { zip($0, prior).map { $0 - $1 } }
        }
        predictions = scores.map { s in s.indices.max { s[$0] < s[$1] }! }
        let report = ClassificationReport(labels: task.labels, gold: examples.map(\.label), predicted: predictions)
        return SentimentResult(report: report, predictions: predictions, scores: scores, truncated: truncated,
                               seconds: MonotonicClock.now() - start, calibration: calibration)
    }
}

public struct TranslationResult: Sendable {
    public var hypotheses: [String]
    public var bleu: BLEUScore
    public var chrf: Double
    /// BLEU and chrF of the source sentences themselves as translations (the copy baseline).
    public var copyBLEU: Double
    public var copyChrF: Double
    public var truncated: Int
    public var generatedTokens: Int
    public var seconds: Double
}

public enum TranslationEvaluation {
    /// Translates every source greedily (up to `maxNewTokens`, default 2 × the source tokens + 16)
    /// and scores the corpus against the references.
    public static func run(model: GPT, codec: TextCodec, task: TranslationTask, pairs: [TranslationPair],
                           batchSize: Int = 32, maxNewTokens: Int? = nil, weightFormat: WeightFormat = .float32,
                           progress: (Int, Int) -> Void = { _, _ in }) throws -> TranslationResult {
        let format = try chatFormat(codec)
        let capacity = model.config.contextLength
        let batch = max(1, min(batchSize, pairs.count))
        let engine = Engine(model: try InferenceModel(model: model, slots: batch, capacity: capacity, rowsPerPass: 256, weightFormat: weightFormat))
        var greedy = SamplingParameters()
        greedy.temperature = 0
        var stops: Set<Int32> = [format.endOfTurn]
        if let eot = codec.endOfText { stops.insert(eot) }
        let start = MonotonicClock.now()
        var hypotheses: [String] = [], truncated = 0, generated = 0
        var i = 0
        while i < pairs.count {
            let chunk = pairs[i..<min(pairs.count, i + batch)]
            var requests: [GenerationRequest] = []
            for p in chunk {
                let sourceTokens = try codec.encode(p.source).count
                let wanted = maxNewTokens ?? (2 * sourceTokens + 16)
                let reserve = min(wanted, max(1, capacity / 2))
                guard let fitted = try fittedPrompt(format, p.source, limit: capacity, reserve: reserve, task.prompt) else {
                    throw EvaluationError.invalidSetting("the model's context (\(capacity) tokens) is too short for the translation prompt")
                }
                if fitted.truncated { truncated += 1 }
                requests.append(GenerationRequest(prompt: fitted.ids, maxTokens: max(1, min(wanted, capacity - fitted.ids.count)),
                                                  sampling: greedy, stopTokens: stops))
            }
            for (ids, _) in try engine.complete(requests) {
                generated += ids.count
                hypotheses.append(try codec.decode(ids).trimmingCharacters(in: .whitespacesAndNewlines))
            }
            i += chunk.count
            progress(i, pairs.count)
        }
        let seconds = MonotonicClock.now() - start
        let references = pairs.map(\.target), sources = pairs.map(\.source)
        return TranslationResult(hypotheses: hypotheses, bleu: BLEU.corpusScore(hypotheses: hypotheses, references: references),
                                 chrf: CHRF.corpusScore(hypotheses: hypotheses, references: references),
                                 copyBLEU: BLEU.corpusScore(hypotheses: sources, references: references).score,
                                 copyChrF: CHRF.corpusScore(hypotheses: sources, references: references),
                                 truncated: truncated, generatedTokens: generated, seconds: seconds)
    }
}
