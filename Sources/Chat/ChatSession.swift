// A conversation with a model: the chat template from the tokenizer, history, and a context window
// that never overflows. When the next prompt would not leave room for a reply, the oldest turns go
// first (never the system prompt) and the caller is told how many.

import Engine
import Foundation
import Tokenizer
import Training

public struct ChatReply: Sendable {
    public var text: String
    public var finishReason: FinishReason
    /// Earlier messages dropped to make room (0 when everything fit).
    public var droppedMessages: Int
    public var promptTokens: Int
    public var completionTokens: Int
}

public final class ChatSession {
    public let generator: TextGenerator
    public let format: ChatFormat
    public var system: String?
    public private(set) var history: [ChatMessage] = []
    public var sampling: SamplingParameters
    /// Most tokens per reply.
    public var maxReplyTokens: Int
    /// Tokens kept free for the reply when trimming history.
    public var replyReserve: Int

    public init(engine: Engine, codec: TextCodec, system: String? = nil, sampling: SamplingParameters = SamplingParameters(temperature: 0.7),
                maxReplyTokens: Int = 256) throws {
        guard case .bpe(let bpe) = codec else {
            throw ChatError.noChatTemplate("this model has a character vocabulary, which has no chat tokens; chat needs a model "
                + "trained with a BPE tokenizer (swiftgpt tokenizer train adds the chat tokens) and fine-tuned with swiftgpt sft")
        }
        do { format = try ChatFormat(bpe) } catch {
            throw ChatError.noChatTemplate("the tokenizer lacks the chat tokens (\(error)); train one with swiftgpt tokenizer train")
        }
        generator = TextGenerator(engine: engine, codec: codec)
        self.system = system
        self.sampling = sampling
        self.maxReplyTokens = maxReplyTokens
        replyReserve = min(maxReplyTokens, max(16, engine.model.capacity / 4))
    }

    public func reset() { history.removeAll() }

    /// Messages as rendered: the system prompt (if any), then the history.
    public var messages: [ChatMessage] {
        (system.map { [ChatMessage(role: .system, content: $0)] } ?? []) + history
    }

    /// The prompt for a reply to `user`, trimmed to fit. Returns the ids and how many history
    /// messages were dropped.
    public func prompt(for user: String) throws -> (ids: [Int32], dropped: Int) {
        let capacity = generator.engine.model.capacity
        let head = system.map { [ChatMessage(role: .system, content: $0)] } ?? []
        let newMessage = ChatMessage(role: .user, content: user)
        var kept = history
        var dropped = 0
        while true {
            let ids = try format.render(head + kept + [newMessage], addGenerationPrompt: true).ids
            if ids.count + replyReserve <= capacity { return (ids, dropped) }
            if kept.isEmpty {
                let available = capacity - replyReserve - (try format.render(head, addGenerationPrompt: true).ids.count)
                throw ChatError.messageTooLong(tokens: ids.count, available: max(0, available))
            }
            // Drop the oldest exchange (a user message and the reply that follows it).
            kept.removeFirst()
            dropped += 1
            if let first = kept.first, first.role == .assistant {
                kept.removeFirst()
                dropped += 1
            }
        }
    }

    /// Sends a user message and streams the reply through `onText`. The exchange is added to the
    /// history (also when cancelled, with what was said so far).
    public func send(_ user: String, shouldContinue: () -> Bool = { true },
                     onText: (String) throws -> Void = { _ in }) throws -> ChatReply {
        let (ids, dropped) = try prompt(for: user)
        if dropped > 0 { history.removeFirst(dropped) }
        let room = generator.engine.model.capacity - ids.count
        let completion = try generator.generate(ids: ids, maxTokens: min(maxReplyTokens, room), sampling: sampling,
                                                stopTokens: [format.endOfTurn], shouldContinue: shouldContinue, onText: onText)
        history.append(ChatMessage(role: .user, content: user))
        history.append(ChatMessage(role: .assistant, content: completion.text))
        return ChatReply(text: completion.text, finishReason: completion.finishReason, droppedMessages: dropped,
                         promptTokens: ids.count, completionTokens: completion.ids.count)
    }

    /// Applies a `/set NAME VALUE` setting. Names: temperature, top_k, top_p, min_p,
    /// repetition_penalty, presence_penalty, frequency_penalty, seed, max_tokens.
    public func set(_ name: String, _ value: String) throws {
        var s = sampling
        func number() throws -> Float {
            guard let v = Float(value) else { throw ChatError.invalidCommand("'\(value)' is not a number") }
            return v
        }
        switch name.replacingOccurrences(of: "-", with: "_") {
        case "temperature": s.temperature = try number()
        case "top_k": s.topK = Int(try number())
        case "top_p": s.topP = try number()
        case "min_p": s.minP = try number()
        case "repetition_penalty": s.repetitionPenalty = try number()
        case "presence_penalty": s.presencePenalty = try number()
        case "frequency_penalty": s.frequencyPenalty = try number()
        case "seed":
            guard let v = UInt64(value) else { throw ChatError.invalidCommand("seed must be a non-negative integer") }
            s.seed = v
        case "max_tokens":
            guard let v = Int(value), v > 0 else { throw ChatError.invalidCommand("max_tokens must be a positive integer") }
            maxReplyTokens = v
            replyReserve = min(v, max(16, generator.engine.model.capacity / 4))
            return
        default:
            throw ChatError.invalidCommand("unknown setting '\(name)'; settings: temperature, top_k, top_p, min_p, "
                + "repetition_penalty, presence_penalty, frequency_penalty, seed, max_tokens")
        }
        try s.validate()
        sampling = s
    }
}
