// `swiftgpt serve`: OpenAI-compatible HTTP API and the web chat page, on Hummingbird 2.
//
// Requests are validated here (OpenAI-shaped errors), turned into token ids with the tokenizer's
// chat template, and handed to the Engine's BatchScheduler, which decodes every running request in
// the same forward passes (continuous batching). Text comes back through a UTF-8-safe detokenizer
// and the stop-string matcher; streams are Server-Sent Events ending in `data: [DONE]`.

import Chat
import Engine
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import Tokenizer
import Training

public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// When set, every /v1 request needs `Authorization: Bearer <key>`.
    public var apiKey: String? = nil
    /// Sequences decoded together (KV-cache slots).
    public var maxConcurrent = 16
    /// Requests waiting for a slot beyond this are refused with 429.
    public var maxQueue = 256
    /// Largest request body in bytes (413 above).
    public var maxBodyBytes = 1 << 20
    /// Largest max_tokens a request may ask for (default: the context length).
    public var maxTokensLimit: Int? = nil
    /// The name /v1/models reports and requests must use.
    public var modelName = "swiftgpt"
    /// On shutdown, running generations get this long to finish before they are cancelled.
    public var shutdownGraceSeconds: Double = 10
    public init() {}
}

/// What the routes share: the model, its tokenizer, the scheduler and the counters.
public final class ServerState: Sendable {
    public let configuration: ServerConfiguration
    public let codec: TextCodec
    let format: ChatFormat?
    public let scheduler: BatchScheduler
    let metrics = ServerMetrics()
    let web: [String: (body: ByteBuffer, type: String)]
    let created = Int(Date().timeIntervalSince1970)
    let contextLength: Int
    /// Chat replies end at <|end|>, and at any other chat token (a model starting a new turn).
    let chatStopTokens: Set<Int32>
    /// Text completions end at <|endoftext|>.
    let textStopTokens: Set<Int32>

    public init(model: InferenceModel, codec: TextCodec, configuration: ServerConfiguration) throws {
        self.configuration = configuration
        self.codec = codec
        if case .bpe(let bpe) = codec { format = try? ChatFormat(bpe) } else { format = nil }
        scheduler = BatchScheduler(model: model, maxQueue: configuration.maxQueue)
        contextLength = model.capacity
        var text: Set<Int32> = []
        if let eot = codec.endOfText { text.insert(eot) }
        var chat = text
        if case .bpe(let bpe) = codec, format != nil {
            for name in ChatTokens.all { if let id = bpe.specialTokens[name] { chat.insert(id) } }
        }
        textStopTokens = text
        chatStopTokens = chat
        web = try Self.loadWebFiles()
    }

    /// The chat page, read once from the package resources into memory: only these exact paths are
    /// served, so no request path can reach the file system.
    static func loadWebFiles() throws -> [String: (body: ByteBuffer, type: String)] {
        let files = [("index.html", "text/html; charset=utf-8"), ("app.js", "text/javascript; charset=utf-8"),
                     ("style.css", "text/css; charset=utf-8")]
        var out: [String: (ByteBuffer, String)] = [:]
        for (name, type) in files {
            let parts = name.split(separator: ".")
            guard let url = Bundle.module.url(forResource: String(parts[0]), withExtension: String(parts[1]), subdirectory: "Web"),
                  let data = FileManager.default.contents(atPath: url.path) else { continue }
            out["/" + name] = (ByteBuffer(bytes: data), type)
        }
        if let index = out["/index.html"] { out["/"] = index }
        return out
    }
}

// MARK: Metrics

/// Counters for GET /metrics (Prometheus text format 0.0.4).
final class ServerMetrics: Sendable {
    struct State {
        var requests: [String: Int] = [:]  // "endpoint|status" → count
        var latency = Histogram(bounds: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60])
        var firstToken = Histogram(bounds: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
        var inFlight = 0
    }
    struct Histogram {
        let bounds: [Double]
        var counts: [Int]
        var sum = 0.0
        var count = 0
        init(bounds: [Double]) { self.bounds = bounds; counts = [Int](repeating: 0, count: bounds.count) }
        mutating func observe(_ v: Double) {
            for (i, b) in bounds.enumerated() where v <= b { counts[i] += 1 }
            sum += v
            count += 1
        }
        func render(_ name: String, help: String) -> String {
            var s = "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
            for (b, c) in zip(bounds, counts) { s += "\(name)_bucket{le=\"\(b)\"} \(c)\n" }
            s += "\(name)_bucket{le=\"+Inf\"} \(count)\n\(name)_sum \(sum)\n\(name)_count \(count)\n"
            return s
        }
    }
    let state = Mutex(State())

