// Direct preference optimisation (Rafailov et al., 2023). For a pair with prompt x, chosen y_c and
// rejected y_r, with log-probabilities summed over the response tokens (the reply and its <|end|>):
//   z = β·((log π(y_c|x) − log π_ref(y_c|x)) − (log π(y_r|x) − log π_ref(y_r|x))),  loss = −log σ(z).
// Since log π(y|x) = −Σ token losses, dloss/d(token loss) = +β·σ(−z) on chosen tokens and −β·σ(−z)
// on rejected ones: those are the per-token loss weights handed to the model's backward. The other
// losses (`PreferenceLoss`: label-smoothed sigmoid, IPO, hinge) only change that per-pair slope.
// With an NLL weight α (RPO), the loss adds α·(−log π(y_c|x))/|y_c| averaged over the pairs, which
// adds α/|y_c| to each chosen reply token's weight.

import Compute
import Foundation
import Model
import Tokenizer

/// The loss on a pair's log-ratio difference h = (log π − log π_ref)(chosen) − (log π − log π_ref)(rejected)
/// (summed over the reply tokens), with z = β·h.
public enum PreferenceLoss: String, CaseIterable, Sendable, Codable {
    /// DPO (Rafailov et al., 2023): −log σ(z); with label smoothing ε, (1−ε)·(−log σ(z)) + ε·(−log σ(−z)).
    case sigmoid
    /// IPO (Azar et al., 2023): (h − 1/(2β))², which holds each margin at 1/(2β) instead of pushing it
    /// without end — meant for preferences that a model can fit exactly, and so overfit.
    case ipo
    /// SLiC's hinge (Zhao et al., 2023): max(0, 1 − z).
    case hinge

    /// The loss and its derivative with respect to h.
    public func evaluate(h: Double, beta: Double, labelSmoothing: Double = 0) -> (loss: Double, slope: Double) {
        let z = beta * h
        switch self {
        case .sigmoid:
            let e = labelSmoothing
            return ((1 - e) * softplus(-z) + e * softplus(z), beta * (-(1 - e) * Training.sigmoid(-z) + e * Training.sigmoid(z)))
        case .ipo:
            let d = h - 1 / (2 * beta)
            return (d * d, 2 * d)
        case .hinge:
            return z < 1 ? (1 - z, -beta) : (0, 0)
        }
    }
}

/// A preference pair as token rows: prompt + reply, and the index where the reply starts.
struct EncodedPair {
    var chosen: [Int32]
    var rejected: [Int32]
    var chosenStart: Int
    var rejectedStart: Int
    /// Index of the pair in the list it was encoded from.
    var source = 0
    var truncated = false
}

/// Encodes pairs as token rows. A pair longer than `maxLength` is cut to fit when
/// `truncatePrompts` is set: it keeps the end of its prompt (the latest turns, which the replies
/// answer) — at least `minimumPromptTokens` of it — and, when the replies are too long even
/// then, the start of each reply (as TRL's DPO trainer does); otherwise it is skipped.
func encodePairs(_ pairs: [PreferencePair], format: ChatFormat, maxLength: Int, truncatePrompts: Bool = true)
    throws -> (pairs: [EncodedPair], skipped: Int, truncated: Int) {
    var out: [EncodedPair] = []
    var skipped = 0, truncated = 0
    for (index, p) in pairs.enumerated() {
        let prompt = try format.render(p.prompt, addGenerationPrompt: true).ids
        let c = try format.render(p.prompt + [ChatMessage(role: .assistant, content: p.chosen)]).ids
        let r = try format.render(p.prompt + [ChatMessage(role: .assistant, content: p.rejected)]).ids
        if c.count <= maxLength && r.count <= maxLength {
            out.append(EncodedPair(chosen: c, rejected: r, chosenStart: prompt.count, rejectedStart: prompt.count, source: index))
            continue
        }
        let longestReply = max(c.count, r.count) - prompt.count
        let keep = min(prompt.count, max(min(minimumPromptTokens, maxLength / 2), maxLength - longestReply))
        guard truncatePrompts, keep < maxLength else { skipped += 1; continue }
        let cut = prompt.count - keep, room = maxLength - keep
        out.append(EncodedPair(chosen: Array(c[cut..<min(c.count, prompt.count + room)]),
                               rejected: Array(r[cut..<min(r.count, prompt.count + room)]), chosenStart: keep, rejectedStart: keep,
                               source: index, truncated: true))
        truncated += 1
    }
    return (out, skipped, truncated)
}

