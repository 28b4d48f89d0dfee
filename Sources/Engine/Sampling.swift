// Turning logits into the next token: penalties, logit bias, temperature, top-k, top-p, min-p, then
// a draw from a seeded generator (or the argmax when temperature is 0).
//
// Order and definitions follow Hugging Face transformers' logits processors, so results match them
// on the same logits: repetition penalty (on prompt and generated tokens: positive logits divided by
// the penalty, negative ones multiplied), then temperature, top-k (keeps every token whose logit is at
// least the k-th largest), top-p (keeps the most likely tokens until the mass before the next one
// reaches p), min-p (keeps tokens with probability ≥ min_p × the largest). OpenAI-style presence and
// frequency penalties (subtracted, counted over generated tokens, as vLLM does) and the logit bias
// (added to the raw logits) come before everything else.

import Compute

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct SamplingParameters: Sendable, Equatable {
    /// 0 means greedy (argmax).
    public var temperature: Float = 1
    /// Keep the k most likely tokens; 0 disables.
    public var topK: Int = 0
    /// Nucleus sampling threshold in (0, 1]; 1 disables.
    public var topP: Float = 1
    /// Minimum probability relative to the most likely token, in [0, 1]; 0 disables.
    public var minP: Float = 0
    /// > 1 discourages tokens already in the prompt or the output; 1 disables.
    public var repetitionPenalty: Float = 1
    /// Subtracted once from the logit of every token already generated.
    public var presencePenalty: Float = 0
    /// Subtracted from a token's logit once per time it was generated.
    public var frequencyPenalty: Float = 0
    /// Added to the raw logits of the given token ids.
    public var logitBias: [Int32: Float] = [:]
    /// Same seed, same logits ⇒ same tokens on every machine. nil draws a seed.
    public var seed: UInt64? = nil

    public init(temperature: Float = 1, topK: Int = 0, topP: Float = 1, minP: Float = 0, repetitionPenalty: Float = 1,
                presencePenalty: Float = 0, frequencyPenalty: Float = 0, logitBias: [Int32: Float] = [:], seed: UInt64? = nil) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.logitBias = logitBias
        self.seed = seed
    }

    public static let greedy = SamplingParameters(temperature: 0)

    /// Throws a message naming the bad value and its valid range.
    public func validate(vocabularySize: Int? = nil) throws {
        guard temperature.isFinite && temperature >= 0 else {
            throw EngineError.invalidSampling("temperature must be ≥ 0 (0 = greedy), got \(temperature)")
        }
        guard topK >= 0 else { throw EngineError.invalidSampling("top-k must be ≥ 0 (0 = off), got \(topK)") }
        guard topP > 0 && topP <= 1 else { throw EngineError.invalidSampling("top-p must be in (0, 1], got \(topP)") }
        guard minP >= 0 && minP <= 1 else { throw EngineError.invalidSampling("min-p must be in [0, 1], got \(minP)") }
        guard repetitionPenalty.isFinite && repetitionPenalty > 0 else {
            throw EngineError.invalidSampling("repetition penalty must be > 0 (1 = off), got \(repetitionPenalty)")
        }
        guard presencePenalty.isFinite && frequencyPenalty.isFinite else {
            throw EngineError.invalidSampling("presence and frequency penalties must be finite numbers")
        }
        for (id, bias) in logitBias {
            guard !bias.isNaN else { throw EngineError.invalidSampling("logit bias for token \(id) is NaN") }
            if let v = vocabularySize, id < 0 || Int(id) >= v {
                throw EngineError.invalidSampling("logit bias names token \(id), outside the vocabulary 0..<\(v)")
            }
        }
    }
}

/// One candidate of a next-token distribution.
public struct TokenProbability: Sendable, Equatable {
    public var id: Int32
    public var probability: Float
}

/// A token with its log-probability under the model (before any sampling control).
public struct TokenLogprob: Sendable, Equatable, Codable {
    public var id: Int32
    public var logprob: Float
}

