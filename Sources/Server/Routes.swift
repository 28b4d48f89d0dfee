// The two generation endpoints: request validation, prompt rendering, and the answer either as one
// JSON object or as a stream of Server-Sent Events.

import Chat
import Engine
import Foundation
import Hummingbird
import NIOCore
import Tokenizer
import Training

/// The text and log-probabilities of one choice (one sample) as tokens arrive.
struct ChoiceOutput {
    var detokenizer: TextStream
    var matcher: StopMatcher
    var text = ""
    var tokens = 0
    var finish: FinishReason? = nil
    var logprobs: [LogprobEntry] = []
    /// A stop string matched: later tokens of this sample are ignored.
    var stopped = false

    init(codec: TextCodec, stops: [String]) {
        detokenizer = TextStream(codec: codec)
        matcher = StopMatcher(stops)
    }
}

/// What a request asked for, validated and ready for the scheduler.
struct GenerationPlan {
    var request: GenerationRequest
    var stops: [String]
    var stream: Bool
    var includeUsage: Bool
    var logprobs: Bool
    var topLogprobs: Int
}

struct OpenAIRoutes: Sendable {
    let state: ServerState

    // MARK: Request checks

    func authorize(_ request: Request) throws {
        guard let key = state.configuration.apiKey else { return }
        guard request.headers[.authorization] == "Bearer \(key)" else {
            throw APIError(status: 401, message: "Incorrect or missing API key. Send the header 'Authorization: Bearer <key>' with the key the server was started with.",
                           type: "invalid_request_error", param: nil, code: "invalid_api_key")
        }
    }

    func unknownModel(_ id: String) -> APIError {
        APIError(status: 404, message: "The model '\(id)' does not exist. This server serves '\(state.configuration.modelName)' (see GET /v1/models).",
                 type: "invalid_request_error", param: "model", code: "model_not_found")
    }