/// The fewest prompt tokens a truncated preference pair keeps.
let minimumPromptTokens = 16

/// Summed log-probabilities of the reply tokens of each row (chosen and rejected of every pair).
func replyLogProbabilities(model: GPT, pairs: [EncodedPair], rowsPerBatch P: Int, T: Int, pad: Int32) throws -> [(Double, Double)] {
    var rows = PaddedRows(rows: 2 * P, T: T)
    return try replyLogProbabilities(model: model, pairs: pairs, rowsPerBatch: P, T: T, pad: pad, rows: &rows)
}

/// As above, in the caller's `rows`: after the call they hold the last batch's tokens, targets and
/// reply masks (chosen rows first, then rejected).
func replyLogProbabilities(model: GPT, pairs: [EncodedPair], rowsPerBatch P: Int, T: Int, pad: Int32,
                           rows: inout PaddedRows) throws -> [(Double, Double)] {
    var out: [(Double, Double)] = []
    var i = 0
    while i < pairs.count {
        let n = min(P, pairs.count - i)
        for k in 0..<P {
            let p = pairs[i + min(k, n - 1)]
            rows.set(row: k, T: T, ids: p.chosen, mask: replyMask(p.chosen.count, p.chosenStart), pad: pad)
            rows.set(row: P + k, T: T, ids: p.rejected, mask: replyMask(p.rejected.count, p.rejectedStart), pad: pad)
        }
        try rows.tokens.withUnsafeBufferPointer { tk in
            try rows.targets.withUnsafeBufferPointer { tg in _ = try model.forward(tokens: tk, targets: tg, batchSize: 2 * P, sequenceLength: T) }
        }
        let losses = model.tokenLosses()
        for k in 0..<n {
            var c: Double = 0, r: Double = 0
            for t in 0..<T {
                c -= Double(rows.weights[k * T + t]) * Double(losses[k * T + t])
                r -= Double(rows.weights[(P + k) * T + t]) * Double(losses[(P + k) * T + t])
            }
            out.append((c, r))
        }
        i += n
    }
    return out
}

func replyMask(_ count: Int, _ start: Int) -> [Float] { (0..<count).map { $0 >= start ? 1 : 0 } }

/// One pair's scores: summed log-probabilities of the reply tokens under the model (and the
/// reference), and how many reply tokens were scored.
public struct PairScore: Sendable, Codable, Equatable {
    /// Index of the pair in the scored list.
    public var index: Int
    public var chosenLogp: Double
    public var rejectedLogp: Double
    public var chosenTokens: Int
    public var rejectedTokens: Int
    /// The pair was scored on the end of its prompt (and the start of its replies).
    public var truncated: Bool
    public var chosenReferenceLogp: Double? = nil
    public var rejectedReferenceLogp: Double? = nil
    /// (log π − log π_ref)(chosen) − (log π − log π_ref)(rejected): DPO's implicit reward margin / β.
    public var reward: Double? {
        guard let c = chosenReferenceLogp, let r = rejectedReferenceLogp else { return nil }
        return (chosenLogp - c) - (rejectedLogp - r)
    }

    enum CodingKeys: String, CodingKey {
        case index, truncated, reward
        case chosenLogp = "chosen_logp", rejectedLogp = "rejected_logp"
        case chosenTokens = "chosen_tokens", rejectedTokens = "rejected_tokens"
        case chosenReferenceLogp = "chosen_reference_logp", rejectedReferenceLogp = "rejected_reference_logp"
    }

    public init(index: Int, chosenLogp: Double, rejectedLogp: Double, chosenTokens: Int, rejectedTokens: Int, truncated: Bool) {
        self.index = index
        self.chosenLogp = chosenLogp
        self.rejectedLogp = rejectedLogp
        self.chosenTokens = chosenTokens
        self.rejectedTokens = rejectedTokens
        self.truncated = truncated
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        index = try c.decode(Int.self, forKey: .index)
        chosenLogp = try c.decode(Double.self, forKey: .chosenLogp)
        rejectedLogp = try c.decode(Double.self, forKey: .rejectedLogp)
        chosenTokens = try c.decode(Int.self, forKey: .chosenTokens)
        rejectedTokens = try c.decode(Int.self, forKey: .rejectedTokens)
        truncated = try c.decode(Bool.self, forKey: .truncated)
        chosenReferenceLogp = try c.decodeIfPresent(Double.self, forKey: .chosenReferenceLogp)
        rejectedReferenceLogp = try c.decodeIfPresent(Double.self, forKey: .rejectedReferenceLogp)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encode(chosenLogp, forKey: .chosenLogp)
        try c.encode(rejectedLogp, forKey: .rejectedLogp)
        try c.encode(chosenTokens, forKey: .chosenTokens)
        try c.encode(rejectedTokens, forKey: .rejectedTokens)
        try c.encode(truncated, forKey: .truncated)
        try c.encodeIfPresent(chosenReferenceLogp, forKey: .chosenReferenceLogp)
        try c.encodeIfPresent(rejectedReferenceLogp, forKey: .rejectedReferenceLogp)
        try c.encodeIfPresent(reward, forKey: .reward)
    }
}

