// Text completion: encode a prompt, run the engine, stream the text, stop at stop strings or the
// end-of-text token.

import Engine
import Tokenizer
import Training

public enum ChatError: Error, CustomStringConvertible, Equatable {
    case noChatTemplate(String)
    case messageTooLong(tokens: Int, available: Int)
    case invalidCommand(String)

    public var description: String {
        switch self {
        case .noChatTemplate(let why): return why
        case .messageTooLong(let tokens, let available):
            return "this message needs \(tokens) tokens with the system prompt and chat markers, but the context "
                + "leaves \(available) for it (after room for the reply); shorten the message or the system prompt"
        case .invalidCommand(let s): return s
        }
    }
}

public struct TextCompletion: Sendable {
    /// The generated text (without the stop string or stop token).
    public var text: String
    /// Generated token ids (up to the one that completed a stop string; never the stop token).
    public var ids: [Int32]
    public var finishReason: FinishReason
    public var promptTokens: Int
    /// Log-probability of each generated token under the model.
    public var logprobs: [Float]
    public var topLogprobs: [[TokenLogprob]]
}

public struct TextGenerator {
    public let engine: Engine
    public let codec: TextCodec

    public init(engine: Engine, codec: TextCodec) {
        self.engine = engine
        self.codec = codec
    }

    /// Encodes a prompt; an empty prompt starts from the end-of-text token (as GPT-2 does).
    public func encodePrompt(_ prompt: String) throws -> [Int32] {
        var ids = try codec.encode(prompt)
        if ids.isEmpty { ids = codec.endOfText.map { [$0] } ?? [0] }
        return ids
    }

    /// Generates from token ids. `onText` receives every piece of text as soon as it is complete and
    /// clear of stop strings; returning false stops generation (reason `cancelled`).
    public func generate(ids prompt: [Int32], maxTokens: Int, sampling: SamplingParameters, stop: [String] = [],
                         stopTokens extraStops: Set<Int32> = [], topLogprobs: Int = 0,
                         shouldContinue: () -> Bool = { true },
                         onText: (String) throws -> Void = { _ in }) throws -> TextCompletion {
        var stopTokens = extraStops
        if let eot = codec.endOfText { stopTokens.insert(eot) }
        let request = GenerationRequest(prompt: prompt, maxTokens: maxTokens, sampling: sampling, stopTokens: stopTokens,
                                        topLogprobs: topLogprobs)
        let generation = try engine.start([request])
        var stream = TextStream(codec: codec)
        var matcher = StopMatcher(stop)
        var completion = TextCompletion(text: "", ids: [], finishReason: .length, promptTokens: prompt.count,
                                        logprobs: [], topLogprobs: [])
        func emit(_ s: String) throws {
            guard !s.isEmpty else { return }
            completion.text += s
            try onText(s)
        }
        loop: while !generation.isFinished {
            if !shouldContinue() {
                _ = generation.cancel()
                completion.finishReason = .cancelled
                break
            }
            for event in try generation.step() {
                switch event {
                case .token(let t):
                    completion.ids.append(t.id)
                    completion.logprobs.append(t.logprob)
                    if topLogprobs > 0 { completion.topLogprobs.append(t.topLogprobs) }
                    try emit(matcher.push(try stream.push(t.id)))
                    if matcher.matched != nil {
                        _ = generation.finish(sequence: 0, reason: .stop)
                        completion.finishReason = .stop
                        break loop
                    }
                case .finished(_, let reason):
                    completion.finishReason = reason
                }
            }
        }
        if matcher.matched == nil {
            try emit(matcher.push(stream.finish()))
            if matcher.matched != nil { completion.finishReason = .stop }
            try emit(matcher.finish())
        }
        return completion
    }

    /// Generates from text.
    public func generate(prompt: String, maxTokens: Int, sampling: SamplingParameters, stop: [String] = [],
                         topLogprobs: Int = 0, shouldContinue: () -> Bool = { true },
                         onText: (String) throws -> Void = { _ in }) throws -> TextCompletion {
        try generate(ids: try encodePrompt(prompt), maxTokens: maxTokens, sampling: sampling, stop: stop,
                     topLogprobs: topLogprobs, shouldContinue: shouldContinue, onText: onText)
    }
}