    func record(endpoint: String, status: Int, seconds: Double?) {
        state.withLock {
            $0.requests["\(endpoint)|\(status)", default: 0] += 1
            if let seconds { $0.latency.observe(seconds) }
        }
    }
    func firstToken(_ seconds: Double) { state.withLock { $0.firstToken.observe(seconds) } }
    func enter() { state.withLock { $0.inFlight += 1 } }
    func leave() { state.withLock { $0.inFlight -= 1 } }

    func render(_ s: SchedulerStatistics) -> String {
        state.withLock { st in
            var out = "# HELP swiftgpt_requests_total HTTP requests by endpoint and status.\n# TYPE swiftgpt_requests_total counter\n"
            for (key, count) in st.requests.sorted(by: { $0.key < $1.key }) {
                let parts = key.split(separator: "|")
                out += "swiftgpt_requests_total{endpoint=\"\(parts[0])\",status=\"\(parts[1])\"} \(count)\n"
            }
            out += """
                # HELP swiftgpt_requests_in_flight Generation requests being answered now.
                # TYPE swiftgpt_requests_in_flight gauge
                swiftgpt_requests_in_flight \(st.inFlight)
                # HELP swiftgpt_queue_length Requests waiting for a free batch slot.
                # TYPE swiftgpt_queue_length gauge
                swiftgpt_queue_length \(s.queued)
                # HELP swiftgpt_running_sequences Sequences in the running batch.
                # TYPE swiftgpt_running_sequences gauge
                swiftgpt_running_sequences \(s.running)
                # HELP swiftgpt_prompt_tokens_total Prompt tokens prefilled.
                # TYPE swiftgpt_prompt_tokens_total counter
                swiftgpt_prompt_tokens_total \(s.promptTokens)
                # HELP swiftgpt_generated_tokens_total Tokens generated.
                # TYPE swiftgpt_generated_tokens_total counter
                swiftgpt_generated_tokens_total \(s.generatedTokens)
                # HELP swiftgpt_forward_passes_total Batched forward passes of the model.
                # TYPE swiftgpt_forward_passes_total counter
                swiftgpt_forward_passes_total \(s.forwardPasses)
                # HELP swiftgpt_requests_cancelled_total Generations cancelled (client gone or shutdown).
                # TYPE swiftgpt_requests_cancelled_total counter
                swiftgpt_requests_cancelled_total \(s.requestsCancelled)

                """
            out += st.latency.render("swiftgpt_request_duration_seconds", help: "Time to answer a generation request.")
            out += st.firstToken.render("swiftgpt_time_to_first_token_seconds", help: "Time from request to the first generated token.")
            return out
        }
    }
}

// MARK: Application

/// Ends running generations after the grace period once a graceful shutdown begins.
struct SchedulerService: Service {
    let state: ServerState
    func run() async throws {
        try? await gracefulShutdown()
        let grace = state.configuration.shutdownGraceSeconds
        let deadline = ContinuousClock.now + .milliseconds(Int(grace * 1000))
        while ContinuousClock.now < deadline {
            let s = state.scheduler.statistics
            if s.running == 0 && s.queued == 0 { break }
            try? await Task.sleep(for: .milliseconds(50))
        }
        state.scheduler.shutdown()
    }
}