public struct PreferenceScore: Sendable, Codable {
    /// Fraction of pairs where the model gives the chosen reply a higher summed log-probability.
    public var accuracy: Double
    /// Mean of log π(chosen) − log π(rejected) (nats).
    public var margin: Double
    public var pairs: Int
    /// Pairs left out (longer than the context, and truncation was off).
    public var skipped: Int
    /// Pairs scored on the end of their prompt and, if need be, the start of their replies.
    public var truncated: Int = 0
    /// With a reference model: the fraction of pairs where log π/π_ref of the chosen reply exceeds
    /// the rejected one's, and the mean difference (nats; DPO's reward margin divided by β).
    public var rewardAccuracy: Double? = nil
    public var rewardMargin: Double? = nil
    /// Every scored pair, in input order (not part of the encoded summary).
    public var details: [PairScore] = []

    enum CodingKeys: String, CodingKey {
        case accuracy, margin, pairs, skipped, truncated, rewardAccuracy, rewardMargin
    }

    public init(accuracy: Double, margin: Double, pairs: Int, skipped: Int, truncated: Int = 0) {
        self.accuracy = accuracy
        self.margin = margin
        self.pairs = pairs
        self.skipped = skipped
        self.truncated = truncated
    }
}

public enum PreferenceOptimization {
    static func setup(model: GPT, codec: TextCodec, maxLength: Int?) throws -> (ChatFormat, Int32, Int) {
        guard case .bpe(let bpe) = codec else {
            throw TrainingError.invalidSetting("DPO needs a BPE tokenizer with the chat tokens; this model has a character vocabulary")
        }
        let format: ChatFormat
        do { format = try ChatFormat(bpe) } catch {
            throw TrainingError.invalidSetting("the tokenizer lacks the chat tokens (\(error)); train it with swiftgpt tokenizer train")
        }
        let limit = min(maxLength ?? model.config.contextLength + 1, model.config.contextLength + 1)
        return (format, bpe.specialTokens[ChatTokens.endOfText] ?? 0, limit)
    }

    /// Summed reply log-probabilities (chosen, rejected) of every pair that fits the context (nil
    /// for pairs that do not).
    public static func logProbabilities(model: GPT, codec: TextCodec, pairs: [PreferencePair], batchSize: Int = 16) throws -> [(Double, Double)?] {
        let (format, pad, limit) = try setup(model: model, codec: codec, maxLength: nil)
        var fits: [Int] = []
        var encoded: [EncodedPair] = []
        for (i, p) in pairs.enumerated() {
            let (e, _, _) = try encodePairs([p], format: format, maxLength: limit, truncatePrompts: false)
            if let e = e.first { fits.append(i); encoded.append(e) }
        }
        var out = [(Double, Double)?](repeating: nil, count: pairs.count)
        guard !encoded.isEmpty else { return out }
        let T = max(1, min(model.config.contextLength, encoded.map { max($0.chosen.count, $0.rejected.count) }.max()! - 1))
        let logps = try replyLogProbabilities(model: model, pairs: encoded, rowsPerBatch: min(batchSize, encoded.count), T: T, pad: pad)
        for (k, i) in fits.enumerated() { out[i] = logps[k] }
        return out
    }

