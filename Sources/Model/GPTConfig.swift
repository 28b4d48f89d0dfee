// The GPT-2 family configuration, stored in every checkpoint as config.json.
// Key names follow Hugging Face's GPT2Config so the file reads naturally in both worlds.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

public struct GPTConfig: Codable, Equatable, Sendable {
    /// Number of token ids the model knows (V). The embedding table is padded to a multiple of 64.
    public var vocabSize: Int
    /// Longest sequence the model accepts (rows of the position table).
    public var contextLength: Int
    /// Transformer blocks (L).
    public var layers: Int
    /// Attention heads per block (NH); must divide `width`.
    public var heads: Int
    /// Channels of the residual stream (C).
    public var width: Int
    /// Dropout probability used while training (embeddings, attention probabilities, residual
    /// branches); 0 turns it off. Never applied at inference.
    public var dropout: Float

    public init(vocabSize: Int, contextLength: Int, layers: Int, heads: Int, width: Int, dropout: Float = 0) {
        self.vocabSize = vocabSize
        self.contextLength = contextLength
        self.layers = layers
        self.heads = heads
        self.width = width
        self.dropout = dropout
    }

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size"
        case contextLength = "n_positions"
        case layers = "n_layer"
        case heads = "n_head"
        case width = "n_embd"
        case dropout = "dropout"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        contextLength = try c.decode(Int.self, forKey: .contextLength)
        layers = try c.decode(Int.self, forKey: .layers)
        heads = try c.decode(Int.self, forKey: .heads)
        width = try c.decode(Int.self, forKey: .width)
        dropout = try c.decodeIfPresent(Float.self, forKey: .dropout) ?? 0
    }

    /// Vocabulary rounded up to a multiple of 64 (Vp): faster matrix products; padded rows are
    /// zero and never predicted.
    public var paddedVocabSize: Int { (vocabSize + 63) / 64 * 64 }

    /// Channels per head (hs).
    public var headSize: Int { width / max(heads, 1) }

    /// Throws a clear error for configurations that cannot work. Called before any allocation.
    public func validate() throws {
        func bad(_ what: String, _ hint: String) -> ModelError { .invalidConfig(what, hint: hint) }
        if vocabSize <= 0 { throw bad("vocab_size is \(vocabSize)", "it must be at least 1") }
        if vocabSize > Int(Int32.max) { throw bad("vocab_size is \(vocabSize)", "it must fit in 32 bits") }
        if contextLength <= 0 { throw bad("context length is \(contextLength)", "it must be at least 1") }
        if layers <= 0 { throw bad("layers is \(layers)", "use at least 1 layer") }
        if heads <= 0 { throw bad("heads is \(heads)", "use at least 1 head") }
        if width <= 0 { throw bad("width is \(width)", "use a positive width, e.g. 128") }
        if width % heads != 0 {
            throw bad("width \(width) is not divisible by heads \(heads)",
                      "choose a width that is a multiple of the head count, e.g. \(heads * max(1, width / heads))")
        }
        if !(dropout >= 0 && dropout < 1) { throw bad("dropout is \(dropout)", "it must be in [0, 1)") }
    }

    /// Parameter count (with the padded vocabulary, as allocated).
    public var parameterCount: Int { GPTLayout.parameterEntries(self).reduce(0) { $0 + $1.count } }

    /// Named sizes used by benchmarks and the quickstart.
    public static func preset(_ name: String) -> (config: GPTConfig, batchSize: Int)? {
        switch name {
        case "char-baby": return (GPTConfig(vocabSize: 65, contextLength: 64, layers: 4, heads: 4, width: 128), 12)
        case "char-small": return (GPTConfig(vocabSize: 65, contextLength: 256, layers: 6, heads: 6, width: 384), 64)
        case "gpt2-124m": return (GPTConfig(vocabSize: 50257, contextLength: 1024, layers: 12, heads: 12, width: 768), 4)
        default: return nil
        }
    }

    public static let presetNames = ["char-baby", "char-small", "gpt2-124m"]
}
