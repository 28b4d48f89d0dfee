// The request and response shapes of OpenAI's chat completions and (legacy) completions APIs that
// this server implements. Unknown request fields are ignored, as OpenAI-compatible servers do;
// fields of the wrong type are rejected with the field's name.

import Foundation

/// `"text"`, or `["text", ...]` (stop strings, completion prompts).
enum StringOrList: Decodable {
    case one(String), many([String])
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { self = .one(s); return }
        self = .many(try c.decode([String].self))
    }
    var values: [String] {
        switch self {
        case .one(let s): return [s]
        case .many(let l): return l
        }
    }
}

/// Message content: a string, or a list of parts of which only `{"type":"text","text":...}` is supported.
struct MessageContent: Decodable {
    let text: String
    struct Part: Decodable { let type: String; let text: String? }
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { text = s; return }
        let parts = try c.decode([Part].self)
        var out = ""
        for part in parts {
            guard part.type == "text", let t = part.text else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "only text content parts are supported (got '\(part.type)')")
            }
            out += t
        }
        text = out
    }
}

struct InputMessage: Decodable {
    let role: String
    let content: MessageContent?
}

struct StreamOptions: Decodable { let include_usage: Bool? }

/// Sampling fields shared by both endpoints (OpenAI's, plus the common top_k / min_p /
/// repetition_penalty extensions of llama.cpp and vLLM).
struct SamplingFields: Decodable {
    var temperature: Double?
    var top_p: Double?
    var top_k: Int?
    var min_p: Double?
    var repetition_penalty: Double?
    var max_tokens: Int?
    var max_completion_tokens: Int?
    var n: Int?
    var stop: StringOrList?
    var seed: Int64?
    var presence_penalty: Double?
    var frequency_penalty: Double?
    var logit_bias: [String: Double]?
    var stream: Bool?
    var stream_options: StreamOptions?
}

struct ChatCompletionRequest: Decodable {
    let model: String
    let messages: [InputMessage]
    let logprobs: Bool?
    let top_logprobs: Int?
    let sampling: SamplingFields

    enum CodingKeys: String, CodingKey { case model, messages, logprobs, top_logprobs }
    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(String.self, forKey: .model)
        messages = try c.decode([InputMessage].self, forKey: .messages)
        logprobs = try c.decodeIfPresent(Bool.self, forKey: .logprobs)
        top_logprobs = try c.decodeIfPresent(Int.self, forKey: .top_logprobs)
        sampling = try SamplingFields(from: decoder)
    }
}

struct CompletionRequest: Decodable {
    let model: String
    let prompt: StringOrList
    /// Legacy API: the number of top alternatives per token (0–5 at OpenAI; up to 20 here).
    let logprobs: Int?
    let echo: Bool?
    let sampling: SamplingFields

    enum CodingKeys: String, CodingKey { case model, prompt, logprobs, echo }
    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(String.self, forKey: .model)
        prompt = try c.decode(StringOrList.self, forKey: .prompt)
        logprobs = try c.decodeIfPresent(Int.self, forKey: .logprobs)
        echo = try c.decodeIfPresent(Bool.self, forKey: .echo)
        sampling = try SamplingFields(from: decoder)
    }
}

// MARK: Responses

/// An optional that is written as JSON `null` when absent, as OpenAI writes `logprobs` and
/// `finish_reason` (synthesized Encodable would leave the key out).
@propertyWrapper
struct NullEncoded<Value: Encodable>: Encodable {
    var wrappedValue: Value?
    init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }
    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if let wrappedValue { try c.encode(wrappedValue) } else { try c.encodeNil() }
    }
}

struct Usage: Encodable {
    let prompt_tokens: Int
    let completion_tokens: Int
    let total_tokens: Int
}

struct TopLogprobEntry: Encodable {
    let token: String
    let logprob: Float
    let bytes: [UInt8]
}

struct LogprobEntry: Encodable {
    let token: String
    let logprob: Float
    let bytes: [UInt8]
    let top_logprobs: [TopLogprobEntry]
}

struct ChoiceLogprobs: Encodable { let content: [LogprobEntry] }

struct OutputMessage: Encodable {
    let role: String
    let content: String
}

struct ChatChoice: Encodable {
    let index: Int
    let message: OutputMessage
    @NullEncoded var logprobs: ChoiceLogprobs?  // null when not asked, as OpenAI sends it
    let finish_reason: String

}

struct ChatCompletion: Encodable {
    let id: String
    var object = "chat.completion"
    let created: Int
    let model: String
    let choices: [ChatChoice]
    let usage: Usage
}

struct ChunkDelta: Encodable {
    var role: String?
    var content: String?
}

struct ChunkChoice: Encodable {
    let index: Int
    let delta: ChunkDelta
    @NullEncoded var logprobs: ChoiceLogprobs?
    @NullEncoded var finish_reason: String?

}

struct ChatCompletionChunk: Encodable {
    let id: String
    var object = "chat.completion.chunk"
    let created: Int
    let model: String
    let choices: [ChunkChoice]
    let usage: Usage?
}

/// The legacy completions API's logprobs object.
struct CompletionLogprobs: Encodable {
    var tokens: [String] = []
    var token_logprobs: [Float] = []
    var top_logprobs: [[String: Float]] = []
    var text_offset: [Int] = []
}

struct CompletionChoice: Encodable {
    let index: Int
    let text: String
    @NullEncoded var logprobs: CompletionLogprobs?
    @NullEncoded var finish_reason: String?

}

struct Completion: Encodable {
    let id: String
    var object = "text_completion"
    let created: Int
    let model: String
    let choices: [CompletionChoice]
    let usage: Usage?
}

struct ModelEntry: Encodable {
    let id: String
    var object = "model"
    let created: Int
    var owned_by = "swiftgpt"
    /// Extension: the model's context length in tokens.
    let context_length: Int
}

struct ModelList: Encodable {
    var object = "list"
    let data: [ModelEntry]
}

/// OpenAI's error body: {"error": {"message", "type", "param", "code"}}.
struct APIError: Error, Encodable {
    let status: Int
    let message: String
    let type: String
    let param: String?
    let code: String?

    static func invalid(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(status: 400, message: message, type: "invalid_request_error", param: param, code: code)
    }

    enum CodingKeys: String, CodingKey { case error }
    enum Inner: String, CodingKey { case message, type, param, code }
    func encode(to encoder: Encoder) throws {
        var outer = encoder.container(keyedBy: CodingKeys.self)
        var c = outer.nestedContainer(keyedBy: Inner.self, forKey: .error)
        try c.encode(message, forKey: .message)
        try c.encode(type, forKey: .type)
        try c.encode(param, forKey: .param)
        try c.encode(code, forKey: .code)
    }
}
