// Router-level tests of every endpoint and error of `swiftgpt serve` (no network: Hummingbird's
// router test framework). The end-to-end test with the official openai client, the browser test
// and the load test live in Tools/serve.

import Compute
import Engine
import Foundation
import Hummingbird
import HummingbirdTesting
import Model
import Tokenizer
import Training
import XCTest
@testable import Server

final class ServerTests: XCTestCase {
    static let corpus = String(repeating: "The cat sat on the mat. A dog ran in the park. Hello there, how are you? Fine, thanks.\n", count: 20)

    func makeState(slots: Int = 4, queue: Int = 16, apiKey: String? = nil, context: Int = 64, maxBody: Int = 1 << 16) throws -> ServerState {
        var counts = PieceCounts()
        Array(Self.corpus.utf8).withUnsafeBufferPointer { counts.count($0, pattern: .gpt4, threads: 1) }
        let bpe = try BPETrainer(vocabularySize: 300, pattern: .gpt4, specialTokens: ChatTokens.all).train(counts)
        let model = try GPT(config: GPTConfig(vocabSize: bpe.vocabularySize, contextLength: context, layers: 1, heads: 2, width: 16), backend: CPUBackend())
        model.initialize(seed: 4)
        var config = ServerConfiguration()
        config.apiKey = apiKey
        config.maxConcurrent = slots
        config.maxQueue = queue
        config.maxBodyBytes = maxBody
        config.modelName = "tiny"
        return try ServerState(model: try InferenceModel(model: model, slots: slots), codec: .bpe(bpe), configuration: config)
    }

    func withApp(_ state: ServerState, _ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let app = Application(router: buildRouter(state))
        try await app.test(.router) { client in try await body(client) }
        state.scheduler.shutdown()
    }

    func testHealthModelsMetricsAndThePage() async throws {
        let state = try makeState()
        try await withApp(state) { client in
            try await client.execute(uri: "/health", method: .get) { XCTAssertEqual($0.status, .ok) }
            try await client.execute(uri: "/v1/models", method: .get) { r in
                XCTAssertEqual(r.status, .ok)
                let data = decode(r.body)["data"] as? [[String: Any]]
                XCTAssertEqual(data?.first?["id"] as? String, "tiny")
                XCTAssertEqual(data?.first?["context_length"] as? Int, 64)
            }
            try await client.execute(uri: "/v1/models/tiny", method: .get) { XCTAssertEqual($0.status, .ok) }
            try await client.execute(uri: "/v1/models/other", method: .get) { r in
                XCTAssertEqual(r.status, .notFound)
                XCTAssertEqual(errorObject(r.body)["code"] as? String, "model_not_found")
            }
            try await client.execute(uri: "/", method: .get) { r in
                XCTAssertEqual(r.status, .ok)
                XCTAssertEqual(r.headers[.contentType], "text/html; charset=utf-8")
                XCTAssertTrue(String(buffer: r.body).contains("id=\"messages\""))
            }
            try await client.execute(uri: "/app.js", method: .get) { XCTAssertEqual($0.headers[.contentType], "text/javascript; charset=utf-8") }
            // Only the page's own files exist: no path reaches the file system.
            for path in ["/../Package.swift", "/%2e%2e/Package.swift", "/Web/index.html", "/etc/passwd", "/v1/../Package.swift"] {
                try await client.execute(uri: path, method: .get) { r in
                    XCTAssertEqual(r.status, .notFound, path)
                    XCTAssertFalse(String(buffer: r.body).contains("PackageDescription"), path)
                }
            }
            try await client.execute(uri: "/v1/chat/completions", method: .post,
                                     body: json(["model": "tiny", "messages": [["role": "user", "content": "Hello"]], "max_tokens": 3,
                                                 "seed": 3])) { _ in }  // seeded: an unseeded draw may pick a stop token first
            try await client.execute(uri: "/metrics", method: .get) { r in
                let text = String(buffer: r.body)
                XCTAssertTrue(text.contains("swiftgpt_generated_tokens_total"), text)
                XCTAssertTrue(text.contains("swiftgpt_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 1"), text)
                XCTAssertTrue(text.contains("swiftgpt_queue_length 0"), text)
                XCTAssertTrue(text.contains("swiftgpt_time_to_first_token_seconds_count 1"), text)
            }
        }
    }

