// Every hyper-parameter of a training run, as flags and as a JSON file (flags override the file).
// Stored in state.json of every checkpoint.

import Model

public struct TrainConfig: Codable, Sendable, Equatable {
    // Model
    public var layers = 4
    public var heads = 4
    public var width = 128
    public var context = 64
    public var dropout: Float = 0
    /// gpt2 (learned positions, layer norm, GELU, biases, tied head) or llama (rope, RMSNorm, SwiGLU,
    /// no biases, untied head); the options below override single choices.
    public var arch = "gpt2"
    public var kvHeads: Int? = nil
    public var ffnWidth: Int? = nil
    public var ropeTheta: Float? = nil
    public var normEpsilon: Float? = nil
    public var bias: Bool? = nil
    public var tiedEmbeddings: Bool? = nil
    // Batch
    public var batchSize = 12
    public var gradAccum = 1
    public var iterations = 2000
    // Optimiser and schedule
    public var lr: Float = 1e-3
    public var minLR: Float = 1e-4
    public var warmup = 100
    public var decay = "cosine"
    public var weightDecay: Float = 0.1
    public var beta1: Float = 0.9
    public var beta2: Float = 0.99
    public var gradClip: Float = 1.0
    public var seed: UInt64 = 1337
    // Evaluation and checkpoints
    public var evalEvery = 250
    public var evalBatches = 20
    public var checkpointEvery = 0  // 0: only at evaluations and at the end
    /// Also keep each of those checkpoints' weights as RUN/step-NNNNNN/ (for `swiftgpt merge`).
    public var keepCheckpoints = false
    public var sampleTokens = 100
    /// Stop after this many seconds of this process's training (then evaluate and checkpoint); 0: no limit.
    public var maxSeconds: Double = 0

    public init() {}

    enum CodingKeys: String, CodingKey {
        case layers, heads, width, context, dropout, iterations, lr, warmup, decay, seed, arch, bias
        case kvHeads = "kv_heads"
        case ffnWidth = "ffn_width"
        case ropeTheta = "rope_theta"
        case normEpsilon = "norm_epsilon"
        case tiedEmbeddings = "tie_embeddings"
        case batchSize = "batch_size"
        case gradAccum = "grad_accum"
        case minLR = "min_lr"
        case weightDecay = "weight_decay"
        case beta1, beta2
        case gradClip = "grad_clip"
        case evalEvery = "eval_every"
        case evalBatches = "eval_batches"
        case checkpointEvery = "checkpoint_every"
        case keepCheckpoints = "keep_checkpoints"
        case sampleTokens = "sample_tokens"
        case maxSeconds = "max_seconds"
    }

