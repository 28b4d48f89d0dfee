// The model configuration, stored in every checkpoint as config.json. GPT-2 is the default; the
// Llama-style options (rotary positions, RMSNorm, SwiGLU, grouped-query attention, no biases, an
// untied output head) can be switched on one by one or all together with `GPTConfig.llama`.
// Key names follow Hugging Face's GPT2Config where one exists, so the file reads naturally in both
// worlds; checkpoints written before the options existed read as GPT-2.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// How a token learns where it is.
public enum PositionEncoding: String, Codable, Sendable, CaseIterable {
    /// A learned table of position vectors added to the token embeddings (GPT-2).
    case learned
    /// Rotary position embeddings applied to queries and keys in every attention layer (Llama).
    case rope
}

/// The normalisation before each block and before the output head.
public enum NormKind: String, Codable, Sendable, CaseIterable {
    /// Mean and variance, with a gain and a shift (GPT-2).
    case layernorm
    /// Root mean square only, with a gain (Llama).
    case rmsnorm
}

/// The feed-forward network of each block.
public enum FeedForwardKind: String, Codable, Sendable, CaseIterable {
    /// up (C→H), GELU (tanh approximation), down (H→C) (GPT-2, H = 4C).
    case gelu
    /// SiLU(gate(x)) ⊙ up(x), then down (Llama).
    case swiglu
}

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
    /// Key/value heads (grouped-query attention): each serves heads/kvHeads query heads. Equal to
    /// `heads` for ordinary multi-head attention; must divide it.
    public var kvHeads: Int
    public var positionEncoding: PositionEncoding
    /// Base of the rotary frequencies (θ), used with `.rope`.
    public var ropeTheta: Float
    public var norm: NormKind
    /// ε added to the variance (layer norm) or mean square (RMSNorm).
    public var normEpsilon: Float
    public var feedForward: FeedForwardKind
    /// Hidden channels of the feed-forward network (H).
    public var hiddenWidth: Int
    /// Biases on the linear layers (attention and feed-forward). Layer norm keeps its shift.
    public var bias: Bool
    /// The output head reuses the token embedding matrix (GPT-2) instead of a separate one.
    public var tiedEmbeddings: Bool

    public init(vocabSize: Int, contextLength: Int, layers: Int, heads: Int, width: Int, dropout: Float = 0,
                kvHeads: Int? = nil, positionEncoding: PositionEncoding = .learned, ropeTheta: Float = 10000,
                norm: NormKind = .layernorm, normEpsilon: Float = 1e-5, feedForward: FeedForwardKind = .gelu,
                hiddenWidth: Int? = nil, bias: Bool = true, tiedEmbeddings: Bool = true) {
        self.vocabSize = vocabSize
        self.contextLength = contextLength
        self.layers = layers
        self.heads = heads
        self.width = width
        self.dropout = dropout
        self.kvHeads = kvHeads ?? heads
        self.positionEncoding = positionEncoding
        self.ropeTheta = ropeTheta
        self.norm = norm
        self.normEpsilon = normEpsilon
        self.feedForward = feedForward
        self.hiddenWidth = hiddenWidth ?? GPTConfig.defaultHiddenWidth(width: width, feedForward: feedForward)
        self.bias = bias
        self.tiedEmbeddings = tiedEmbeddings
    }

    /// A Llama-style model: rotary positions, RMSNorm (ε 1e-5), SwiGLU, no biases, untied head;
    /// `kvHeads` below `heads` gives grouped-query attention.
    public static func llama(vocabSize: Int, contextLength: Int, layers: Int, heads: Int, width: Int,
                             kvHeads: Int? = nil, hiddenWidth: Int? = nil, dropout: Float = 0) -> GPTConfig {
        GPTConfig(vocabSize: vocabSize, contextLength: contextLength, layers: layers, heads: heads, width: width,
                  dropout: dropout, kvHeads: kvHeads, positionEncoding: .rope, norm: .rmsnorm, feedForward: .swiglu,
                  hiddenWidth: hiddenWidth, bias: false, tiedEmbeddings: false)
    }

    /// 4C for GELU; for SwiGLU two thirds of that (the same parameter count with three matrices),
    /// rounded up to a multiple of 32, as Llama does.
    public static func defaultHiddenWidth(width: Int, feedForward: FeedForwardKind) -> Int {
        switch feedForward {
        case .gelu: return 4 * width
        case .swiglu: return max(32, (8 * width / 3 + 31) / 32 * 32)
        }
    }

    /// "gpt2" when every option is GPT-2's, "llama" when every option is Llama's, else "custom".
    public var architectureName: String {
        if positionEncoding == .learned && norm == .layernorm && feedForward == .gelu && bias && tiedEmbeddings
            && kvHeads == heads { return "gpt2" }
        if positionEncoding == .rope && norm == .rmsnorm && feedForward == .swiglu && !bias { return "llama" }
        return "custom"
    }

    /// Channels of the keys (and of the values) of one position: kvHeads · headSize.
    public var kvWidth: Int { kvHeads * headSize }
    /// Columns of the fused query/key/value projection: C + 2 · kvWidth.
    public var qkvWidth: Int { width + 2 * kvWidth }
    /// Columns of the first feed-forward matrix: H (GELU) or 2H (SwiGLU: gate then up).
    public var feedForwardInputWidth: Int { feedForward == .swiglu ? 2 * hiddenWidth : hiddenWidth }

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size"
        case contextLength = "n_positions"
        case layers = "n_layer"
        case heads = "n_head"
        case width = "n_embd"
        case dropout = "dropout"
        case kvHeads = "n_kv_head"
        case positionEncoding = "position_encoding"
        case ropeTheta = "rope_theta"
        case norm = "norm"
        case normEpsilon = "norm_epsilon"
        case feedForward = "feed_forward"
        case hiddenWidth = "n_inner"
        case bias = "bias"
        case tiedEmbeddings = "tie_word_embeddings"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        contextLength = try c.decode(Int.self, forKey: .contextLength)
        layers = try c.decode(Int.self, forKey: .layers)
        heads = try c.decode(Int.self, forKey: .heads)
        width = try c.decode(Int.self, forKey: .width)
        dropout = try c.decodeIfPresent(Float.self, forKey: .dropout) ?? 0
        kvHeads = try c.decodeIfPresent(Int.self, forKey: .kvHeads) ?? heads
        positionEncoding = try c.decodeIfPresent(PositionEncoding.self, forKey: .positionEncoding) ?? .learned
        ropeTheta = try c.decodeIfPresent(Float.self, forKey: .ropeTheta) ?? 10000
        norm = try c.decodeIfPresent(NormKind.self, forKey: .norm) ?? .layernorm
        normEpsilon = try c.decodeIfPresent(Float.self, forKey: .normEpsilon) ?? 1e-5
        feedForward = try c.decodeIfPresent(FeedForwardKind.self, forKey: .feedForward) ?? .gelu
        hiddenWidth = try c.decodeIfPresent(Int.self, forKey: .hiddenWidth)
            ?? GPTConfig.defaultHiddenWidth(width: width, feedForward: feedForward)
        bias = try c.decodeIfPresent(Bool.self, forKey: .bias) ?? true
        tiedEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tiedEmbeddings) ?? true
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
        if kvHeads <= 0 || heads % kvHeads != 0 {
            throw bad("kv heads \(kvHeads) does not divide heads \(heads)",
                      "use a divisor of the head count (\(heads) for ordinary attention, 1 for multi-query)")
        }
        if positionEncoding == .rope && headSize % 2 != 0 {
            throw bad("rotary positions need an even head size, but width \(width) / heads \(heads) = \(headSize)",
                      "choose width and heads so that width/heads is even")
        }
        if !(ropeTheta > 1) || !ropeTheta.isFinite { throw bad("rope_theta is \(ropeTheta)", "use a base above 1, e.g. 10000") }
        if !(normEpsilon > 0 && normEpsilon < 1) { throw bad("norm epsilon is \(normEpsilon)", "use a small positive value, e.g. 1e-5") }
        if hiddenWidth <= 0 { throw bad("feed-forward width is \(hiddenWidth)", "use a positive width, e.g. 4 × width") }
    }

    /// Parameter count (with the padded vocabulary, as allocated).
    public var parameterCount: Int { GPTLayout.parameterEntries(self).reduce(0) { $0 + $1.count } }

    /// Named sizes used by benchmarks and the quickstart.
    public static func preset(_ name: String) -> (config: GPTConfig, batchSize: Int)? {
        switch name {
        case "char-baby": return (GPTConfig(vocabSize: 65, contextLength: 64, layers: 4, heads: 4, width: 128), 12)
        case "char-small": return (GPTConfig(vocabSize: 65, contextLength: 256, layers: 6, heads: 6, width: 384), 64)
        case "gpt2-124m": return (GPTConfig(vocabSize: 50257, contextLength: 1024, layers: 12, heads: 12, width: 768), 4)
        case "llama-small":
            return (GPTConfig.llama(vocabSize: 65, contextLength: 256, layers: 6, heads: 6, width: 384, kvHeads: 2), 64)
        default: return nil
        }
    }

    public static let presetNames = ["char-baby", "char-small", "gpt2-124m", "llama-small"]
}
