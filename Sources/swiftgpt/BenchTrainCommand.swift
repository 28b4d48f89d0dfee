import ArgumentParser
import Compute
import Model

struct BenchTrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Tokens/s, ms/step, GFLOP/s and peak memory of full training steps.",
        discussion: """
            Each step is forward + backward + AdamW (gradient clipping at 1.0) on random tokens, \
            after warm-up steps. Configs: char-baby (vocab 65, 4 layers, 4 heads, width 128, \
            context 64, batch 12), char-small (65, 6/6/384, 256, 64), llama-small (char-small with rope, \
            RMSNorm, SwiGLU 1024, 2 key/value heads, no biases, untied head), gpt2-124m (50257, 12/12/768, \
            1024, 4). GFLOP/s counts 6 FLOPs per weight of every matrix product per token plus \
            12·L·T·C for attention (the nanoGPT/PaLM convention); MFU is against this machine's \
            measured multi-core sgemm rate.
            """
    )

    @Option(help: "Benchmark configuration: char-baby, char-small, llama-small or gpt2-124m.") var config: String = "char-baby"
    @Option(help: "Override the configuration's batch size.") var batch: Int?
    @Option(help: "Timed steps (default: 20, 3 or 2 by config size).") var steps: Int?
    @Option(help: "Untimed warm-up steps.") var warmup: Int = 1
    @OptionGroup var device: DeviceOptions
    @Flag(help: "Print one JSON object on the last line.") var json = false
    @Flag(help: "Also print the time spent in each kind of kernel.") var profile = false

    func run() async throws {
        guard let preset = GPTConfig.preset(config) else {
            throw ValidationError("unknown --config '\(config)'; choose one of \(GPTConfig.presetNames.joined(separator: ", "))")
        }
        let backend = try device.backend()
        let B = batch ?? preset.batchSize
        guard B > 0 else { throw ValidationError("--batch must be positive") }
        let timed = steps ?? (config == "char-baby" ? 20 : config == "char-small" || config == "llama-small" ? 3 : 2)
        guard timed > 0, warmup >= 0 else { throw ValidationError("--steps must be positive and --warmup not negative") }
        let result = try TrainBenchmark.run(name: config, config: preset.config, batchSize: B, steps: timed,
                                            warmup: warmup, profile: profile, backend: backend,
                                            log: json ? nil : { print($0) })
        if json {
            print(try jsonLine(result))
        } else {
            print("\(config): \(fmt(result.tokensPerSec, 0)) tokens/s, \(fmt(result.stepMs)) ms/step, "
                  + "\(fmt(result.gflops)) GFLOP/s (MFU \(fmt(100 * result.mfu))% of \(fmt(result.matmulPeakGflops)) GFLOP/s sgemm), "
                  + "peak RSS \(fmt(result.peakRssMb, 0)) MiB (model arenas \(fmt(result.arenaMb, 0)) MiB)")
        }
    }
}

struct TrainResult: Codable {
    var config: String
    var device: String
    var batch: Int
    var context: Int
    var parameters: Int
    var steps: Int
    var tokensPerSec: Double
    var stepMs: Double
    var stepMsMean: Double
    var gflops: Double
    var flopsPerToken: Double
    var matmulPeakGflops: Double
    var mfu: Double
    var peakRssMb: Double
    var arenaMb: Double
    var threads: Int
    var finalLoss: Double

    enum CodingKeys: String, CodingKey {
        case config, device, batch, context, parameters, steps, gflops, mfu, threads
        case tokensPerSec = "tokens_per_sec"
        case stepMs = "step_ms"
        case stepMsMean = "step_ms_mean"
        case flopsPerToken = "flops_per_token"
        case matmulPeakGflops = "matmul_peak_gflops"
        case peakRssMb = "peak_rss_mb"
        case arenaMb = "arena_mb"
        case finalLoss = "final_loss"
    }
}

enum TrainBenchmark {
    static func run(name: String, config: GPTConfig, batchSize B: Int, steps: Int, warmup: Int, profile: Bool = false,
                    backend: any Backend = CPUBackend(), log: ((String) -> Void)?) throws -> TrainResult {
        let T = config.contextLength
        let profiler = profile ? ProfilingBackend(backend) : nil
        let model = try GPT(config: config, backend: profiler ?? backend)
        model.initialize(seed: 1337)
        try model.prepareForTraining(batchSize: B, sequenceLength: T)
        var rng = SeededRandom(seed: 42)
        let tokens = (0..<(B * T)).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) }
        let targets = (0..<(B * T)).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) }
        let weights = [Float](repeating: 1 / Float(B * T), count: B * T)
        log?("\(name): \(config.parameterCount) parameters, batch \(B)×\(T), \(Parallel.threadCount) threads, "
             + "BLAS \(BLASLibrary.shared.summary)")
        var times: [Double] = []
        var loss: Float = 0
        for step in 1...(warmup + steps) {
            let t0 = Clock.now()
            try model.zeroGradients()
            loss = try tokens.withUnsafeBufferPointer { i in
                try targets.withUnsafeBufferPointer { t in
                    try weights.withUnsafeBufferPointer { w in
                        try model.forward(tokens: i, targets: t, weights: w, batchSize: B, sequenceLength: T)
                    }
                }
            }
            try model.backward()
            try model.update(learningRate: 3e-4, weightDecay: 0.1, gradientClip: 1.0, step: step)
            model.backend.synchronize()
            let dt = Clock.now() - t0
            if step > warmup { times.append(dt) }
            log?("step \(step)\(step <= warmup ? " (warm-up)" : ""): loss \(fmt(Double(loss), 4)), \(fmt(dt * 1000)) ms")
        }
        if let profiler {
            let total = profiler.seconds.values.reduce(0, +)
            print("time per step by kernel (\(steps + warmup) steps; kernels \(fmt(total / Double(steps + warmup) * 1000)) ms of \(fmt(times.reduce(0, +) / Double(times.count) * 1000)) ms):")
            for (k, v) in profiler.seconds.sorted(by: { $0.value > $1.value }) {
                print("  \(k.padding(14)) \(fmt(v / Double(steps + warmup) * 1000, 2)) ms  (\(profiler.calls[k]! / (steps + warmup)) calls)")
            }
        }
        let sorted = times.sorted()
        let median = sorted[sorted.count / 2]
        let mean = times.reduce(0, +) / Double(times.count)
        let flopsPerToken = GPTLayout.trainingFlopsPerToken(config, T: T)
        let tokensPerSec = Double(B * T) / median
        let gflops = flopsPerToken * tokensPerSec / 1e9
        let peak = try MatmulBenchmark.run(size: 1024, repeats: 3).gflops
        return TrainResult(
            config: name, device: backend.name, batch: B, context: T, parameters: config.parameterCount, steps: steps,
            tokensPerSec: tokensPerSec, stepMs: median * 1000, stepMsMean: mean * 1000, gflops: gflops,
            flopsPerToken: flopsPerToken, matmulPeakGflops: peak, mfu: gflops / peak,
            peakRssMb: peakRSSMegabytes(), arenaMb: Double(model.allocatedFloats * 4) / 1_048_576,
            threads: Parallel.threadCount, finalLoss: Double(loss))
    }
}
