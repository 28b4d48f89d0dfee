// The chat format: how a conversation becomes token ids, and which tokens the model is trained on.
//
//   <|bos|><|system|>You are …<|end|><|user|>Hi<|end|><|assistant|>Hello!<|end|>
//
// The loss mask is 1 on assistant content and the <|end|> that closes it (so the model learns to
// stop), 0 on everything else. SFT, chat and the server all render conversations here.

public struct ChatMessage: Codable, Sendable, Equatable {
    public enum Role: String, Codable, Sendable { case system, user, assistant }
    public var role: Role
    public var content: String

    public init(role: Role, content: String) {
        self.role = role
        self.content = content
    }
}

public enum ChatTokens {
    public static let bos = "<|bos|>"
    public static let system = "<|system|>"
    public static let user = "<|user|>"
    public static let assistant = "<|assistant|>"
    public static let end = "<|end|>"
    /// Separates documents in pre-training data.
    public static let endOfText = "<|endoftext|>"

    /// Every special token the chat format needs, in the order a trainer adds them.
    public static let all = [endOfText, bos, system, user, assistant, end]
}

public struct ChatFormat: Sendable {
    public let bpe: BPE
    let bos: Int32, system: Int32, user: Int32, assistant: Int32, end: Int32

    /// Fails when the tokenizer lacks one of the chat special tokens.
    public init(_ bpe: BPE) throws {
        func id(_ t: String) throws -> Int32 {
            guard let v = bpe.specialTokens[t] else { throw TokenizerError.unknownSpecialToken(t) }
            return v
        }
        self.bpe = bpe
        bos = try id(ChatTokens.bos)
        system = try id(ChatTokens.system)
        user = try id(ChatTokens.user)
        assistant = try id(ChatTokens.assistant)
        end = try id(ChatTokens.end)
    }

    /// Token ids and loss mask of a conversation. Message text is never parsed for special tokens.
    /// With `addGenerationPrompt`, ends with <|assistant|> so a model continues as the assistant.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = false) throws -> (ids: [Int32], mask: [UInt8]) {
        var ids: [Int32] = [bos]
        var mask: [UInt8] = [0]
        for message in messages {
            let role: Int32
            switch message.role {
            case .system: role = system
            case .user: role = user
            case .assistant: role = assistant
            }
            let content = try bpe.encode(message.content)
            let trained: UInt8 = message.role == .assistant ? 1 : 0
            ids.append(role); mask.append(0)
            ids += content; mask += [UInt8](repeating: trained, count: content.count)
            ids.append(end); mask.append(trained)
        }
        if addGenerationPrompt { ids.append(assistant); mask.append(0) }
        return (ids, mask)
    }

    /// The id that ends an assistant turn (generation stops there).
    public var endOfTurn: Int32 { end }
}
