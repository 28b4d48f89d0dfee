// Errors of the Tokenizer module: what was wrong, where, and how to fix it.

public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    case unreadableFile(path: String, reason: String)
    case malformedFile(path: String, reason: String)
    case unsupportedFormat(path: String, reason: String)
    case vocabularyTooSmall(requested: Int, minimum: Int)
    case duplicateSpecialToken(String)
    case unknownSpecialToken(String)
    case invalidTokenID(Int, vocabularySize: Int)
    case disallowedSpecialToken(String)

    public var description: String {
        switch self {
        case .unreadableFile(let path, let reason):
            return "cannot read \(path): \(reason)"
        case .malformedFile(let path, let reason):
            return "\(path) is not a valid tokenizer file: \(reason)"
        case .unsupportedFormat(let path, let reason):
            return "\(path): unsupported tokenizer format: \(reason).\nHINT: SwiftGPT reads byte-level BPE tokenizer.json, .tiktoken rank files and GPT-2 encoder.json + vocab.bpe."
        case .vocabularyTooSmall(let requested, let minimum):
            return "vocabulary size \(requested) is too small: byte-level BPE needs 256 byte tokens plus the special tokens, at least \(minimum).\nHINT: use --vocab-size \(max(minimum, 512)) or more."
        case .duplicateSpecialToken(let token):
            return "special token \(token) is given twice.\nHINT: list each special token once."
        case .unknownSpecialToken(let token):
            return "unknown special token \(token)."
        case .invalidTokenID(let id, let size):
            return "token id \(id) is outside the vocabulary (0..<\(size))."
        case .disallowedSpecialToken(let token):
            return "the text contains the special token \(token), which this call does not allow.\nHINT: pass allowSpecial to encode it as a special token, or escape it."
        }
    }
}
