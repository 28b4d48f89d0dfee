// Fine-tuning a pre-trained model into a chat model: supervised fine-tuning on conversations (loss
// on assistant tokens only) and direct preference optimisation (DPO) on chosen/rejected pairs.
// Both reuse the model core's per-token loss weights: SFT weights are the assistant mask, DPO
// weights are ±β·σ(−z)/pairs on the response tokens, so no second autograd is needed.

import Compute
import Foundation
import Model
import Tokenizer

// MARK: Data

/// What happened to the lines of a JSONL file.
public struct JSONLReport: Sendable, Equatable {
    public var lines = 0
    public var malformed: [String] = []  // "file:line: reason", first 20
    public var malformedCount = 0
    public var skipped = 0               // well-formed but unusable (no assistant turn, empty reply)
}

struct RawMessage: Decodable { let role: String; let content: String }

func parseMessages(_ raw: [RawMessage]) throws -> [ChatMessage] {
    try raw.map { m in
        guard let role = ChatMessage.Role(rawValue: m.role) else {
            throw TrainingError.invalidSetting("unknown role '\(m.role)' (system, user or assistant)")
        }
        return ChatMessage(role: role, content: m.content)
    }
}

/// Reads JSONL line by line; `body` decodes one line or throws. Malformed lines are reported with
/// file and line number and skipped, or rejected when `strict`.
func readJSONL(_ path: String, strict: Bool, report: inout JSONLReport, _ body: (Data) throws -> Void) throws {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw TrainingError.badData(path: path, reason: "the file does not exist or cannot be read")
    }
    if data.starts(with: [0x1F, 0x8B]) {
        throw TrainingError.badData(path: path, reason: "it is gzip-compressed; decompress it first (gunzip -k \(path))")
    }
    var lineNumber = 0
    for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
        lineNumber += 1
        if line.allSatisfy({ $0 == 32 || $0 == 13 || $0 == 9 }) { continue }
        report.lines += 1
        do { try body(Data(line)) } catch {
            let message = "\(path):\(lineNumber): \(error is DecodingError ? "not a valid record (\(shortDecodingError(error)))" : "\(error)")"
            if strict { throw TrainingError.badData(path: path, reason: "line \(lineNumber) is malformed: \(message); fix it or drop --strict") }
            report.malformedCount += 1
            if report.malformed.count < 20 { report.malformed.append(message) }
        }
    }
}

func shortDecodingError(_ error: Error) -> String {
    switch error as? DecodingError {
    case .keyNotFound(let key, _): return "missing field '\(key.stringValue)'"
    case .typeMismatch(_, let c): return "wrong type at \(c.codingPath.map(\.stringValue).joined(separator: "."))"
    case .dataCorrupted(let c): return c.debugDescription
    default: return "\(error)"
    }
}

/// Conversations in the OpenAI `messages` format, one per line: {"messages": [{"role","content"}, ...]}.
public func loadConversations(_ path: String, strict: Bool = false) throws -> (conversations: [[ChatMessage]], report: JSONLReport) {
    struct Line: Decodable { let messages: [RawMessage] }
    var report = JSONLReport()
    var out: [[ChatMessage]] = []
    var skipped = 0
    try readJSONL(path, strict: strict, report: &report) { data in
        let messages = try parseMessages(try JSONDecoder().decode(Line.self, from: data).messages)
        if messages.contains(where: { $0.role == .assistant }) { out.append(messages) } else { skipped += 1 }
    }
    report.skipped = skipped
    return (out, report)
}

/// One preference pair: a prompt (messages ending with a user turn) and two assistant replies.
public struct PreferencePair: Sendable, Equatable {
    public var prompt: [ChatMessage]
    public var chosen: String
    public var rejected: String
    public init(prompt: [ChatMessage], chosen: String, rejected: String) {
        self.prompt = prompt
        self.chosen = chosen
        self.rejected = rejected
    }
}

