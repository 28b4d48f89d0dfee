import ArgumentParser
import Chat
import Compute
import Engine
import Model
import Training

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Sampling flags shared by generate and chat.
struct SamplingOptions: ParsableArguments {
    @Option(help: "Randomness: 0 = greedy (always the most likely token), 1 = the model's distribution.")
    var temperature: Float = 0.8
    @Option(name: .customLong("top-k"), help: "Keep only the k most likely tokens (0: off).") var topK: Int = 0
    @Option(name: .customLong("top-p"), help: "Nucleus sampling: keep the most likely tokens up to this total probability, in (0, 1].")
    var topP: Float = 1
    @Option(name: .customLong("min-p"), help: "Drop tokens less likely than this fraction of the most likely one, in [0, 1].")
    var minP: Float = 0
    @Option(help: "> 1 discourages tokens already in the prompt or output (Hugging Face definition; 1: off).")
    var repetitionPenalty: Float = 1
    @Option(help: "Subtracted from the logit of every token already generated (OpenAI definition).") var presencePenalty: Float = 0
    @Option(help: "Subtracted once per earlier occurrence in the output (OpenAI definition).") var frequencyPenalty: Float = 0
    @Option(help: "Add a bias to a token's logit, as ID=BIAS (repeatable), e.g. --logit-bias 50256=-100.")
    var logitBias: [String] = []
    @Option(help: "Random seed: same seed and model ⇒ same text (default: a random seed).") var seed: UInt64?
    @Option(help: "Weights for inference: none (fp32) or int8 (per-row absmax; a quarter of the memory traffic).")
    var quantize: String = "none"

    func parameters() throws -> SamplingParameters {
        var bias: [Int32: Float] = [:]
        for entry in logitBias {
            let parts = entry.split(separator: "=")
            guard parts.count == 2, let id = Int32(parts[0]), let b = Float(parts[1]) else {
                throw ValidationError("--logit-bias takes ID=BIAS (e.g. 50256=-100), got '\(entry)'")
            }
            bias[id] = b
        }
        let p = SamplingParameters(temperature: temperature, topK: topK, topP: topP, minP: minP, repetitionPenalty: repetitionPenalty,
                                   presencePenalty: presencePenalty, frequencyPenalty: frequencyPenalty, logitBias: bias, seed: seed)
        do { try p.validate() } catch { throw ValidationError("\(error)") }
        return p
    }

    @Option(help: "KV cache: f32, or f16 (half the cache memory and reads; keys and values rounded to half precision).")
    var kvCache: String = "f32"

    func weightFormat() throws -> WeightFormat {
        guard let f = WeightFormat(rawValue: quantize) else { throw ValidationError("--quantize must be none or int8, got '\(quantize)'") }
        return f
    }

    func cacheFormat() throws -> KVCacheFormat { try parseKVCache(kvCache) }
}

func parseKVCache(_ value: String) throws -> KVCacheFormat {
    guard let f = KVCacheFormat(rawValue: value) else { throw ValidationError("--kv-cache must be f32 or f16, got '\(value)'") }
    return f
}

/// Loads a run or checkpoint folder for generation.
func loadEngine(_ path: String, slots: Int = 1, format: WeightFormat, kvCache: KVCacheFormat = .f32,
                backend: any Backend = CPUBackend()) throws -> (engine: Engine, codec: TextCodec, directory: String) {
    let loaded = try Checkpoint.load(path, backend: backend)
    let inference = try InferenceModel(model: loaded.model, slots: slots, weightFormat: format, kvCache: kvCache)
    return (Engine(model: inference), loaded.codec, loaded.directory)
}

