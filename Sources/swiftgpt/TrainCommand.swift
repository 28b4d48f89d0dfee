import ArgumentParser
import Compute
import Model
import Training

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

struct TrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Pre-train a GPT on prepared token shards.",
        discussion: """
            Every hyper-parameter can be a flag or a key of --config FILE.json (keys: arch, layers, heads, \
            kv_heads, width, ffn_width, rope_theta, norm_epsilon, bias, tie_embeddings, context, dropout, batch_size, grad_accum, iterations, lr, min_lr, warmup, decay, \
            weight_decay, beta1, beta2, grad_clip, seed, eval_every, eval_batches, checkpoint_every, \
            sample_tokens); flags override the file. Defaults are nanoGPT's CPU shakespeare_char run \
            (4 layers, 4 heads, width 128, context 64, batch 12, 2000 iterations, lr 1e-3 → 1e-4 cosine \
            after 100 warm-up steps, betas 0.9/0.99, weight decay 0.1, clip 1.0). Writes RUN/metrics.jsonl, \
            RUN/loss.svg, RUN/last/ and RUN/best/ checkpoints (model.safetensors, config.json, \
            tokenizer.json, optimizer.safetensors, state.json). --resume continues RUN/last bit for bit.
            """
    )

    @Option(name: .long, help: "Prepared data folder (from `swiftgpt prepare`).") var data: String
    @Option(name: .long, help: "Run folder for checkpoints and metrics.") var out: String
    @Option(name: .long, help: "JSON file of hyper-parameters.") var config: String?
    @Option(name: .long, help: "gpt2 (learned positions, layer norm, GELU, biases, tied head) or llama (rotary positions, RMSNorm, SwiGLU, no biases, untied head).")
    var arch: String?
    @Option(name: .long, help: "Key/value heads (grouped-query attention; must divide --heads; default: --heads).") var kvHeads: Int?
    @Option(name: .long, help: "Feed-forward hidden width (default: 4 × width for gpt2, 8/3 × width rounded up to 32 for llama).")
    var ffnWidth: Int?
    @Option(name: .long, help: "Base of the rotary frequencies (llama; default 10000).") var ropeTheta: Float?
    @Option(name: .long, help: "ε of the layer norm / RMSNorm (default 1e-5).") var normEpsilon: Float?
    @Flag(name: .long, inversion: .prefixedNo, help: "Biases on the linear layers (default: gpt2 yes, llama no).") var bias: Bool?
    @Flag(name: .long, inversion: .prefixedNo, help: "Output head shares the token embedding matrix (default: gpt2 yes, llama no).")
    var tieEmbeddings: Bool?
    @Option(name: .long) var layers: Int?
    @Option(name: .long) var heads: Int?
    @Option(name: .long) var width: Int?
    @Option(name: .long) var context: Int?
    @Option(name: .long) var batchSize: Int?
    @Option(name: .long) var gradAccum: Int?
    @Option(name: .long) var iterations: Int?
    @Option(name: .long) var lr: Float?
    @Option(name: .long) var minLr: Float?
    @Option(name: .long) var warmup: Int?
    @Option(name: .long, help: "cosine or linear") var decay: String?
    @Option(name: .long) var weightDecay: Float?
    @Option(name: .long) var beta1: Float?
    @Option(name: .long) var beta2: Float?
    @Option(name: .long, help: "Clip gradients to this global norm (0: off).") var gradClip: Float?
    @Option(name: .long) var dropout: Float?
    @Option(name: .long) var seed: UInt64?
    @Option(name: .long, help: "Evaluate (and checkpoint) every N steps.") var evalEvery: Int?
    @Option(name: .long, help: "Batches per evaluation.") var evalBatches: Int?
    @Option(name: .long, help: "Also checkpoint every N steps (0: only at evaluations and the end).") var checkpointEvery: Int?
    @Flag(name: .long, help: "Keep the weights of every checkpoint as RUN/step-NNNNNN/ (e.g. to average them with merge).")
    var keepCheckpoints = false
    @Option(name: .long, help: "Tokens sampled at each evaluation (0: none).") var sampleTokens: Int?
    @Option(name: .long, help: "Stop after this many seconds of training (then evaluate and checkpoint).") var maxSeconds: Double?
    @Flag(name: .long, help: "Continue RUN/last.") var resume = false
    @Option(name: .long, help: "Start from another run's weights.") var initFrom: String?
    @OptionGroup var device: DeviceOptions

    func run() async throws {
        let backend = try device.backend()
        var c = TrainConfig()
        if let config {
            guard let data = try? Data(contentsOf: URL(fileURLWithPath: config)) else { throw ValidationError("cannot read --config \(config)") }
            do { c = try JSONDecoder().decode(TrainConfig.self, from: data) } catch {
                throw ValidationError("--config \(config) is not a valid config file: \(error)")
            }
        }
        if let initFrom {
            // Start from the source model's architecture and sizes; flags can still shorten the context.
            let source = try Checkpoint.resolve(initFrom)
            guard let data = FileManager.default.contents(atPath: source + "/config.json"),
                  let model = try? JSONDecoder().decode(GPTConfig.self, from: data) else {
                throw ValidationError("--init-from \(initFrom): \(source)/config.json is missing or malformed")
            }
            c.adoptShape(of: model)
        }
        if let arch { c.arch = arch }
        if let kvHeads { c.kvHeads = kvHeads }
        if let ffnWidth { c.ffnWidth = ffnWidth }
        if let ropeTheta { c.ropeTheta = ropeTheta }
        if let normEpsilon { c.normEpsilon = normEpsilon }
        if let bias { c.bias = bias }
        if let tieEmbeddings { c.tiedEmbeddings = tieEmbeddings }
        if let layers { c.layers = layers }
        if let heads { c.heads = heads }
        if let width { c.width = width }
        if let context { c.context = context }
        if let batchSize { c.batchSize = batchSize }
        if let gradAccum { c.gradAccum = gradAccum }
        if let iterations { c.iterations = iterations }
        if let lr { c.lr = lr }
        if let minLr { c.minLR = minLr }
        if let warmup { c.warmup = warmup }
        if let decay { c.decay = decay }
        if let weightDecay { c.weightDecay = weightDecay }
        if let beta1 { c.beta1 = beta1 }
        if let beta2 { c.beta2 = beta2 }
        if let gradClip { c.gradClip = gradClip }
        if let dropout { c.dropout = dropout }
        if let seed { c.seed = seed }
        if let evalEvery { c.evalEvery = evalEvery }
        if let evalBatches { c.evalBatches = evalBatches }
        if let checkpointEvery { c.checkpointEvery = checkpointEvery }
        if keepCheckpoints { c.keepCheckpoints = true }
        if let sampleTokens { c.sampleTokens = sampleTokens }
        if let maxSeconds { c.maxSeconds = maxSeconds }
        let trainer = Trainer(config: c, dataDirectory: data, runDirectory: out)
        trainer.resume = resume
        trainer.initFrom = initFrom
        trainer.backend = backend
        let summary = try trainer.run()
        print("trained \(summary.steps) steps in \(fmt(summary.seconds)) s (\(fmt(summary.tokensPerSecond, 0)) tok/s); "
              + "final train loss \(fmt(summary.finalTrainLoss, 4)), val loss \(summary.finalValLoss.map { fmt($0, 4) } ?? "-"), "
              + "best val \(summary.bestValLoss.map { fmt($0, 4) } ?? "-"); checkpoints in \(out)")
    }
}