/// Pairs {"prompt": text or messages, "chosen", "rejected"}; `prompt_messages` is preferred when
/// present (the hh-rlhf file in ../shared/data has both). A text prompt becomes one user message.
public func loadPreferencePairs(_ path: String, strict: Bool = false) throws -> (pairs: [PreferencePair], report: JSONLReport) {
    struct Line: Decodable {
        let prompt: Prompt?
        let prompt_messages: [RawMessage]?
        let chosen: String
        let rejected: String
    }
    enum Prompt: Decodable {
        case text(String), messages([RawMessage])
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { self = .text(s) } else { self = .messages(try c.decode([RawMessage].self)) }
        }
    }
    var report = JSONLReport()
    var out: [PreferencePair] = []
    var skipped = 0
    try readJSONL(path, strict: strict, report: &report) { data in
        let line = try JSONDecoder().decode(Line.self, from: data)
        var prompt: [ChatMessage]
        if let m = line.prompt_messages {
            prompt = try parseMessages(m)
        } else if case .messages(let m)? = line.prompt {
            prompt = try parseMessages(m)
        } else if case .text(let t)? = line.prompt {
            prompt = [ChatMessage(role: .user, content: t.trimmingCharacters(in: .whitespacesAndNewlines))]
        } else {
            throw TrainingError.invalidSetting("no prompt or prompt_messages")
        }
        let chosen = line.chosen.trimmingCharacters(in: .whitespacesAndNewlines)
        let rejected = line.rejected.trimmingCharacters(in: .whitespacesAndNewlines)
        if prompt.isEmpty || chosen.isEmpty || rejected.isEmpty || chosen == rejected { skipped += 1; return }
        out.append(PreferencePair(prompt: prompt, chosen: chosen, rejected: rejected))
    }
    report.skipped = skipped
    return (out, report)
}

// MARK: Configuration

public struct FineTuneConfig: Sendable, Equatable {
    public var epochs: Double = 1
    /// Steps; when > 0 it overrides `epochs`.
    public var iterations = 0
    public var batchSize = 16
    public var lr: Float = 1e-4
    public var minLR: Float = 1e-5
    public var warmup = 10
    public var weightDecay: Float = 0
    public var beta1: Float = 0.9
    public var beta2: Float = 0.95
    public var gradClip: Float = 1
    public var seed: UInt64 = 1337
    public var evalEvery = 50
    /// Held-out fraction of the data (the last examples after a seeded shuffle).
    public var valFraction = 0.05
    /// Longest example in tokens (default: the model's context). Longer ones are truncated (SFT,
    /// keeping the start) or, in DPO, keep the end of their prompt (or are skipped, see
    /// `truncatePrompts`); both are counted.
    public var maxLength: Int? = nil
    /// DPO temperature β.
    public var beta: Float = 0.1
    /// DPO: weight α of an added negative log-likelihood of the chosen replies (per token, averaged
    /// over the pairs), as in RPO (Pang et al., 2024). DPO alone can lower the chosen replies'
    /// likelihood along with the rejected ones'; this term holds it up. 0: plain DPO.
    public var nllWeight: Float = 0
    /// DPO: the loss on a pair's log-ratio difference (see `PreferenceLoss`).
    public var preferenceLoss: PreferenceLoss = .sigmoid
    /// DPO (sigmoid loss): the probability ε that a pair's label is flipped — conservative DPO
    /// (Mitchell, 2023), TRL's `label_smoothing`. The loss becomes (1−ε)·(−log σ(z)) + ε·(−log σ(−z)),
    /// so a pair the policy already ranks by a wide margin stops pulling. 0: plain DPO.
    public var labelSmoothing: Float = 0
    /// DPO: a pair longer than the context keeps the end of its prompt (true) or is skipped.
    public var truncatePrompts = true
    public var maxSeconds: Double = 0
    /// SFT: dropout probability during the training steps (nil: the model's own, which is what
    /// pre-training used). Held-out evaluation runs without dropout.
    public var dropout: Float? = nil
    /// Also keep the weights at every evaluation (and at the end) as RUN/step-NNNNNN/, e.g. to
    /// average the end of a run with `swiftgpt merge` (stochastic weight averaging).
    public var keepCheckpoints = false
    /// SFT: weight λ of an auxiliary next-token loss on the tokens outside the assistant replies
    /// (the prompt: system and user turns, the template's own tokens). The objective becomes the
    /// mean loss on the assistant tokens plus λ × the mean loss on the prompt tokens, GPT-1's
    /// auxiliary language-modelling objective (Radford et al., 2018). 0: assistant tokens only.
    public var promptLossWeight: Float = 0

