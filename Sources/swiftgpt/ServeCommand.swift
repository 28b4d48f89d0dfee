import ArgumentParser
import Compute
import Engine
import Foundation
import Hummingbird
import Server
import Training

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a model over an OpenAI-compatible HTTP API, with a web chat page at /.",
        discussion: """
            Endpoints: GET /v1/models, POST /v1/chat/completions, POST /v1/completions (OpenAI's \
            request and response shapes, streaming as Server-Sent Events), GET /health, GET /metrics \
            (Prometheus text) and the chat page at /. Requests are queued and decoded together: up to \
            --max-concurrent sequences share every forward pass (continuous batching); beyond \
            --max-queue waiting requests the server answers 429. A client that disconnects cancels its \
            generation. SIGINT/SIGTERM stop accepting connections, let running generations finish for \
            --shutdown-grace seconds, then cancel them.
            """
    )

    @Option(help: "A run folder (uses best/ then last/) or a checkpoint folder.") var model: String
    @Option(help: "Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface).") var host = "127.0.0.1"
    @Option(help: "Port.") var port = 8080
    @Option(help: "Require 'Authorization: Bearer KEY' on /v1 requests.") var apiKey: String?
    @Option(help: "Sequences decoded together (KV-cache slots).") var maxConcurrent = 16
    @Option(help: "Requests waiting for a slot before the server answers 429.") var maxQueue = 256
    @Option(help: "Largest request body in bytes.") var maxBodyBytes = 1 << 20
    @Option(help: "Largest max_tokens a request may ask for (default: the context length).") var maxTokens: Int?
    @Option(help: "The model id clients use (default: the run folder's name).") var modelName: String?
    @Option(help: "Weights: none (fp32) or int8.") var quantize = "none"
    @Option(help: "KV cache: f32, or f16 (half the memory per slot and half the cache reads).") var kvCache = "f32"
    @Option(help: "Seconds running generations may take to finish on shutdown.") var shutdownGrace = 10.0
    @OptionGroup var device: DeviceOptions

    func run() async throws {
        guard (1...65535).contains(port) else { throw ValidationError("--port must be in 1...65535") }
        guard maxConcurrent >= 1 && maxConcurrent <= 512 else { throw ValidationError("--max-concurrent must be in 1...512") }
        guard maxQueue >= 0, maxBodyBytes >= 1024, shutdownGrace >= 0 else {
            throw ValidationError("--max-queue must be ≥ 0, --max-body-bytes ≥ 1024 and --shutdown-grace ≥ 0")
        }
        if let apiKey, apiKey.isEmpty { throw ValidationError("--api-key must not be empty") }
        guard let format = WeightFormat(rawValue: quantize) else { throw ValidationError("--quantize must be none or int8") }
        let loaded = try Checkpoint.load(model, backend: try device.backend())
        if let maxTokens, maxTokens < 1 || maxTokens > loaded.model.config.contextLength {
            throw ValidationError("--max-tokens must be in 1...\(loaded.model.config.contextLength) (the context length)")
        }
        var config = ServerConfiguration()
        config.host = host
        config.port = port
        config.apiKey = apiKey
        config.maxConcurrent = maxConcurrent
        config.maxQueue = maxQueue
        config.maxBodyBytes = maxBodyBytes
        config.maxTokensLimit = maxTokens
        config.shutdownGraceSeconds = shutdownGrace
        config.modelName = modelName ?? defaultModelName(model)
        let inference = try InferenceModel(model: loaded.model, slots: maxConcurrent, rowsPerPass: 256, weightFormat: format,
                                           kvCache: try parseKVCache(kvCache))
        let state = try ServerState(model: inference, codec: loaded.codec, configuration: config)
        let name = config.modelName, fallback = "\(config.host):\(config.port)"
        let (layers, context) = (loaded.model.config.layers, loaded.model.config.contextLength)
        let slots = maxConcurrent, int8 = format == .int8
        let app = buildApplication(state) { channel in
            let address = channel.localAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? fallback
            print("swiftgpt serve: model '\(name)' (\(layers) layers, context \(context), "
                  + "\(slots) slots\(int8 ? ", int8" : "")) listening on http://\(address)")
            print("  chat page: http://\(address)/   API: http://\(address)/v1   (Ctrl-C stops)")
            fflush(nil)
        }
        try await app.runService()
        print("swiftgpt serve: stopped")
    }

    /// "runs/chat/best" → "chat"; "runs/chat" → "chat".
    func defaultModelName(_ path: String) -> String {
        var url = URL(fileURLWithPath: path).standardizedFileURL
        if ["best", "last"].contains(url.lastPathComponent) { url.deleteLastPathComponent() }
        let name = url.lastPathComponent
        return name.isEmpty || name == "/" ? "swiftgpt" : name
    }
}
