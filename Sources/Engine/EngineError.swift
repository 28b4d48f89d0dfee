// Errors of the inference engine, each with what was wrong and how to fix it.

public enum EngineError: Error, CustomStringConvertible, Equatable {
    case invalidSetting(String)
    case invalidSampling(String)
    case emptyPrompt
    case promptTooLong(tokens: Int, capacity: Int)
    case contextFull(needed: Int, capacity: Int)
    case invalidToken(Int32, vocabularySize: Int)
    case tooManySequences(requested: Int, slots: Int)

    public var description: String {
        switch self {
        case .invalidSetting(let s): return s
        case .invalidSampling(let s): return "invalid sampling setting: \(s)"
        case .emptyPrompt: return "the prompt has no tokens; give at least one (e.g. the end-of-text token)"
        case .promptTooLong(let n, let capacity):
            return "the prompt is \(n) tokens but the model's context holds \(capacity) (and at least one new token must fit); shorten the prompt"
        case .contextFull(let needed, let capacity):
            return "\(needed) positions are needed but the KV cache holds \(capacity)"
        case .invalidToken(let t, let v): return "token id \(t) is outside the vocabulary (0..<\(v))"
        case .tooManySequences(let n, let slots):
            return "\(n) sequences requested but the engine has \(slots) cache slots; create it with more slots or ask for fewer samples"
        }
    }
}