    func testChatCompletion() async throws {
        let state = try makeState()
        try await withApp(state) { client in
            let body = json(["model": "tiny", "messages": [["role": "system", "content": "Be brief."], ["role": "user", "content": "Hello there"]],
                                  "max_tokens": 6, "temperature": 0, "logprobs": true, "top_logprobs": 3, "n": 2])
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: body) { r in
                XCTAssertEqual(r.status, .ok)
                let o = decode(r.body)
                XCTAssertEqual(o["object"] as? String, "chat.completion")
                let choices = o["choices"] as? [[String: Any]] ?? []
                XCTAssertEqual(choices.count, 2)
                let usage = o["usage"] as? [String: Int] ?? [:]
                var completion = 0
                for c in choices {
                    let message = c["message"] as? [String: Any]
                    XCTAssertEqual(message?["role"] as? String, "assistant")
                    XCTAssertNotNil(message?["content"] as? String)
                    XCTAssertTrue(["stop", "length"].contains(c["finish_reason"] as? String ?? ""))
                    let content = (c["logprobs"] as? [String: Any])?["content"] as? [[String: Any]] ?? []
                    completion += content.count
                    for entry in content {
                        XCTAssertLessThanOrEqual(entry["logprob"] as? Double ?? 1, 0)
                        XCTAssertEqual((entry["top_logprobs"] as? [Any])?.count, 3)
                    }
                }
                // Greedy: both samples are the same.
                XCTAssertEqual((choices[0]["message"] as? [String: Any])?["content"] as? String, (choices[1]["message"] as? [String: Any])?["content"] as? String)
                XCTAssertEqual(usage["completion_tokens"], completion)
                XCTAssertEqual(usage["total_tokens"], (usage["prompt_tokens"] ?? 0) + completion)
            }
        }
    }

    func testStreamingChatEndsWithDoneAndUsage() async throws {
        let state = try makeState()
        try await withApp(state) { client in
            let body = json(["model": "tiny", "messages": [["role": "user", "content": "Hello"]], "max_tokens": 5, "stream": true,
                                  "stream_options": ["include_usage": true], "seed": 3])
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: body) { r in
                XCTAssertEqual(r.status, .ok)
                XCTAssertEqual(r.headers[.contentType], "text/event-stream")
                let events = String(buffer: r.body).components(separatedBy: "\n\n").filter { !$0.isEmpty }
                XCTAssertEqual(events.last, "data: [DONE]")
                let chunks = events.dropLast().map { decode(ByteBuffer(string: String($0.dropFirst(6)))) }
                XCTAssertTrue(chunks.allSatisfy { $0["object"] as? String == "chat.completion.chunk" })
                let first = (chunks.first?["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any]
                XCTAssertEqual(first?["role"] as? String, "assistant")
                let finishes = chunks.compactMap { (($0["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String) }
                XCTAssertEqual(finishes.count, 1)
                let usage = chunks.last?["usage"] as? [String: Int]
                XCTAssertEqual((chunks.last?["choices"] as? [Any])?.count, 0)
                XCTAssertNotNil(usage?["completion_tokens"])
                XCTAssertLessThanOrEqual(usage?["completion_tokens"] ?? 99, 5)
            }
        }
    }

    func testCompletionsPlainStreamingAndStopStrings() async throws {
        let state = try makeState()
        try await withApp(state) { client in
            var full = ""
            try await client.execute(uri: "/v1/completions", method: .post,
                                     body: json(["model": "tiny", "prompt": "The cat", "max_tokens": 12, "temperature": 0, "logprobs": 2])) { r in
                XCTAssertEqual(r.status, .ok)
                let o = decode(r.body)
                XCTAssertEqual(o["object"] as? String, "text_completion")
                let choice = (o["choices"] as? [[String: Any]])?.first
                full = choice?["text"] as? String ?? ""
                let lp = choice?["logprobs"] as? [String: Any]
                XCTAssertEqual((lp?["tokens"] as? [String])?.joined(), full)
                XCTAssertEqual((lp?["top_logprobs"] as? [[String: Double]])?.first?.count, 2)
            }
            try await client.execute(uri: "/v1/completions", method: .post,
                                     body: json(["model": "tiny", "prompt": "The cat", "max_tokens": 12, "temperature": 0, "stream": true])) { r in
                let events = String(buffer: r.body).components(separatedBy: "\n\n").filter { !$0.isEmpty }
                XCTAssertEqual(events.last, "data: [DONE]")
                let text = events.dropLast().map { (((decode(ByteBuffer(string: String($0.dropFirst(6))))["choices"] as? [[String: Any]])?.first?["text"] as? String) ?? "") }.joined()
                XCTAssertEqual(text, full)
            }
            // A stop string inside the greedy continuation cuts the text before it.
            let scalars = Array(full)
            guard scalars.count >= 4 else { return }
            let stop = String(scalars[2..<4])
            try await client.execute(uri: "/v1/completions", method: .post,
                                     body: json(["model": "tiny", "prompt": "The cat", "max_tokens": 12, "temperature": 0, "stop": [stop]])) { r in
                let choice = (decode(r.body)["choices"] as? [[String: Any]])?.first
                XCTAssertEqual(choice?["text"] as? String, String(full[..<full.range(of: stop)!.lowerBound]))
                XCTAssertEqual(choice?["finish_reason"] as? String, "stop")
            }
        }
    }

    func testBadRequestsGetOpenAIShapedErrors() async throws {
        let state = try makeState(maxBody: 4096)
        try await withApp(state) { client in
            func expect(_ body: ByteBuffer, _ status: HTTPResponse.Status, code: String? = nil, param: String? = nil, contains: String? = nil,
                        uri: String = "/v1/chat/completions", file: StaticString = #filePath, line: UInt = #line) async throws {
                try await client.execute(uri: uri, method: .post, headers: [.contentType: "application/json"], body: body) { r in
                    XCTAssertEqual(r.status, status, String(buffer: r.body), file: file, line: line)
                    let e = errorObject(r.body)
                    XCTAssertNotNil(e["message"] as? String, file: file, line: line)
                    XCTAssertNotNil(e["type"] as? String, file: file, line: line)
                    if let code { XCTAssertEqual(e["code"] as? String, code, file: file, line: line) }
                    if let param { XCTAssertEqual(e["param"] as? String, param, file: file, line: line) }
                    if let contains { XCTAssertTrue((e["message"] as? String ?? "").contains(contains), "\(e)", file: file, line: line) }
                }
            }
            let user = [["role": "user", "content": "Hi"]]
            try await expect(ByteBuffer(string: "{not json"), .badRequest, contains: "not valid JSON")
            try await expect(ByteBuffer(bytes: [0x7B, 0x22, 0xFF, 0x22, 0x7D]), .badRequest, contains: "UTF-8")
            try await expect(json(["messages": user]), .badRequest, param: "model")
            try await expect(json(["model": "tiny", "messages": user, "temperature": "hot"]), .badRequest, param: "temperature")
            try await expect(json(["model": "gpt-4", "messages": user]), .notFound, code: "model_not_found")
            try await expect(json(["model": "tiny", "messages": [] as [Any]]), .badRequest, param: "messages")
            try await expect(json(["model": "tiny", "messages": [["role": "user", "content": ""]]]), .badRequest, param: "messages[0].content")
            try await expect(json(["model": "tiny", "messages": [["role": "assistant", "content": "Hi"], ["role": "user", "content": "Hi"]]]), .badRequest)
            try await expect(json(["model": "tiny", "messages": [["role": "user", "content": "Hi"], ["role": "system", "content": "late"], ["role": "user", "content": "x"]]]), .badRequest)
            try await expect(json(["model": "tiny", "messages": [["role": "user", "content": "Hi"], ["role": "assistant", "content": "Yo"]]]), .badRequest, contains: "last message")
            try await expect(json(["model": "tiny", "messages": [["role": "tool", "content": "Hi"]]]), .badRequest)
            try await expect(json(["model": "tiny", "messages": user, "temperature": -1]), .badRequest, param: "temperature")
            try await expect(json(["model": "tiny", "messages": user, "top_p": 0]), .badRequest, param: "top_p")
            try await expect(json(["model": "tiny", "messages": user, "max_tokens": 0]), .badRequest, param: "max_tokens")
            try await expect(json(["model": "tiny", "messages": user, "max_tokens": 1_000_000]), .badRequest, param: "max_tokens")
            try await expect(json(["model": "tiny", "messages": user, "n": 99]), .badRequest, param: "n")
            try await expect(json(["model": "tiny", "messages": user, "presence_penalty": 5]), .badRequest, param: "presence_penalty")
            try await expect(json(["model": "tiny", "messages": user, "logit_bias": ["999999": 1]]), .badRequest, param: "logit_bias")
            try await expect(json(["model": "tiny", "messages": user, "top_logprobs": 3]), .badRequest, param: "top_logprobs")
            try await expect(json(["model": "tiny", "messages": user, "stop": ["a", "b", "c", "d", "e"]]), .badRequest, param: "stop")
            let long = String(repeating: "The cat sat on the mat. ", count: 30)
            try await expect(json(["model": "tiny", "messages": [["role": "user", "content": long]]]), .badRequest, code: "context_length_exceeded")
            try await expect(json(["model": "tiny", "prompt": long]), .badRequest, code: "context_length_exceeded", uri: "/v1/completions")
            try await expect(json(["model": "tiny", "prompt": ["a", "b"]]), .badRequest, param: "prompt", uri: "/v1/completions")
            try await expect(ByteBuffer(repeating: UInt8(ascii: " "), count: 10_000), .contentTooLarge, code: "request_too_large")
            try await expect(json([:]), .notFound, code: "not_found", uri: "/v1/nothing")
            // After all that, the server still answers.
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: json(["model": "tiny", "messages": user, "max_tokens": 2])) {
                XCTAssertEqual($0.status, .ok)
            }
        }
    }

    func testAPIKeyAndSaturation() async throws {
        let locked = try makeState(apiKey: "sekrit")
        try await withApp(locked) { client in
            try await client.execute(uri: "/v1/models", method: .get) { r in
                XCTAssertEqual(r.status, .unauthorized)
                XCTAssertEqual(errorObject(r.body)["code"] as? String, "invalid_api_key")
            }
            try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer wrong"]) { XCTAssertEqual($0.status, .unauthorized) }
            try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer sekrit"]) { XCTAssertEqual($0.status, .ok) }
            try await client.execute(uri: "/health", method: .get) { XCTAssertEqual($0.status, .ok) }  // health needs no key
        }
        // A server that may queue nothing answers 429 with Retry-After.
        let full = try makeState(queue: 0)
        try await withApp(full) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post,
                                     body: json(["model": "tiny", "messages": [["role": "user", "content": "Hi"]]])) { r in
                XCTAssertEqual(r.status, .tooManyRequests)
                XCTAssertEqual(r.headers[.retryAfter], "1")
                XCTAssertEqual(errorObject(r.body)["code"] as? String, "rate_limit_exceeded")
            }
        }
    }
}

func json(_ object: Any) -> ByteBuffer { ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: object)) }

func decode(_ buffer: ByteBuffer) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))) as? [String: Any] ?? [:]
}

/// The `error` object of an OpenAI-shaped error body.
func errorObject(_ buffer: ByteBuffer) -> [String: Any] { decode(buffer)["error"] as? [String: Any] ?? [:] }
