// Errors of model conversion: each names the file and what was wrong, and says what to do.

public enum InteropError: Error, CustomStringConvertible, Equatable {
    /// A model directory or file that cannot be used, with the reason.
    case badInput(path: String, reason: String)
    /// Something valid elsewhere that SwiftGPT does not support (yet), with the way forward.
    case unsupported(String, hint: String)
    case ioFailure(path: String, reason: String)

    public var description: String {
        switch self {
        case .badInput(let path, let reason): return "cannot convert \(path): \(reason)"
        case .unsupported(let what, let hint): return "unsupported: \(what).\nHINT: \(hint)."
        case .ioFailure(let path, let reason): return "cannot write \(path): \(reason)"
        }
    }
}