/// Per-sequence sampling state: the parameters, the generator and token counts for the penalties.
/// Reuses its buffers, so a step allocates only the kept candidates.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var rng: SeededRandom
    private var promptTokens: Set<Int32>
    private var generatedCounts: [Int32: Int] = [:]
    private var work: [Float] = []

    /// - Parameter stream: picks an independent random stream for the same seed (sample i of n).
    public init(parameters: SamplingParameters, prompt: [Int32] = [], stream: UInt64 = 0) {
        self.parameters = parameters
        let seed = parameters.seed ?? UInt64.random(in: 0...UInt64.max)
        rng = SeededRandom(seed: mix64(seed &+ stream &* 0x9E37_79B9_7F4A_7C15))
        promptTokens = Set(prompt)
    }

    /// Records a token as generated (for the penalties).
    public mutating func accept(_ id: Int32) {
        generatedCounts[id, default: 0] += 1
    }

    /// The filtered, renormalised distribution the next token is drawn from, most likely first
    /// (ties: smaller id first). Greedy gives one candidate with probability 1.
    public mutating func distribution(logits: UnsafeBufferPointer<Float>) -> [TokenProbability] {
        distribution(logits: logits, sorted: true)
    }

    /// With `sorted: false` and neither top-p nor min-p, the candidates come in id order and are
    /// not sorted (drawing from them needs no order; sorting 50k candidates per token is not free).
    private mutating func distribution(logits: UnsafeBufferPointer<Float>, sorted: Bool) -> [TokenProbability] {
        let p = parameters
        let V = logits.count
        if p.temperature == 0 && p.logitBias.isEmpty && p.repetitionPenalty == 1 && p.presencePenalty == 0
            && p.frequencyPenalty == 0 {
            // Plain greedy: nothing modifies the logits, so no working copy.
            return [TokenProbability(id: Int32(firstArgmax(logits.baseAddress!, V).index), probability: 1)]
        }
        if work.count != V { work = [Float](repeating: 0, count: V) }
        return work.withUnsafeMutableBufferPointer { x -> [TokenProbability] in
            _ = x.initialize(from: logits)
            for (id, bias) in p.logitBias where Int(id) < V { x[Int(id)] += bias }
            if p.repetitionPenalty != 1 {
                for id in promptTokens.union(generatedCounts.keys) where Int(id) < V {
                    let v = x[Int(id)]
                    x[Int(id)] = v < 0 ? v * p.repetitionPenalty : v / p.repetitionPenalty
                }
            }
            if p.presencePenalty != 0 || p.frequencyPenalty != 0 {
                for (id, count) in generatedCounts where Int(id) < V {
                    x[Int(id)] -= p.presencePenalty + p.frequencyPenalty * Float(count)
                }
            }
            if p.temperature == 0 {
                return [TokenProbability(id: Int32(firstArgmax(x.baseAddress!, V).index), probability: 1)]
            }
            let invT = 1 / p.temperature
            for i in 0..<V { x[i] *= invT }
            // top-k: threshold at the k-th largest logit.
            var threshold = -Float.infinity
            if p.topK > 0 && p.topK < V { threshold = kthLargest(UnsafeBufferPointer(x), p.topK) }
            // Softmax over the survivors.
            var mx = -Float.infinity
            for i in 0..<V where x[i] >= threshold { mx = max(mx, x[i]) }
            var sum: Double = 0
            for i in 0..<V {
                if x[i] >= threshold && x[i] > -.infinity {
                    let e = expScalar(x[i] - mx)
                    x[i] = e
                    sum += Double(e)
                } else {
                    x[i] = 0
                }
            }
            let inv = Float(1 / sum)
            for i in 0..<V { x[i] *= inv }
            if !sorted && p.topP >= 1 && p.minP == 0 {
                var out: [TokenProbability] = []
                for i in 0..<V where x[i] > 0 { out.append(TokenProbability(id: Int32(i), probability: x[i])) }
                return out
            }
            // Candidates in descending probability; with top-p, sort only what can be in the nucleus.
            var candidates = sortedCandidates(UnsafeBufferPointer(x), mass: p.topP < 1 ? p.topP : nil)
            if p.topP < 1 {
                var above: Float = 0
                var keep = 0
                while keep < candidates.count && above < p.topP {
                    above += candidates[keep].probability
                    keep += 1
                }
                candidates.removeSubrange(max(1, keep)...)
            }
            if p.minP > 0, let top = candidates.first?.probability {
                let cut = p.minP * top
                candidates.removeAll { $0.probability < cut }
            }
            var kept: Double = 0
            for c in candidates { kept += Double(c.probability) }
            let norm = Float(1 / kept)
            for i in candidates.indices { candidates[i].probability *= norm }
            return candidates
        }
    }

    /// Draws the next token from `distribution(logits:)`.
    public mutating func sample(logits: UnsafeBufferPointer<Float>) -> Int32 {
        let candidates = distribution(logits: logits, sorted: false)
        if candidates.count == 1 { return candidates[0].id }
        let u = rng.nextDouble()
        var cumulative: Double = 0
        for c in candidates {
            cumulative += Double(c.probability)
            if u < cumulative { return c.id }
        }
        return candidates[candidates.count - 1].id
    }
}

