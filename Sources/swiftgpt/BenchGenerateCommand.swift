import ArgumentParser
import Compute
import Engine
import Model

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct BenchGenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Prefill and decode tokens/s of the inference engine (KV cache), fp32 or int8.",
        discussion: """
            A randomly initialised model of the chosen configuration prefills --batch prompts of \
            --prompt-tokens random tokens in one pass, then decodes --new-tokens tokens for each \
            (greedy, no early stop), one token per sequence per step. Prefill tokens/s counts prompt \
            tokens; decode tokens/s counts new tokens of all sequences together. The median of \
            --repeats runs is reported. Decode reads every weight once per step, so it is bound by \
            memory bandwidth: the command also measures this machine's read bandwidth and reports \
            the fraction of it that decoding reaches. Compare with \
            Tools/reference/bench_generate_torch.py (Hugging Face generate, KV cache on).
            """
    )

    @Option(help: "Benchmark configuration: char-baby, char-small or gpt2-124m.") var config: String = "gpt2-124m"
    @Option(help: "Sequences generated together.") var batch: Int = 1
    @Option(help: "Weights: none (fp32) or int8 (per-row absmax).") var quantize: String = "none"
    @Option(help: "KV cache: f32 or f16.") var kvCache: String = "f32"
    @Option(help: "Prompt length in tokens.") var promptTokens: Int = 128
    @Option(help: "New tokens per sequence.") var newTokens: Int = 64
    @Option(help: "Timed runs; the median is reported.") var repeats: Int = 3
    @OptionGroup var device: DeviceOptions
    @Flag(help: "Print one JSON object on the last line.") var json = false
    @Flag(help: "Also print the time spent in each kind of kernel.") var profile = false

    func run() async throws {
        guard let preset = GPTConfig.preset(config) else {
            throw ValidationError("unknown --config '\(config)'; choose one of \(GPTConfig.presetNames.joined(separator: ", "))")
        }
        let backend = try device.backend()
        guard let format = WeightFormat(rawValue: quantize) else {
            throw ValidationError("--quantize must be none or int8, got '\(quantize)'")
        }
        let T = preset.config.contextLength
        guard batch >= 1, promptTokens >= 1, newTokens >= 1, repeats >= 1 else {
            throw ValidationError("--batch, --prompt-tokens, --new-tokens and --repeats must be positive")
        }
        guard promptTokens + newTokens <= T else {
            throw ValidationError("--prompt-tokens + --new-tokens must fit the context of \(T)")
        }
        let profiler = profile ? ProfilingBackend(backend) : nil
        let model = try GPT(config: preset.config, backend: profiler ?? backend)
        model.initialize(seed: 1)
        let inference = try InferenceModel(model: model, slots: batch, capacity: promptTokens + newTokens,
                                           rowsPerPass: max(256, promptTokens), weightFormat: format,
                                           kvCache: try parseKVCache(kvCache))
        let engine = Engine(model: inference)
        var rng = SeededRandom(seed: 7)
        let prompts = (0..<batch).map { _ in
            (0..<promptTokens).map { _ in Int32(rng.next() % UInt64(preset.config.vocabSize)) }
        }
        let requests = prompts.map { GenerationRequest(prompt: $0, maxTokens: newTokens, sampling: .greedy) }
        var prefill: [Double] = [], decode: [Double] = []
        for run in 0...repeats {  // run 0 warms up
            let generation = try engine.start(requests)
            let t0 = MonotonicClock.now()
            _ = try generation.step()
            let t1 = MonotonicClock.now()
            var steps = 0
            while !generation.isFinished {
                _ = try generation.step()
                steps += 1
            }
            let t2 = MonotonicClock.now()
            if run > 0 {
                prefill.append(Double(batch * promptTokens) / (t1 - t0))
                decode.append(Double(batch * steps) / (t2 - t1))
            }
            engine.forgetCache()  // the next run prefills its prompts again
        }
        if let profiler, !json {
            let total = profiler.seconds.values.reduce(0, +)
            for (kernel, seconds) in profiler.seconds.sorted(by: { $0.value > $1.value }) {
                print("  \(kernel.padding(18)) \(fmt(1000 * seconds / Double(repeats + 1), 2)) ms/run  "
                      + "\(fmt(100 * seconds / total))%  (\(profiler.calls[kernel]!) calls)")
            }
        }
        let bandwidth = measureReadBandwidth()
        let decodeRate = median(decode)
        let bytesPerStep = Double(inference.weightBytesPerStep)
        let achieved = bytesPerStep * decodeRate / Double(batch) / 1e9
        let result = GenerateResult(
            config: config, batch: batch, quantize: quantize, kvCache: kvCache, promptTokens: promptTokens, newTokens: newTokens,
            prefillTokensPerSec: median(prefill), decodeTokensPerSec: decodeRate,
            weightMbPerStep: bytesPerStep / 1e6, achievedGbs: achieved, bandwidthGbs: bandwidth,
            bandwidthFraction: achieved / bandwidth, threads: Parallel.threadCount)
        if json {
            print(try jsonLine(result))
        } else {
            print("\(config) batch \(batch) \(format == .int8 ? "int8" : "fp32")\(kvCache == "f16" ? ", f16 KV cache" : ""): prefill \(fmt(result.prefillTokensPerSec, 0)) tokens/s, "
                  + "decode \(fmt(decodeRate, 1)) tokens/s (\(fmt(decodeRate / Double(batch), 1)) per sequence); "
                  + "weights \(fmt(bytesPerStep / 1e6, 0)) MB/step → \(fmt(achieved)) GB/s of \(fmt(bandwidth)) GB/s measured "
                  + "(\(fmt(100 * result.bandwidthFraction, 0))%)")
        }
    }
}