    public init() {}

    public func validate() throws {
        guard batchSize > 0 else { throw TrainingError.invalidSetting("batch size must be positive") }
        guard epochs > 0 || iterations > 0 else { throw TrainingError.invalidSetting("give a positive number of epochs or iterations") }
        guard lr > 0, minLR >= 0, minLR <= lr else { throw TrainingError.invalidSetting("need lr > 0 and 0 ≤ min-lr ≤ lr") }
        guard valFraction >= 0 && valFraction < 1 else { throw TrainingError.invalidSetting("val fraction must be in [0, 1)") }
        guard beta > 0 && beta.isFinite else { throw TrainingError.invalidSetting("DPO beta must be positive") }
        guard nllWeight >= 0 && nllWeight.isFinite else { throw TrainingError.invalidSetting("the DPO NLL weight must be ≥ 0, got \(nllWeight)") }
        guard labelSmoothing >= 0 && labelSmoothing < 0.5 else {
            throw TrainingError.invalidSetting("label smoothing is the chance that a preference label is wrong and must be in [0, 0.5), got \(labelSmoothing)")
        }
        if labelSmoothing > 0 && preferenceLoss != .sigmoid {
            throw TrainingError.invalidSetting("label smoothing applies to the sigmoid DPO loss only, not \(preferenceLoss.rawValue)")
        }
        guard warmup >= 0, evalEvery >= 0, gradClip >= 0 else { throw TrainingError.invalidSetting("warmup, eval-every and grad-clip must be ≥ 0") }
        if let dropout, !(dropout >= 0 && dropout < 1) { throw TrainingError.invalidSetting("dropout must be in [0, 1), got \(dropout)") }
        guard promptLossWeight >= 0 && promptLossWeight.isFinite else {
            throw TrainingError.invalidSetting("the prompt loss weight must be ≥ 0, got \(promptLossWeight)")
        }
    }

    /// Linear warm-up then cosine decay to minLR over `total` steps.
    func learningRate(step: Int, total: Int) -> Float {
        if step < warmup { return lr * Float(step + 1) / Float(warmup + 1) }
        let progress = Float(step - warmup) / Float(max(1, total - warmup))
        return minLR + 0.5 * (lr - minLR) * (1 + cos(Float.pi * min(1, progress)))
    }
}

public struct FineTuneSummary: Sendable, Codable {
    public var steps: Int
    public var examples: Int
    public var validationExamples: Int
    public var truncated: Int
    public var skipped: Int
    public var finalTrainLoss: Double
    public var valLoss: Double?
    /// DPO: held-out accuracy of the implicit reward (chosen beats rejected relative to the reference).
    public var rewardAccuracy: Double?
    public var rewardMargin: Double?
    public var seconds: Double
}

// MARK: Shared loop pieces

/// Fixed-shape padded batches: every row is T+1 tokens (inputs and shifted targets), padding has
/// weight 0. One shape for the whole run keeps the model's buffers.
struct PaddedRows {
    var tokens: [Int32]
    var targets: [Int32]
    var weights: [Float]
    init(rows: Int, T: Int) {
        tokens = [Int32](repeating: 0, count: rows * T)
        targets = [Int32](repeating: 0, count: rows * T)
        weights = [Float](repeating: 0, count: rows * T)
    }
    /// Writes example `ids` with per-target `mask` (mask[i] applies to predicting ids[i]) into row r.
    mutating func set(row r: Int, T: Int, ids: [Int32], mask: [Float], pad: Int32) {
        for t in 0..<T {
            tokens[r * T + t] = t < ids.count ? ids[t] : pad
            let target = t + 1 < ids.count ? ids[t + 1] : pad
            targets[r * T + t] = target
            weights[r * T + t] = t + 1 < ids.count ? mask[t + 1] : 0
        }
    }
}