    /// How often the model prefers the chosen reply (summed log-probability), e.g. before and after
    /// DPO; with a `reference`, also how often the chosen reply's log-probability ratio to the
    /// reference exceeds the rejected one's (DPO's implicit reward). Pairs longer than the context
    /// are scored on the end of their prompt (see `encodePairs`).
    public static func score(model: GPT, reference: GPT? = nil, codec: TextCodec, pairs: [PreferencePair], batchSize: Int = 8,
                             truncatePrompts: Bool = true) throws -> PreferenceScore {
        let (format, pad, limit) = try setup(model: model, codec: codec, maxLength: nil)
        if let reference, reference.config != model.config {
            throw TrainingError.configMismatch("the reference model's configuration differs from the model's; compare checkpoints of the same architecture")
        }
        let (encoded, skipped, truncated) = try encodePairs(pairs, format: format, maxLength: limit, truncatePrompts: truncatePrompts)
        guard !encoded.isEmpty else { return PreferenceScore(accuracy: .nan, margin: .nan, pairs: 0, skipped: skipped, truncated: truncated) }
        let T = max(1, min(model.config.contextLength, encoded.map { max($0.chosen.count, $0.rejected.count) }.max()! - 1))
        let P = min(batchSize, encoded.count)
        let logps = try replyLogProbabilities(model: model, pairs: encoded, rowsPerBatch: P, T: T, pad: pad)
        let n = Double(logps.count)
        var result = PreferenceScore(accuracy: Double(logps.filter { $0.0 > $0.1 }.count) / n,
                                     margin: logps.reduce(0) { $0 + ($1.0 - $1.1) } / n, pairs: logps.count, skipped: skipped,
                                     truncated: truncated)
        result.details = zip(encoded, logps).map { e, l in
            PairScore(index: e.source, chosenLogp: l.0, rejectedLogp: l.1, chosenTokens: e.chosen.count - e.chosenStart,
                      rejectedTokens: e.rejected.count - e.rejectedStart, truncated: e.truncated)
        }
        if let reference {
            let ref = try replyLogProbabilities(model: reference, pairs: encoded, rowsPerBatch: P, T: T, pad: pad)
            for k in ref.indices {
                result.details[k].chosenReferenceLogp = ref[k].0
                result.details[k].rejectedReferenceLogp = ref[k].1
            }
            let rewards = zip(logps, ref).map { ($0.0 - $1.0) - ($0.1 - $1.1) }
            result.rewardAccuracy = Double(rewards.filter { $0 > 0 }.count) / n
            result.rewardMargin = rewards.reduce(0, +) / n
        }
        return result
    }

    /// One DPO batch: reply log-probabilities of the policy, z per pair, then a weighted forward and
    /// backward that adds dLoss/dθ (mean over the pairs) to the gradients. Returns the summed loss
    /// (DPO plus the NLL term when `nllWeight` > 0), the pairs with z > 0 and the summed z.
    static func accumulateGradients(model: GPT, pairs: [EncodedPair], reference: [(Double, Double)], beta: Double, nllWeight: Double = 0,
                                    loss kind: PreferenceLoss = .sigmoid, labelSmoothing: Double = 0,
                                    T: Int, pad: Int32, rows: inout PaddedRows) throws -> (loss: Double, wins: Int, margin: Double) {
        let P = pairs.count
        // One forward gives the reply log-probabilities; its logits then become the gradient of the
        // weighted loss (`applyLossWeights`), so the model runs forward once per step, not twice.
        let policy = try replyLogProbabilities(model: model, pairs: pairs, rowsPerBatch: P, T: T, pad: pad, rows: &rows)
        var loss = 0.0, wins = 0, margin = 0.0
        for (k, p) in pairs.enumerated() {
            let h = (policy[k].0 - reference[k].0) - (policy[k].1 - reference[k].1), z = beta * h
            let (l, slope) = kind.evaluate(h: h, beta: beta, labelSmoothing: labelSmoothing)
            loss += l
            margin += z
            if z > 0 { wins += 1 }
            // log π(chosen) = −Σ token losses, so dL/d(chosen token loss) = −dL/dh, and +dL/dh on rejected tokens.
            let coefficient = Float(-slope / Double(P))
            let replyTokens = Double(max(1, p.chosen.count - p.chosenStart))
            loss += nllWeight * -policy[k].0 / replyTokens
            let chosenWeight = coefficient + Float(nllWeight / (replyTokens * Double(P)))
            // The rows hold the reply masks (0/1) from the forward above; scale them in place.
            for t in 0..<T {
                rows.weights[k * T + t] *= chosenWeight
                rows.weights[(P + k) * T + t] *= -coefficient
            }
        }
        try rows.weights.withUnsafeBufferPointer { w in _ = try model.applyLossWeights(w) }
        try model.backward()
        return (loss, wins, margin)
    }

