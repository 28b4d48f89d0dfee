// Sampling by full recomputation (no KV cache): enough for samples during training and the
// `sample` command; the Engine (KV cache, every sampling control) builds on the same model.

import Compute
import Model

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct SimpleSampler {
    public var temperature: Float = 1
    public var topK: Int = 0
    public var seed: UInt64 = 0

    public init(temperature: Float = 1, topK: Int = 0, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.seed = seed
    }

    /// Generates up to `maxTokens` ids after `prompt`, running batches of `batchSize` rows of
    /// `model.config.contextLength` (row 0 is used; causal attention makes the padding harmless), so a
    /// training model keeps its buffers. Stops early at `stop`.
    public func generate(model: GPT, prompt: [Int32], maxTokens: Int, batchSize: Int = 1, stop: Int32? = nil) throws -> [Int32] {
        let T = model.config.contextLength
        var rng = SeededRandom(seed: seed)
        var context = prompt
        var out: [Int32] = []
        var tokens = [Int32](repeating: 0, count: batchSize * T)
        for _ in 0..<maxTokens {
            let window = Array(context.suffix(T))
            for i in 0..<T { tokens[i] = i < window.count ? window[i] : 0 }
            try tokens.withUnsafeBufferPointer { try model.forward(tokens: $0, batchSize: batchSize, sequenceLength: T) }
            let logits = model.logits(batch: 0, position: window.count - 1)
            let next = pick(logits, &rng)
            out.append(next)
            context.append(next)
            if next == stop { break }
        }
        return out
    }

    /// Greedy when temperature is 0; otherwise softmax(logits / temperature) over the top k.
    func pick(_ logits: [Float], _ rng: inout SeededRandom) -> Int32 {
        if temperature <= 0 { return Int32(logits.indices.max { logits[$0] < logits[$1] }!) }
        var candidates = Array(logits.indices)
        if topK > 0 && topK < logits.count {
            candidates.sort { logits[$0] > logits[$1] }
            candidates = Array(candidates.prefix(topK))
        }
        let mx = candidates.map { logits[$0] }.max()!
        var weights = candidates.map { Double(expf((logits[$0] - mx) / temperature)) }
        let total = weights.reduce(0, +)
        for i in weights.indices { weights[i] /= total }
        var u = Double(rng.nextUniform())
        for (i, w) in weights.enumerated() {
            u -= w
            if u <= 0 { return Int32(candidates[i]) }
        }
        return Int32(candidates.last!)
    }
}