/// Turns the assistant mask in `rows.weights` into SFT loss weights: 1/n on the n assistant
/// targets and, when λ = `promptLossWeight` > 0, λ/m on the m other real targets of the first
/// `lengths.count` rows (`lengths`: their token counts; later rows are padding), so that
/// Σ weight·loss = mean(assistant tokens) + λ·mean(prompt tokens).
func sftLossWeights(_ rows: inout PaddedRows, T: Int, lengths: [Int], promptLossWeight: Float) {
    let assistant = rows.weights.reduce(0, +)
    let scale = 1 / max(1, assistant)
    guard promptLossWeight > 0 else {
        for j in rows.weights.indices { rows.weights[j] *= scale }
        return
    }
    var prompt: Float = 0
    for (r, length) in lengths.enumerated() {
        for t in 0..<min(T, length - 1) where rows.weights[r * T + t] == 0 { prompt += 1 }
    }
    let promptScale = promptLossWeight / max(1, prompt)
    for r in 0..<(rows.weights.count / T) {
        let targets = r < lengths.count ? min(T, lengths[r] - 1) : 0
        for t in 0..<T {
            let j = r * T + t
            rows.weights[j] = rows.weights[j] > 0 ? rows.weights[j] * scale : (t < targets ? promptScale : 0)
        }
    }
}

final class MetricsLog {
    let path: String
    var train: [(Int, Double)] = []
    var val: [(Int, Double)] = []
    let title: String
    init(directory: String, title: String) throws {
        path = directory + "/metrics.jsonl"
        self.title = title
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: path, contents: nil)
    }
    func write(_ object: [String: Double]) {
        var parts: [String] = []
        for (k, v) in object.sorted(by: { $0.key == "step" ? true : $1.key == "step" ? false : $0.key < $1.key }) {
            parts.append("\"\(k)\":\(v.isFinite ? (k == "step" ? String(Int(v)) : String(v)) : "null")")
        }
        if let handle = FileHandle(forWritingAtPath: path) {
            handle.seekToEndOfFile()
            handle.write(("{" + parts.joined(separator: ",") + "}\n").data(using: .utf8)!)
            try? handle.close()
        }
    }
    func plot(directory: String) {
        try? AtomicFile.write(Data(LossPlot.svg(train: train, val: val, title: title).utf8), to: directory + "/loss.svg")
    }
}

func seededShuffle<T>(_ items: [T], seed: UInt64) -> [T] {
    var rng = SeededRandom(seed: seed)
    var out = items
    if out.count > 1 {
        for i in stride(from: out.count - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            out.swapAt(i, j)
        }
    }
    return out
}

// MARK: SFT

/// Seconds between progress lines of the fine-tuning loops (evaluations print their own).
let progressInterval = 5.0