    /// Trains `model` (the policy) with DPO against `reference` (default: the policy's own starting
    /// weights, evaluated before the first update). Writes RUN/last, RUN/best, metrics.jsonl, loss.svg.
    /// `validation`: held-out pairs to evaluate on instead of `config.valFraction` of `pairs`.
    public static func run(model: GPT, reference: GPT? = nil, codec: TextCodec, pairs: [PreferencePair], validation: [PreferencePair]? = nil,
                           config: FineTuneConfig, directory: String, log: (String) -> Void = { print($0) }) throws -> FineTuneSummary {
        try config.validate()
        if let reference, reference.config != model.config {
            throw TrainingError.configMismatch("the reference model's configuration differs from the policy's; DPO needs the same architecture (use the SFT checkpoint the policy starts from)")
        }
        let (format, pad, limit) = try setup(model: model, codec: codec, maxLength: config.maxLength)
        var (encoded, skipped, truncated) = try encodePairs(pairs, format: format, maxLength: limit, truncatePrompts: config.truncatePrompts)
        guard encoded.count >= 2 else { throw TrainingError.invalidSetting("only \(encoded.count) usable preference pairs fit the context of \(model.config.contextLength)") }
        encoded = seededShuffle(encoded, seed: config.seed)
        var valCount = config.valFraction > 0 ? max(1, Int(Double(encoded.count) * config.valFraction)) : 0
        if let validation {
            // The held-out pairs go last, where the split below looks for them.
            let (held, heldSkipped, heldTruncated) = try encodePairs(validation, format: format, maxLength: limit, truncatePrompts: config.truncatePrompts)
            guard !held.isEmpty else { throw TrainingError.invalidSetting("none of the \(validation.count) held-out pairs fits the context of \(model.config.contextLength)") }
            encoded += held
            valCount = held.count
            skipped += heldSkipped
            truncated += heldTruncated
        }
        let T = max(1, min(model.config.contextLength, encoded.map { max($0.chosen.count, $0.rejected.count) }.max()! - 1))
        let P = min(config.batchSize, encoded.count - valCount)
        // Reference log-probabilities, once, with the frozen reference weights.
        let refStart = MonotonicClock.now()
        let refLogps = try replyLogProbabilities(model: reference ?? model, pairs: encoded, rowsPerBatch: P, T: T, pad: pad)
        log("dpo: \(encoded.count - valCount) train + \(valCount) held-out pairs (\(truncated) with the start of the prompt cut, \(skipped) skipped: longer than \(limit) tokens), "
            + (config.preferenceLoss == .sigmoid ? "" : "\(config.preferenceLoss.rawValue) loss, ")
            + "β \(config.beta)" + (config.labelSmoothing > 0 ? ", label smoothing \(config.labelSmoothing)" : "") + (config.nllWeight > 0 ? ", NLL weight \(config.nllWeight)" : "") + ", batch \(P) pairs × \(T) tokens; reference log-probabilities in \(String(format: "%.1f", MonotonicClock.now() - refStart)) s")
        let trainIdx = Array(0..<(encoded.count - valCount)), valIdx = Array((encoded.count - valCount)..<encoded.count)
        let stepsPerEpoch = max(1, trainIdx.count / P)
        let total = config.iterations > 0 ? config.iterations : max(1, Int((Double(stepsPerEpoch) * config.epochs).rounded()))
        let metrics = try MetricsLog(directory: directory, title: "DPO loss")
        var rows = PaddedRows(rows: 2 * P, T: T)
        model.resetOptimizerState()
        try model.prepareForTraining(batchSize: 2 * P, sequenceLength: T)
        let beta = Double(config.beta)

        func evaluate() throws -> (loss: Double, accuracy: Double, margin: Double)? {
            guard !valIdx.isEmpty else { return nil }
            let logps = try replyLogProbabilities(model: model, pairs: valIdx.map { encoded[$0] }, rowsPerBatch: P, T: T, pad: pad)
            var loss = 0.0, wins = 0, margin = 0.0
            for (k, i) in valIdx.enumerated() {
                let h = (logps[k].0 - refLogps[i].0) - (logps[k].1 - refLogps[i].1), z = beta * h
                loss += config.preferenceLoss.evaluate(h: h, beta: beta, labelSmoothing: Double(config.labelSmoothing)).loss
                margin += z
                if z > 0 { wins += 1 }
            }
            let n = Double(valIdx.count)
            return (loss / n, Double(wins) / n, margin / n)
        }

        let start = MonotonicClock.now()
        var lastLog = start
        var order = seededShuffle(trainIdx, seed: config.seed &+ 1)
        var cursor = 0, epoch = 0, step = 0
        var lastLoss = Double.nan, best = Double.infinity
        var lastEval: (loss: Double, accuracy: Double, margin: Double)? = nil
        while step < total {
            var batch: [Int] = []
            for _ in 0..<P {
                if cursor >= order.count { epoch += 1; order = seededShuffle(trainIdx, seed: config.seed &+ UInt64(epoch + 1)); cursor = 0 }
                batch.append(order[cursor]); cursor += 1
            }
            try model.zeroGradients()
            let (sum, wins, margin) = try accumulateGradients(model: model, pairs: batch.map { encoded[$0] },
                                                              reference: batch.map { refLogps[$0] }, beta: beta,
                                                              nllWeight: Double(config.nllWeight), loss: config.preferenceLoss,
                                                              labelSmoothing: Double(config.labelSmoothing), T: T, pad: pad, rows: &rows)
            let loss = sum / Double(P)
            guard loss.isFinite else { throw TrainingError.nonFiniteLoss(step: step + 1, lastCheckpoint: nil) }
            let lr = config.learningRate(step: step, total: total)
            let norm = try model.update(learningRate: lr, beta1: config.beta1, beta2: config.beta2, epsilon: 1e-8,
                                        weightDecay: config.weightDecay, gradientClip: config.gradClip, step: step + 1)
            step += 1
            lastLoss = loss
            metrics.train.append((step, loss))
            metrics.write(["step": Double(step), "train_loss": loss, "reward_accuracy": Double(wins) / Double(P),
                           "reward_margin": margin / Double(P), "lr": Double(lr), "grad_norm": Double(norm)])
            let now = MonotonicClock.now(), elapsed = now - start
            let timeUp = config.maxSeconds > 0 && elapsed >= config.maxSeconds
            let evaluating = step % max(1, config.evalEvery) == 0 || step == total || timeUp
            if !evaluating && now - lastLog >= progressInterval {
                lastLog = now
                log("dpo step \(step)/\(total) | loss \(String(format: "%.4f", loss)) | reward accuracy \(String(format: "%.3f", Double(wins) / Double(P)))"
                    + " | \(String(format: "%.1f", Double(step) / elapsed)) steps/s | ETA \(duration(elapsed / Double(step) * Double(total - step)))")
            }
            if evaluating {
                lastLog = now
                lastEval = try evaluate()
                let eta = elapsed / Double(step) * Double(total - step)
                log("dpo step \(step)/\(total) | loss \(String(format: "%.4f", loss))"
                    + (lastEval.map { e in
                        // The 95% interval says how much of a change between evaluations is noise.
                        let r = BinomialStatistics.wilsonInterval(successes: Int((e.accuracy * Double(valIdx.count)).rounded()), total: valIdx.count)
                        return String(format: " | held-out loss %.4f, reward accuracy %.3f [%.3f, %.3f], margin %.3f",
                                      e.loss, e.accuracy, r.lowerBound, r.upperBound, e.margin)
                    } ?? "")
                    + " | ETA \(duration(eta))")
                if let e = lastEval {
                    metrics.val.append((step, e.loss))
                    metrics.write(["step": Double(step), "val_loss": e.loss, "val_reward_accuracy": e.accuracy, "val_reward_margin": e.margin])
                    if e.loss < best { best = e.loss; try Checkpoint.save(model: model, codec: codec, state: nil, to: directory + "/best") }
                }
                if config.keepCheckpoints { try Checkpoint.saveSnapshot(model: model, codec: codec, step: step, in: directory) }
                metrics.plot(directory: directory)
            }
            if timeUp { log("dpo: time budget of \(config.maxSeconds) s reached at step \(step)"); break }
        }
        try Checkpoint.save(model: model, codec: codec, state: nil, to: directory + "/last")
        if valIdx.isEmpty { try Checkpoint.save(model: model, codec: codec, state: nil, to: directory + "/best") }
        return FineTuneSummary(steps: step, examples: trainIdx.count, validationExamples: valIdx.count, truncated: truncated, skipped: skipped,
                               finalTrainLoss: lastLoss, valLoss: lastEval?.loss, rewardAccuracy: lastEval?.accuracy,
                               rewardMargin: lastEval?.margin, seconds: MonotonicClock.now() - start)
    }
}

func sigmoid(_ x: Double) -> Double { x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)) }
func softplus(_ x: Double) -> Double { x > 30 ? x : log1p(exp(x)) }