    /// Decodes a partial JSON object over the defaults (unknown keys are an error).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = TrainConfig()
        layers = try c.decodeIfPresent(Int.self, forKey: .layers) ?? d.layers
        heads = try c.decodeIfPresent(Int.self, forKey: .heads) ?? d.heads
        width = try c.decodeIfPresent(Int.self, forKey: .width) ?? d.width
        context = try c.decodeIfPresent(Int.self, forKey: .context) ?? d.context
        dropout = try c.decodeIfPresent(Float.self, forKey: .dropout) ?? d.dropout
        arch = try c.decodeIfPresent(String.self, forKey: .arch) ?? d.arch
        kvHeads = try c.decodeIfPresent(Int.self, forKey: .kvHeads)
        ffnWidth = try c.decodeIfPresent(Int.self, forKey: .ffnWidth)
        ropeTheta = try c.decodeIfPresent(Float.self, forKey: .ropeTheta)
        normEpsilon = try c.decodeIfPresent(Float.self, forKey: .normEpsilon)
        bias = try c.decodeIfPresent(Bool.self, forKey: .bias)
        tiedEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tiedEmbeddings)
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? d.batchSize
        gradAccum = try c.decodeIfPresent(Int.self, forKey: .gradAccum) ?? d.gradAccum
        iterations = try c.decodeIfPresent(Int.self, forKey: .iterations) ?? d.iterations
        lr = try c.decodeIfPresent(Float.self, forKey: .lr) ?? d.lr
        minLR = try c.decodeIfPresent(Float.self, forKey: .minLR) ?? d.minLR
        warmup = try c.decodeIfPresent(Int.self, forKey: .warmup) ?? d.warmup
        decay = try c.decodeIfPresent(String.self, forKey: .decay) ?? d.decay
        weightDecay = try c.decodeIfPresent(Float.self, forKey: .weightDecay) ?? d.weightDecay
        beta1 = try c.decodeIfPresent(Float.self, forKey: .beta1) ?? d.beta1
        beta2 = try c.decodeIfPresent(Float.self, forKey: .beta2) ?? d.beta2
        gradClip = try c.decodeIfPresent(Float.self, forKey: .gradClip) ?? d.gradClip
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
        evalEvery = try c.decodeIfPresent(Int.self, forKey: .evalEvery) ?? d.evalEvery
        evalBatches = try c.decodeIfPresent(Int.self, forKey: .evalBatches) ?? d.evalBatches
        checkpointEvery = try c.decodeIfPresent(Int.self, forKey: .checkpointEvery) ?? d.checkpointEvery
        keepCheckpoints = try c.decodeIfPresent(Bool.self, forKey: .keepCheckpoints) ?? d.keepCheckpoints
        sampleTokens = try c.decodeIfPresent(Int.self, forKey: .sampleTokens) ?? d.sampleTokens
        maxSeconds = try c.decodeIfPresent(Double.self, forKey: .maxSeconds) ?? d.maxSeconds
    }

    /// Rejects impossible settings with a message saying which and why.
    public func validate() throws {
        func bad(_ s: String) -> TrainingError { .invalidSetting(s) }
        if batchSize < 1 { throw bad("batch size \(batchSize); use at least 1") }
        if gradAccum < 1 { throw bad("grad accumulation \(gradAccum); use at least 1") }
        if iterations < 1 { throw bad("iterations \(iterations); use at least 1") }
        if !(lr > 0) || !lr.isFinite { throw bad("learning rate \(lr); it must be positive") }
        if minLR < 0 || minLR > lr { throw bad("min lr \(minLR); it must be in [0, lr]") }
        if warmup < 0 { throw bad("warmup \(warmup); it must not be negative") }
        if decay != "cosine" && decay != "linear" { throw bad("decay '\(decay)'; use cosine or linear") }
        if !(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) { throw bad("betas must be in [0, 1)") }
        if gradClip < 0 { throw bad("grad clip \(gradClip); use 0 to disable") }
        if evalEvery < 0 || evalBatches < 0 || checkpointEvery < 0 { throw bad("eval/checkpoint intervals must not be negative") }
    }

    /// The model this configuration trains, for a tokenizer of `vocabSize` tokens.
    public func modelConfig(vocabSize: Int) throws -> GPTConfig {
        var m: GPTConfig
        switch arch {
        case "gpt2":
            m = GPTConfig(vocabSize: vocabSize, contextLength: context, layers: layers, heads: heads, width: width, dropout: dropout,
                          kvHeads: kvHeads, hiddenWidth: ffnWidth)
        case "llama":
            m = GPTConfig.llama(vocabSize: vocabSize, contextLength: context, layers: layers, heads: heads, width: width,
                                kvHeads: kvHeads, hiddenWidth: ffnWidth, dropout: dropout)
        default:
            throw TrainingError.invalidSetting("architecture '\(arch)'; use gpt2 or llama")
        }
        if let ropeTheta { m.ropeTheta = ropeTheta }
        if let normEpsilon { m.normEpsilon = normEpsilon }
        if let bias { m.bias = bias }
        if let tiedEmbeddings { m.tiedEmbeddings = tiedEmbeddings }
        try m.validate()
        return m
    }

    /// Takes the architecture and sizes of `model` (for --init-from): layers, heads, width, context
    /// and every architecture option.
    public mutating func adoptShape(of model: GPTConfig) {
        layers = model.layers
        heads = model.heads
        width = model.width
        context = model.contextLength
        arch = model.positionEncoding == .rope || model.norm == .rmsnorm || model.feedForward == .swiglu ? "llama" : "gpt2"
        kvHeads = model.kvHeads
        ffnWidth = model.hiddenWidth
        ropeTheta = model.ropeTheta
        normEpsilon = model.normEpsilon
        bias = model.bias
        tiedEmbeddings = model.tiedEmbeddings
    }

    /// Learning rate at 0-based step `step`: linear warm-up, then cosine or linear decay to the floor.
    public func learningRate(at step: Int) -> Float {
        if step < warmup { return lr * Float(step + 1) / Float(warmup + 1) }
        let span = max(1, iterations - warmup)
        let progress = min(1, Float(step - warmup) / Float(span))
        let coefficient = decay == "cosine" ? 0.5 * (1 + cosf(Float.pi * progress)) : 1 - progress
        return minLR + coefficient * (lr - minLR)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