public enum SupervisedFineTuning {
    /// Fine-tunes `model` on conversations; writes RUN/last and RUN/best (lowest held-out loss),
    /// metrics.jsonl and loss.svg to `directory`.
    public static func run(model: GPT, codec: TextCodec, conversations: [[ChatMessage]], config: FineTuneConfig,
                           directory: String, log: (String) -> Void = { print($0) }) throws -> FineTuneSummary {
        try config.validate()
        guard case .bpe(let bpe) = codec else {
            throw TrainingError.invalidSetting("SFT needs a BPE tokenizer with the chat tokens; this model has a character vocabulary")
        }
        let format: ChatFormat
        do { format = try ChatFormat(bpe) } catch {
            throw TrainingError.invalidSetting("the tokenizer lacks the chat tokens (\(error)); train it with swiftgpt tokenizer train")
        }
        let pad = bpe.specialTokens[ChatTokens.endOfText] ?? 0
        let maxLength = min(config.maxLength ?? model.config.contextLength + 1, model.config.contextLength + 1)
        var examples: [(ids: [Int32], mask: [Float])] = []
        var truncated = 0, skipped = 0
        for conversation in conversations {
            var (ids, mask) = try format.render(conversation)
            if ids.count > maxLength {
                ids = Array(ids.prefix(maxLength))
                mask = Array(mask.prefix(maxLength))
                truncated += 1
            }
            if !mask.contains(1) { skipped += 1; continue }
            examples.append((ids, mask.map { Float($0) }))
        }
        guard examples.count >= 2 else {
            throw TrainingError.invalidSetting("only \(examples.count) usable conversations (need at least 2 with an assistant turn inside the context)")
        }
        examples = seededShuffle(examples, seed: config.seed)
        let valCount = config.valFraction > 0 ? max(1, Int(Double(examples.count) * config.valFraction)) : 0
        let val = Array(examples.suffix(valCount)), train = Array(examples.prefix(examples.count - valCount))
        let maxT = max(1, min(model.config.contextLength, (examples.map(\.ids.count).max() ?? 2) - 1))
        let B = min(config.batchSize, train.count)
        // Length buckets: a batch is padded to the power-of-two length (capped at maxT) of its
        // longest example, so short examples do not pay for the longest one in the file.
        func bucketLength(_ ids: Int) -> Int {
            var t = 16
            while t < ids - 1 && t < maxT { t *= 2 }
            return min(t, maxT)
        }
        func plan(_ items: [Int], seed: UInt64) -> [[Int]] {
            var byLength: [Int: [Int]] = [:]
            for i in seededShuffle(items, seed: seed) { byLength[bucketLength(train[i].ids.count), default: []].append(i) }
            var batches: [[Int]] = []
            for key in byLength.keys.sorted() {
                let members = byLength[key]!
                stride(from: 0, to: members.count, by: B).forEach { batches.append(Array(members[$0..<min(members.count, $0 + B)])) }
            }
            return seededShuffle(batches, seed: seed &+ 0x9E37)
        }
        var batches = plan(Array(train.indices), seed: config.seed &+ 1)
        let stepsPerEpoch = batches.count
        let total = config.iterations > 0 ? config.iterations : max(1, Int((Double(stepsPerEpoch) * config.epochs).rounded()))
        let buckets = Set(train.map { bucketLength($0.ids.count) }).sorted()
        log("sft: \(train.count) train + \(val.count) held-out conversations (\(truncated) truncated to \(maxLength) tokens, \(skipped) skipped), "
            + "batch \(B) × \(buckets.map(String.init).joined(separator: "/")) tokens (length buckets), \(stepsPerEpoch) steps an epoch, \(total) steps")
        let metrics = try MetricsLog(directory: directory, title: "SFT loss (assistant tokens)")
        model.resetOptimizerState()
        if let p = config.dropout { try model.setDropout(p) }
        model.shapeCacheLimit = buckets.count + 1
        defer { model.shapeCacheLimit = 1 }
        try model.prepareForTraining(batchSize: B, sequenceLength: buckets.last ?? maxT)
        var rowsByLength: [Int: PaddedRows] = [:]

        /// Mean loss over the masked tokens of `items`, batched by length.
        func evaluate() throws -> Double? {
            guard !val.isEmpty else { return nil }
            var total: Double = 0, count: Double = 0
            let sorted = val.sorted { $0.ids.count < $1.ids.count }
            var i = 0
            while i < sorted.count {
                let chunk = sorted[i..<min(sorted.count, i + B)]
                let T = chunk.map { bucketLength($0.ids.count) }.max()!
                var rows = rowsByLength[T] ?? PaddedRows(rows: B, T: T)
                for r in 0..<B {
                    let e = chunk[chunk.startIndex + min(r, chunk.count - 1)]
                    rows.set(row: r, T: T, ids: e.ids, mask: r < chunk.count ? e.mask : [Float](repeating: 0, count: e.mask.count), pad: pad)
                }
                try rows.tokens.withUnsafeBufferPointer { tk in
                    try rows.targets.withUnsafeBufferPointer { tg in _ = try model.forward(tokens: tk, targets: tg, batchSize: B, sequenceLength: T) }
                }
                let losses = model.tokenLosses()
                for j in 0..<(B * T) where rows.weights[j] > 0 { total += Double(losses[j]) * Double(rows.weights[j]); count += Double(rows.weights[j]) }
                rowsByLength[T] = rows
                i += chunk.count
            }
            return count > 0 ? total / count : nil
        }

        let start = MonotonicClock.now()
        var lastLog = start
        var tokensSeen = 0
        var epoch = 0
        var best = Double.infinity
        var lastLoss = Double.nan
        var lastVal: Double? = nil
        var step = 0
        while step < total {
            try model.zeroGradients()
            var masked: Float = 0
            if batches.isEmpty {
                epoch += 1
                batches = plan(Array(train.indices), seed: config.seed &+ UInt64(epoch + 1))
            }
            let batch = batches.removeLast()
            let T = batch.map { bucketLength(train[$0].ids.count) }.max()!
            var rows = rowsByLength[T] ?? PaddedRows(rows: B, T: T)
            for r in 0..<B {
                let e = train[batch[min(r, batch.count - 1)]]
                rows.set(row: r, T: T, ids: e.ids, mask: r < batch.count ? e.mask : [Float](repeating: 0, count: e.mask.count), pad: pad)
            }
            let assistantMask = rows.weights
            for w in assistantMask { masked += w }
            sftLossWeights(&rows, T: T, lengths: batch.map { train[$0].ids.count }, promptLossWeight: config.promptLossWeight)
            let loss = try rows.tokens.withUnsafeBufferPointer { tk in
                try rows.targets.withUnsafeBufferPointer { tg in
                    try rows.weights.withUnsafeBufferPointer { w in
                        try model.forward(tokens: tk, targets: tg, weights: w, batchSize: B, sequenceLength: T,
                                          dropoutSeed: model.config.dropout > 0 ? config.seed &* 0x2545_F491_4F6C_DD1D &+ UInt64(step) : nil)
                    }
                }
            }
            rowsByLength[T] = rows
            // The reported loss stays the assistant tokens' mean, whatever the prompt's weight.
            var reported = loss
            if config.promptLossWeight > 0 {
                let losses = model.tokenLosses()
                var sum: Double = 0
                for j in assistantMask.indices where assistantMask[j] > 0 { sum += Double(losses[j]) * Double(assistantMask[j]) }
                reported = Float(sum / Double(max(1, masked)))
            }
            guard loss.isFinite else { throw TrainingError.nonFiniteLoss(step: step + 1, lastCheckpoint: FileManager.default.fileExists(atPath: directory + "/last") ? directory + "/last" : nil) }
            try model.backward()
            let lr = config.learningRate(step: step, total: total)
            let norm = try model.update(learningRate: lr, beta1: config.beta1, beta2: config.beta2, epsilon: 1e-8,
                                        weightDecay: config.weightDecay, gradientClip: config.gradClip, step: step + 1)
            step += 1
            lastLoss = Double(reported)
            metrics.train.append((step, lastLoss))
            metrics.write(["step": Double(step), "train_loss": lastLoss, "lr": Double(lr), "grad_norm": Double(norm)])
            tokensSeen += B * T
            let now = MonotonicClock.now(), elapsed = now - start
            let timeUp = config.maxSeconds > 0 && elapsed >= config.maxSeconds
            let evaluating = step % max(1, config.evalEvery) == 0 || step == total || timeUp
            if !evaluating && now - lastLog >= progressInterval {
                lastLog = now
                log("sft step \(step)/\(total) | loss \(String(format: "%.4f", lastLoss)) | lr \(String(format: "%.1e", lr)) | "
                    + "\(Int(Double(tokensSeen) / elapsed)) tok/s | ETA \(duration(elapsed / Double(step) * Double(total - step)))")
            }
            if evaluating {
                lastLog = now
                let v = try evaluate()
                lastVal = v
                let eta = elapsed / Double(step) * Double(total - step)
                log("sft step \(step)/\(total) | loss \(String(format: "%.4f", lastLoss))" + (v.map { " | val \(String(format: "%.4f", $0))" } ?? "")
                    + " | lr \(String(format: "%.1e", lr)) | ETA \(duration(eta))")
                if let v {
                    metrics.val.append((step, v))
                    metrics.write(["step": Double(step), "val_loss": v])
                    if v < best { best = v; try Checkpoint.save(model: model, codec: codec, state: nil, to: directory + "/best") }
                }
                if config.keepCheckpoints { try Checkpoint.saveSnapshot(model: model, codec: codec, step: step, in: directory) }
                metrics.plot(directory: directory)
            }
            if timeUp { log("sft: time budget of \(config.maxSeconds) s reached at step \(step)"); break }
        }
        try Checkpoint.save(model: model, codec: codec, state: nil, to: directory + "/last")
        if val.isEmpty { try Checkpoint.save(model: model, codec: codec, state: nil, to: directory + "/best") }
        metrics.plot(directory: directory)
        return FineTuneSummary(steps: step, examples: train.count, validationExamples: val.count, truncated: truncated, skipped: skipped,
                               finalTrainLoss: lastLoss, valLoss: lastVal, rewardAccuracy: nil, rewardMargin: nil,
                               seconds: MonotonicClock.now() - start)
    }
}