/// Tokens with nonzero probability, most likely first (ties: smaller id). With `mass`, only the
/// smallest set of top tokens whose total reaches it needs to be complete and ordered; the rest is
/// dropped (a cheap prefilter avoids sorting the whole vocabulary).
func sortedCandidates(_ probs: UnsafeBufferPointer<Float>, mass: Float?) -> [TokenProbability] {
    var threshold: Float = 0
    if let mass {
        var mx: Float = 0
        for v in probs { mx = max(mx, v) }
        threshold = mx * 1e-3
        while true {
            var total: Float = 0
            for v in probs where v >= threshold { total += v }
            if total >= mass || threshold == 0 { break }
            threshold = threshold < 1e-12 ? 0 : threshold / 32
        }
    }
    var out: [TokenProbability] = []
    for (i, v) in probs.enumerated() where v > 0 && v >= threshold { out.append(TokenProbability(id: Int32(i), probability: v)) }
    out.sort { $0.probability != $1.probability ? $0.probability > $1.probability : $0.id < $1.id }
    return out
}

/// The k-th largest value (1-based) of `x` (k ≤ count), ignoring nothing: a size-k min-heap.
func kthLargest(_ x: UnsafeBufferPointer<Float>, _ k: Int) -> Float {
    var heap = BinaryMinHeap(capacity: k)
    for v in x {
        if heap.count < k { heap.push(v) } else if v > heap.top { heap.replaceTop(v) }
    }
    return heap.top
}

struct BinaryMinHeap {
    private var items: [Float] = []
    init(capacity: Int) { items.reserveCapacity(capacity) }
    var count: Int { items.count }
    var top: Float { items[0] }

    mutating func push(_ v: Float) {
        items.append(v)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if items[parent] <= items[i] { break }
            items.swapAt(parent, i)
            i = parent
        }
    }

    mutating func replaceTop(_ v: Float) {
        items[0] = v
        var i = 0
        let n = items.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < n && items[l] < items[m] { m = l }
            if r < n && items[r] < items[m] { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
    }
}

/// Log-probabilities under the raw logits: of `id`, and the `top` most likely tokens.
public func logprobs(logits: UnsafeBufferPointer<Float>, of id: Int32, top: Int) -> (TokenLogprob, [TokenLogprob]) {
    let lse = logSumExp(logits.baseAddress!, logits.count)
    let chosen = TokenLogprob(id: id, logprob: logits[Int(id)] - lse)
    guard top > 0 else { return (chosen, []) }
    let k = min(top, logits.count)
    let cut = kthLargest(logits, k)
    var best: [TokenLogprob] = []
    for (i, v) in logits.enumerated() where v >= cut { best.append(TokenLogprob(id: Int32(i), logprob: v - lse)) }
    best.sort { $0.logprob != $1.logprob ? $0.logprob > $1.logprob : $0.id < $1.id }
    return (chosen, Array(best.prefix(k)))
}