/// The router with every endpoint (what the tests drive).
public func buildRouter(_ state: ServerState) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: OpenAIErrorMiddleware(state: state))
    let api = OpenAIRoutes(state: state)
    router.get("/health") { _, _ -> Response in
        jsonResponse(["status": "ok", "model": state.configuration.modelName])
    }
    router.get("/metrics") { _, _ -> Response in
        Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                 body: .init(byteBuffer: ByteBuffer(string: state.metrics.render(state.scheduler.statistics))))
    }
    router.get("/v1/models") { request, _ -> Response in
        try api.authorize(request)
        return try encodedResponse(ModelList(data: [ModelEntry(id: state.configuration.modelName, created: state.created,
                                                               context_length: state.contextLength)]))
    }
    router.get("/v1/models/{id}") { request, context -> Response in
        try api.authorize(request)
        let id = context.parameters.get("id") ?? ""
        guard id == state.configuration.modelName else { throw api.unknownModel(id) }
        return try encodedResponse(ModelEntry(id: id, created: state.created, context_length: state.contextLength))
    }
    router.post("/v1/chat/completions") { request, context -> Response in
        try await api.chatCompletions(request, context: context)
    }
    router.post("/v1/completions") { request, context -> Response in
        try await api.completions(request, context: context)
    }
    for path in ["/", "/index.html", "/app.js", "/style.css"] {
        router.get(RouterPath(path)) { _, _ -> Response in
            guard let file = state.web[path] else { throw APIError(status: 404, message: "the chat page is not installed", type: "not_found", param: nil, code: nil) }
            return Response(status: .ok, headers: [.contentType: file.type, .cacheControl: "no-cache",
                                                   .init("X-Content-Type-Options")!: "nosniff"],
                            body: .init(byteBuffer: file.body))
        }
    }
    return router
}

/// The whole server: router, HTTP/1.1 on the configured address, the scheduler's shutdown service.
public func buildApplication(_ state: ServerState, logger: Logger? = nil,
                             onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) -> some ApplicationProtocol {
    var log = logger ?? Logger(label: "swiftgpt.serve")
    if logger == nil { log.logLevel = .notice }
    return Application(router: buildRouter(state),
                       configuration: .init(address: .hostname(state.configuration.host, port: state.configuration.port), serverName: "swiftgpt"),
                       services: [SchedulerService(state: state)], onServerRunning: onServerRunning, logger: log)
}

// MARK: Errors

/// Turns every error (ours, Hummingbird's 404/413, decoding failures) into OpenAI's JSON error shape.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let state: ServerState
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let endpoint = request.uri.path.hasPrefix("/v1/") ? request.uri.path : (request.uri.path == "/metrics" || request.uri.path == "/health" ? request.uri.path : "other")
        do {
            let response = try await next(request, context)
            if endpoint.hasPrefix("/v1/c") == false { state.metrics.record(endpoint: endpoint, status: Int(response.status.code), seconds: nil) }
            return response
        } catch {
            let api = apiError(for: error, path: request.uri.path)
            state.metrics.record(endpoint: endpoint.hasPrefix("/v1/") && api.status == 404 ? "other" : endpoint, status: api.status, seconds: nil)
            return errorResponse(api)
        }
    }

    func apiError(for error: Error, path: String) -> APIError {
        if let e = error as? APIError { return e }
        if let e = error as? HTTPResponseError {
            switch e.status {
            case .notFound: return APIError(status: 404, message: "no such endpoint: \(path)", type: "invalid_request_error", param: nil, code: "not_found")
            case .contentTooLarge:
                return APIError(status: 413, message: "the request body is larger than the server's limit of \(state.configuration.maxBodyBytes) bytes",
                                type: "invalid_request_error", param: nil, code: "request_too_large")
            case .methodNotAllowed: return APIError(status: 405, message: "method not allowed for \(path)", type: "invalid_request_error", param: nil, code: nil)
            default: return APIError(status: Int(e.status.code), message: "\(e)", type: "invalid_request_error", param: nil, code: nil)
            }
        }
        return APIError(status: 500, message: "internal error: \(error)", type: "server_error", param: nil, code: nil)
    }
}

func errorResponse(_ e: APIError) -> Response {
    var headers: HTTPFields = [.contentType: "application/json"]
    if e.status == 429 || e.status == 503 { headers[.retryAfter] = "1" }
    // The unread rest of a too-large body would otherwise be left on the connection.
    if e.status == 413 { headers[.connection] = "close" }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.withoutEscapingSlashes]
    let body = (try? encoder.encode(e)) ?? Data("{\"error\":{\"message\":\"error\"}}".utf8)
    return Response(status: .init(code: e.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
}

func encodedResponse(_ value: some Encodable) throws -> Response {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.withoutEscapingSlashes]
    return Response(status: .ok, headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
}

func jsonResponse(_ value: [String: String]) -> Response {
    (try? encodedResponse(value)) ?? Response(status: .ok)
}