    func decodeBody<T: Decodable>(_ request: Request, as type: T.Type) async throws -> T {
        var request = request
        // Refuse a declared length over the limit at once, without waiting for (or reading) the body.
        if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared > state.configuration.maxBodyBytes {
            throw NIOTooManyBytesError(maxBytes: state.configuration.maxBodyBytes)
        }
        let buffer = try await request.collectBody(upTo: state.configuration.maxBodyBytes)
        let bytes = Array(buffer.readableBytesView)
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw APIError.invalid("The request body is not valid UTF-8.")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw Self.describe(error)
        }
    }

    static func describe(_ error: DecodingError) -> APIError {
        func path(_ keys: [CodingKey]) -> String {
            var out = ""
            for k in keys {
                if let i = k.intValue { out += "[\(i)]" } else { out += (out.isEmpty ? "" : ".") + k.stringValue }
            }
            return out
        }
        switch error {
        case .keyNotFound(let key, let c):
            let p = path(c.codingPath + [key])
            return .invalid("Missing required parameter: '\(p)'.", param: p)
        case .typeMismatch(let type, let c), .valueNotFound(let type, let c):
            let p = path(c.codingPath)
            let expected = type == String.self ? "a string" : type == Bool.self ? "a boolean" : (type == Int.self || type == Int64.self) ? "an integer"
                : type == Double.self ? "a number" : "a different type"
            return .invalid("Invalid type for '\(p)': expected \(expected).", param: p)
        case .dataCorrupted(let c):
            if c.codingPath.isEmpty { return .invalid("The request body is not valid JSON: \(c.underlyingError.map { "\($0)" } ?? c.debugDescription)") }
            let p = path(c.codingPath)
            return .invalid("Invalid value for '\(p)': \(c.debugDescription)", param: p)
        @unknown default:
            return .invalid("The request body could not be read: \(error)")
        }
    }

    /// Sampling fields → engine settings, with OpenAI's ranges.
    func plan(_ f: SamplingFields, prompt: [Int32], logprobs: Bool, topLogprobs: Int, stopTokens: Set<Int32>) throws -> GenerationPlan {
        var s = SamplingParameters()
        func range(_ value: Double?, _ name: String, _ lo: Double, _ hi: Double, openLow: Bool = false) throws -> Double? {
            guard let value else { return nil }
            guard value.isFinite, openLow ? value > lo : value >= lo, value <= hi else {
                throw APIError.invalid("'\(name)' must be \(openLow ? "greater than" : "at least") \(lo) and at most \(hi); got \(value).", param: name)
            }
            return value
        }
        if let t = try range(f.temperature, "temperature", 0, 2) { s.temperature = Float(t) }
        if let p = try range(f.top_p, "top_p", 0, 1, openLow: true) { s.topP = Float(p) }
        if let m = try range(f.min_p, "min_p", 0, 1) { s.minP = Float(m) }
        if let r = try range(f.repetition_penalty, "repetition_penalty", 0, 10, openLow: true) { s.repetitionPenalty = Float(r) }
        if let p = try range(f.presence_penalty, "presence_penalty", -2, 2) { s.presencePenalty = Float(p) }
        if let p = try range(f.frequency_penalty, "frequency_penalty", -2, 2) { s.frequencyPenalty = Float(p) }
        if let k = f.top_k {
            guard k >= 0 else { throw APIError.invalid("'top_k' must be ≥ 0 (0 = off); got \(k).", param: "top_k") }
            s.topK = k
        }
        if let seed = f.seed { s.seed = UInt64(bitPattern: seed) }
        let V = state.scheduler.model.config.vocabSize
        for (key, bias) in f.logit_bias ?? [:] {
            guard let id = Int32(key), id >= 0, Int(id) < V else {
                throw APIError.invalid("logit_bias keys must be token ids in 0..<\(V); got '\(key)'.", param: "logit_bias")
            }
            guard bias.isFinite, bias >= -100, bias <= 100 else {
                throw APIError.invalid("logit_bias values must be between -100 and 100; got \(bias).", param: "logit_bias")
            }
            s.logitBias[id] = Float(bias)
        }
        let n = f.n ?? 1
        let slots = state.scheduler.model.slotCount
        guard n >= 1 && n <= slots else {
            throw APIError.invalid("'n' must be between 1 and \(slots) (the server's --max-concurrent); got \(n).", param: "n")
        }
        let stops = f.stop?.values ?? []
        guard stops.count <= 4 else { throw APIError.invalid("'stop' takes at most 4 sequences; got \(stops.count).", param: "stop") }
        guard !stops.contains(where: \.isEmpty) else { throw APIError.invalid("'stop' sequences must not be empty.", param: "stop") }
        guard topLogprobs >= 0 && topLogprobs <= 20 else {
            throw APIError.invalid("'top_logprobs' must be between 0 and 20; got \(topLogprobs).", param: "top_logprobs")
        }
        let context = state.contextLength
        guard !prompt.isEmpty else { throw APIError.invalid("The prompt is empty.", param: "messages") }
        guard prompt.count < context else {
            throw APIError.invalid("This model's maximum context length is \(context) tokens. However, your prompt is \(prompt.count) tokens. "
                                   + "Shorten the messages (or start a new conversation) and try again.",
                                   param: "messages", code: "context_length_exceeded")
        }
        let limit = state.configuration.maxTokensLimit ?? context
        let asked = f.max_completion_tokens ?? f.max_tokens
        if let asked, asked < 1 || asked > limit {
            throw APIError.invalid("'max_tokens' must be between 1 and \(limit); got \(asked).",
                                   param: f.max_completion_tokens != nil ? "max_completion_tokens" : "max_tokens")
        }
        let maxTokens = min(asked ?? limit, context - prompt.count)
        let request = GenerationRequest(prompt: prompt, maxTokens: maxTokens, sampling: s, stopTokens: stopTokens, samples: n,
                                        topLogprobs: logprobs ? topLogprobs : 0)
        do { try state.scheduler.validate(request) } catch let e as EngineError {
            throw APIError.invalid("\(e)")
        }
        return GenerationPlan(request: request, stops: stops, stream: f.stream ?? false,
                              includeUsage: f.stream_options?.include_usage ?? false, logprobs: logprobs, topLogprobs: topLogprobs)
    }

    func submit(_ plan: GenerationPlan) throws -> BatchScheduler.Submission {
        do {
            return try state.scheduler.submitWithHandle(plan.request)
        } catch SchedulerError.queueFull(let limit) {
            throw APIError(status: 429, message: "The server is at capacity (\(limit) requests waiting). Retry after a moment.",
                           type: "requests", param: nil, code: "rate_limit_exceeded")
        } catch SchedulerError.shuttingDown {
            throw APIError(status: 503, message: "The server is shutting down.", type: "server_error", param: nil, code: "service_unavailable")
        }
    }

    func tokenEntry(_ t: GeneratedToken) -> LogprobEntry {
        func text(_ id: Int32) -> ([UInt8], String) {
            let bytes = (try? state.codec.bytes(of: id)) ?? []
            return (bytes, String(decoding: bytes, as: UTF8.self))
        }
        let (bytes, token) = text(t.id)
        return LogprobEntry(token: token, logprob: t.logprob, bytes: bytes,
                            top_logprobs: t.topLogprobs.map { let (b, s) = text($0.id); return TopLogprobEntry(token: s, logprob: $0.logprob, bytes: b) })
    }

    /// Applies one engine event to the choices; returns (choice index, new text, logprob entry) for a token.
    func apply(_ event: GenerationEvent, to choices: inout [ChoiceOutput], submission: BatchScheduler.Submission,
               wantLogprobs: Bool) -> (index: Int, text: String, entry: LogprobEntry?)? {
        switch event {
        case .token(let t):
            let i = t.sequence
            guard !choices[i].stopped else { return nil }
            choices[i].tokens += 1
            let piece = (try? choices[i].detokenizer.push(t.id)) ?? ""
            let text = choices[i].matcher.push(piece)
            let entry = wantLogprobs ? tokenEntry(t) : nil
            if let entry { choices[i].logprobs.append(entry) }
            choices[i].text += text
            if choices[i].matcher.matched != nil {
                choices[i].stopped = true
                choices[i].finish = .stop
                submission.stop(sample: i)
            }
            return (i, text, entry)
        case .finished(let i, let reason):
            guard !choices[i].stopped else { return nil }
            choices[i].stopped = true
            var text = choices[i].matcher.push(choices[i].detokenizer.finish())
            if choices[i].matcher.matched == nil { text += choices[i].matcher.finish() }
            choices[i].finish = choices[i].matcher.matched != nil ? .stop : reason
            choices[i].text += text
            return (i, text, nil)
        }
    }

    /// Records the time to the first generated token, once per request.
    func noteFirstToken(_ event: GenerationEvent, seen: inout Bool, start: ContinuousClock.Instant) {
        if !seen, case .token = event { seen = true; state.metrics.firstToken(seconds(since: start)) }
    }

    /// Every event of a non-streamed request applied to its choices; cancels the request if the
    /// stream fails.
    func collect(_ submission: BatchScheduler.Submission, plan: GenerationPlan, start: ContinuousClock.Instant) async throws -> [ChoiceOutput] {
        var choices = [ChoiceOutput](repeating: ChoiceOutput(codec: state.codec, stops: plan.stops), count: plan.request.samples)
        var sawToken = false
        do {
            for try await event in submission.events {
                noteFirstToken(event, seen: &sawToken, start: start)
                _ = apply(event, to: &choices, submission: submission, wantLogprobs: plan.logprobs)
            }
        } catch {
            submission.cancel()
            throw error
        }
        return choices
    }

    func usage(prompt: Int, _ choices: [ChoiceOutput]) -> Usage {
        let completion = choices.reduce(0) { $0 + $1.tokens }
        return Usage(prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion)
    }

    // MARK: Chat completions

    func chatPrompt(_ body: ChatCompletionRequest) throws -> [Int32] {
        guard let format = state.format else {
            throw APIError.invalid("This model's tokenizer has no chat template (chat tokens), so it cannot chat; use POST /v1/completions with a text prompt.")
        }
        guard !body.messages.isEmpty else { throw APIError.invalid("'messages' must contain at least one message.", param: "messages") }
        var messages: [ChatMessage] = []
        for (i, m) in body.messages.enumerated() {
            let role: ChatMessage.Role
            switch m.role {
            case "system", "developer": role = .system
            case "user": role = .user
            case "assistant": role = .assistant
            default:
                throw APIError.invalid("messages[\(i)].role '\(m.role)' is not supported; use system, user or assistant.", param: "messages[\(i)].role")
            }
            guard let content = m.content?.text, !content.isEmpty else {
                throw APIError.invalid("messages[\(i)].content is empty.", param: "messages[\(i)].content")
            }
            if role == .system && messages.contains(where: { $0.role != .system }) {
                throw APIError.invalid("messages[\(i)]: system messages must come before the conversation.", param: "messages[\(i)].role")
            }
            if role == .assistant && !messages.contains(where: { $0.role == .user }) {
                throw APIError.invalid("messages[\(i)]: the conversation must start with a user message.", param: "messages[\(i)].role")
            }
            messages.append(ChatMessage(role: role, content: content))
        }
        guard messages.last?.role == .user else {
            throw APIError.invalid("The last message must come from the user.", param: "messages")
        }
        return try format.render(messages, addGenerationPrompt: true).ids
    }

    func chatCompletions(_ request: Request, context: some RequestContext) async throws -> Response {
        try authorize(request)
        let start = ContinuousClock.now
        let body = try await decodeBody(request, as: ChatCompletionRequest.self)
        guard body.model == state.configuration.modelName else { throw unknownModel(body.model) }
        if body.top_logprobs != nil && body.logprobs != true {
            throw APIError.invalid("'top_logprobs' needs 'logprobs' set to true.", param: "top_logprobs")
        }
        let prompt = try chatPrompt(body)
        let plan = try plan(body.sampling, prompt: prompt, logprobs: body.logprobs ?? false, topLogprobs: body.top_logprobs ?? 0,
                            stopTokens: state.chatStopTokens)
        let submission = try submit(plan)
        let id = "chatcmpl-" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24)
        let created = Int(Date().timeIntervalSince1970), model = state.configuration.modelName
        let n = plan.request.samples
        let state = self.state, routes = self
        state.metrics.enter()

        if !plan.stream {
            defer { state.metrics.leave() }
            let choices = try await collect(submission, plan: plan, start: start)
            let out = ChatCompletion(id: id, created: created, model: model, choices: choices.enumerated().map { i, c in
                ChatChoice(index: i, message: OutputMessage(role: "assistant", content: c.text),
                           logprobs: plan.logprobs ? ChoiceLogprobs(content: c.logprobs) : nil, finish_reason: (c.finish ?? .length).rawValue)
            }, usage: usage(prompt: prompt.count, choices))
            state.metrics.record(endpoint: "/v1/chat/completions", status: 200, seconds: seconds(since: start))
            return try encodedResponse(out)
        }

        return sseResponse { writer in
            defer { state.metrics.leave() }
            var choices = [ChoiceOutput](repeating: ChoiceOutput(codec: state.codec, stops: plan.stops), count: n)
            func send(_ choices: [ChunkChoice], usage: Usage? = nil) async throws {
                try await writer.event(ChatCompletionChunk(id: id, created: created, model: model, choices: choices, usage: usage))
            }
            do {
                for i in 0..<n { try await send([ChunkChoice(index: i, delta: ChunkDelta(role: "assistant", content: ""), logprobs: nil, finish_reason: nil)]) }
                var sawToken = false
                for try await event in submission.events {
                    routes.noteFirstToken(event, seen: &sawToken, start: start)
                    guard let (i, text, entry) = routes.apply(event, to: &choices, submission: submission, wantLogprobs: plan.logprobs) else { continue }
                    if !text.isEmpty || entry != nil {
                        try await send([ChunkChoice(index: i, delta: ChunkDelta(content: text), logprobs: entry.map { ChoiceLogprobs(content: [$0]) }, finish_reason: nil)])
                    }
                    if case .finished = event {
                        try await send([ChunkChoice(index: i, delta: ChunkDelta(), logprobs: nil, finish_reason: (choices[i].finish ?? .length).rawValue)])
                    } else if choices[i].stopped {
                        try await send([ChunkChoice(index: i, delta: ChunkDelta(), logprobs: nil, finish_reason: "stop")])
                    }
                }
                if plan.includeUsage { try await send([], usage: routes.usage(prompt: prompt.count, choices)) }
                try await writer.done()
                state.metrics.record(endpoint: "/v1/chat/completions", status: 200, seconds: seconds(since: start))
            } catch {
                // The client went away (or the server is stopping): free the slots now.
                submission.cancel()
                throw error
            }
        }
    }

    // MARK: Completions

    func completions(_ request: Request, context: some RequestContext) async throws -> Response {
        try authorize(request)
        let start = ContinuousClock.now
        let body = try await decodeBody(request, as: CompletionRequest.self)
        guard body.model == state.configuration.modelName else { throw unknownModel(body.model) }
        let texts = body.prompt.values
        guard texts.count == 1 else {
            throw APIError.invalid("Send one prompt per request (got \(texts.count)); requests are batched by the server.", param: "prompt")
        }
        var prompt: [Int32]
        do { prompt = try state.codec.encode(texts[0]) } catch {
            throw APIError.invalid("The prompt cannot be encoded: \(error)", param: "prompt")
        }
        if prompt.isEmpty, let eot = state.codec.endOfText { prompt = [eot] }
        let promptCount = prompt.count
        let top = body.logprobs ?? 0
        let plan = try plan(body.sampling, prompt: prompt, logprobs: body.logprobs != nil, topLogprobs: top, stopTokens: state.textStopTokens)
        let submission = try submit(plan)
        let id = "cmpl-" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24)
        let created = Int(Date().timeIntervalSince1970), model = state.configuration.modelName
        let n = plan.request.samples
        let echo = body.echo == true ? texts[0] : ""
        let state = self.state, routes = self
        state.metrics.enter()

        @Sendable func legacy(_ entries: [LogprobEntry], offset: Int) -> CompletionLogprobs {
            var out = CompletionLogprobs()
            var position = offset
            for e in entries {
                out.tokens.append(e.token)
                out.token_logprobs.append(e.logprob)
                var top: [String: Float] = [:]
                for t in e.top_logprobs where top[t.token] == nil { top[t.token] = t.logprob }
                out.top_logprobs.append(top)
                out.text_offset.append(position)
                position += e.token.utf16.count
            }
            return out
        }

        if !plan.stream {
            defer { state.metrics.leave() }
            let choices = try await collect(submission, plan: plan, start: start)
            let out = Completion(id: id, created: created, model: model, choices: choices.enumerated().map { i, c in
                CompletionChoice(index: i, text: echo + c.text, logprobs: plan.logprobs ? legacy(c.logprobs, offset: echo.utf16.count) : nil,
                                 finish_reason: (c.finish ?? .length).rawValue)
            }, usage: usage(prompt: prompt.count, choices))
            state.metrics.record(endpoint: "/v1/completions", status: 200, seconds: seconds(since: start))
            return try encodedResponse(out)
        }

        return sseResponse { writer in
            defer { state.metrics.leave() }
            var choices = [ChoiceOutput](repeating: ChoiceOutput(codec: state.codec, stops: plan.stops), count: n)
            func send(_ choices: [CompletionChoice], usage: Usage? = nil) async throws {
                try await writer.event(Completion(id: id, created: created, model: model, choices: choices, usage: usage))
            }
            do {
                if !echo.isEmpty { for i in 0..<n { try await send([CompletionChoice(index: i, text: echo, logprobs: nil, finish_reason: nil)]) } }
                var sawToken = false
                for try await event in submission.events {
                    routes.noteFirstToken(event, seen: &sawToken, start: start)
                    guard let (i, text, entry) = routes.apply(event, to: &choices, submission: submission, wantLogprobs: plan.logprobs) else { continue }
                    let done = choices[i].stopped
                    if !text.isEmpty || entry != nil || done {
                        try await send([CompletionChoice(index: i, text: text, logprobs: entry.map { legacy([$0], offset: 0) },
                                                         finish_reason: done ? (choices[i].finish ?? .length).rawValue : nil)])
                    }
                }
                if plan.includeUsage { try await send([], usage: routes.usage(prompt: promptCount, choices)) }
                try await writer.done()
                state.metrics.record(endpoint: "/v1/completions", status: 200, seconds: seconds(since: start))
            } catch {
                submission.cancel()
                throw error
            }
        }
    }
}

func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}

/// Writes Server-Sent Events.
struct SSEWriter {
    var writer: any ResponseBodyWriter
    let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.withoutEscapingSlashes]
        return e
    }()
    mutating func event(_ value: some Encodable) async throws {
        var buffer = ByteBuffer(string: "data: ")
        buffer.writeBytes(try encoder.encode(value))
        buffer.writeString("\n\n")
        try await writer.write(buffer)
    }
    mutating func done() async throws {
        try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
    }
}

func sseResponse(_ body: @escaping @Sendable (inout SSEWriter) async throws -> Void) -> Response {
    Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache", .init("X-Accel-Buffering")!: "no"],
             body: ResponseBody { writer in
                 var sse = SSEWriter(writer: writer)
                 try await body(&sse)
                 try await sse.writer.finish(nil)
             })
}
