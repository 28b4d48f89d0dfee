// Errors of the Model module: each says what was expected, what was found, and how to fix it.

public enum ModelError: Error, CustomStringConvertible, Equatable {
    case invalidConfig(String, hint: String)
    case tokenOutOfRange(index: Int, value: Int32, vocabSize: Int)
    case sequenceTooLong(length: Int, contextLength: Int)
    case shapeMismatch(String)
    case badFile(path: String, reason: String)
    case missingTensor(String, file: String)

    public var description: String {
        switch self {
        case .invalidConfig(let what, let hint):
            return "invalid model configuration: \(what).\nHINT: \(hint)."
        case .tokenOutOfRange(let index, let value, let vocab):
            return "token id \(value) at position \(index) is outside the vocabulary (0..<\(vocab)).\n"
                + "HINT: the data was probably tokenized with a different tokenizer than this model's."
        case .sequenceTooLong(let length, let context):
            return "sequence of \(length) tokens is longer than the model's context of \(context).\n"
                + "HINT: shorten the input or use a model with a longer context."
        case .shapeMismatch(let what):
            return "shape mismatch: \(what)"
        case .badFile(let path, let reason):
            return "cannot read \(path): \(reason)"
        case .missingTensor(let name, let file):
            return "tensor '\(name)' is missing from \(file).\nHINT: the file was written for a different model layout."
        }
    }
}