struct GenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Continue a text with a trained model (KV cache, every sampling control, streaming).",
        discussion: """
            The prompt is prefilled in one pass, then tokens are decoded one at a time with a KV cache. \
            Generation stops at --max-tokens, a full context, the end-of-text token or a --stop string \
            (also when it spans tokens; the stop string is not printed). Sampling order: logit bias, \
            penalties, temperature, top-k, top-p, min-p. With --json prints one object: \
            {"text","ids","finish_reason","prompt_tokens","logprobs"}; ids are the completion's token ids.
            """,
        aliases: ["sample"]
    )

    @Option(help: "A run folder (uses best/ then last/) or a checkpoint folder.") var model: String
    @Option(help: "Text to continue (empty: start from the end-of-text token).") var prompt: String = ""
    @Option(help: "Most new tokens.") var maxTokens: Int = 200
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var device: DeviceOptions
    @Option(help: "Stop when this text appears (repeatable).") var stop: [String] = []
    @Option(help: "Report the log-probabilities of this many most likely tokens per step (--json).") var logprobs: Int = 0
    @Flag(help: "Print text as it is generated.") var stream = false
    @Flag(help: "Print one JSON object on the last line.") var json = false

    func run() async throws {
        let params = try sampling.parameters()
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be ≥ 0") }
        guard logprobs >= 0 && logprobs <= 20 else { throw ValidationError("--logprobs must be in 0...20") }
        let (engine, codec, _) = try loadEngine(model, format: try sampling.weightFormat(), kvCache: try sampling.cacheFormat(),
                                                backend: try device.backend())
        let generator = TextGenerator(engine: engine, codec: codec)
        let ids = try generator.encodePrompt(prompt)
        let capacity = engine.model.capacity
        guard ids.count < capacity else {
            throw ValidationError("the prompt is \(ids.count) tokens; the model's context is \(capacity), and at least one new token must fit — shorten the prompt")
        }
        let interrupted = InterruptFlag.install()
        if stream && !json { print(prompt, terminator: ""); fflush(nil) }
        let completion = try generator.generate(
            ids: ids, maxTokens: maxTokens, sampling: params, stop: stop, topLogprobs: logprobs,
            shouldContinue: { !interrupted.isSet },
            onText: { piece in
                if stream && !json { print(piece, terminator: ""); fflush(nil) }
            })
        if json {
            struct Top: Encodable { let id: Int32; let logprob: Float }
            struct Output: Encodable {
                let text: String
                let ids: [Int32]
                let finish_reason: String
                let prompt_tokens: Int
                let logprobs: [Float]
                let top_logprobs: [[Top]]?
            }
            let top = logprobs > 0 ? completion.topLogprobs.map { $0.map { Top(id: $0.id, logprob: $0.logprob) } } : nil
            print(try jsonLine(Output(text: completion.text, ids: completion.ids, finish_reason: completion.finishReason.rawValue,
                                      prompt_tokens: completion.promptTokens, logprobs: completion.logprobs, top_logprobs: top)))
        } else if stream {
            print("")
        } else {
            print(prompt + completion.text)
        }
    }
}

/// Ctrl-C handling for generation: the first Ctrl-C stops the current reply instead of the program.
final class InterruptFlag: @unchecked Sendable {
    nonisolated(unsafe) static var shared = InterruptFlag()
    nonisolated(unsafe) static var raised: sig_atomic_t = 0
    /// While 0, Ctrl-C ends the program (e.g. at the chat prompt); while 1 it only sets the flag.
    nonisolated(unsafe) static var catching: sig_atomic_t = 1

    var isSet: Bool { InterruptFlag.raised != 0 }
    /// Ctrl-C stops the current reply while `body` runs, and leaves the program otherwise.
    func catching<R>(_ body: () throws -> R) rethrows -> R {
        InterruptFlag.raised = 0
        InterruptFlag.catching = 1
        defer { InterruptFlag.catching = 0 }
        return try body()
    }

    private static func onSignal() {
        if catching != 0 {
            raised = 1
        } else {
            _exit(130)
        }
    }

    /// Installs a SIGINT handler that only sets the flag (no SA_RESTART: a blocked read returns).
    static func install() -> InterruptFlag {
        var action = sigaction()
        #if canImport(Glibc)
        action.__sigaction_handler.sa_handler = { _ in InterruptFlag.onSignal() }
        #else
        action.__sigaction_u.__sa_handler = { _ in InterruptFlag.onSignal() }
        #endif
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(SIGINT, &action, nil)
        return shared
    }
}