struct GenerateResult: Codable {
    var config: String
    var batch: Int
    var quantize: String
    var kvCache: String
    var promptTokens: Int
    var newTokens: Int
    var prefillTokensPerSec: Double
    var decodeTokensPerSec: Double
    var weightMbPerStep: Double
    var achievedGbs: Double
    var bandwidthGbs: Double
    var bandwidthFraction: Double
    var threads: Int

    enum CodingKeys: String, CodingKey {
        case config, batch, quantize, threads
        case kvCache = "kv_cache"
        case promptTokens = "prompt_tokens"
        case newTokens = "new_tokens"
        case prefillTokensPerSec = "prefill_tokens_per_sec"
        case decodeTokensPerSec = "decode_tokens_per_sec"
        case weightMbPerStep = "weight_mb_per_step"
        case achievedGbs = "achieved_gb_per_sec"
        case bandwidthGbs = "bandwidth_gb_per_sec"
        case bandwidthFraction = "bandwidth_fraction"
    }
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.isEmpty ? .nan : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Read bandwidth of this machine on all cores: the best of five passes summing a 512 MiB buffer.
func measureReadBandwidth() -> Double {
    let count = 128 << 20
    let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
    defer { p.deallocate() }
    p.initialize(repeating: 1, count: count)
    let chunks = 64
    let sums = UnsafeMutablePointer<Float>.allocate(capacity: chunks)
    defer { sums.deallocate() }
    var best = 0.0
    for _ in 0..<5 {
        let t0 = MonotonicClock.now()
        Parallel.forEach(chunks, (p, sums, count, chunks)) { ctx, c in
            let (p, sums, count, chunks) = ctx
            let lo = count * c / chunks, hi = count * (c + 1) / chunks
            var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
            var i = lo
            while i + 32 <= hi {
                let r = UnsafeRawPointer(p + i)
                a0 += r.loadUnaligned(as: SIMD8<Float>.self)
                a1 += r.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
                a2 += r.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self)
                a3 += r.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self)
                i += 32
            }
            sums[c] = (a0 + a1 + a2 + a3).sum()
        }
        let seconds = MonotonicClock.now() - t0
        best = max(best, Double(count * 4) / seconds / 1e9)
    }
    return best
}
