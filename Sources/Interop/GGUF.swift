// GGUF export for llama.cpp: `convert --model RUN --to-gguf FILE --type f32|f16|q8_0`.
//
// The file (version 3): "GGUF", version, tensor count, metadata count; metadata key/value pairs;
// one info record per tensor (name, dimensions innermost first, ggml type, offset); padding to
// the alignment; then the tensor data, each tensor aligned. Everything is little-endian.
//
// Tensor names and metadata keys are llama.cpp's for its `gpt2` and `llama` architectures. llama.cpp
// rotates adjacent channel pairs (2i, 2i+1) where Hugging Face and SwiftGPT rotate (i, i + hs/2),
// so the query and key rows of every head are interleaved on the way out, as llama.cpp's own
// converter does for Hugging Face Llama checkpoints.

import Compute
import Foundation
import Model
import Tokenizer
import Training

/// Storage type of the matrices in a GGUF file (vectors always stay f32).
public enum GGUFType: String, Sendable, CaseIterable {
    case f32, f16, q8_0

    var fileType: UInt32 {
        switch self {
        case .f32: return 0  // LLAMA_FTYPE_ALL_F32
        case .f16: return 1  // LLAMA_FTYPE_MOSTLY_F16
        case .q8_0: return 7 // LLAMA_FTYPE_MOSTLY_Q8_0
        }
    }
}

/// ggml tensor types used here.
enum GGMLType: UInt32 {
    case f32 = 0, f16 = 1, q8_0 = 8
}

/// Metadata values of the kinds GGUF export needs.
enum GGUFValue {
    case uint32(UInt32)
    case float32(Float)
    case bool(Bool)
    case string(String)
    case strings([String])
    case int32s([Int32])
}

/// Builds a GGUF file in memory.
struct GGUFWriter {
    static let alignment = 32
    private var metadata: [(String, GGUFValue)] = []
    private var tensors: [(name: String, dims: [Int], type: GGMLType, data: [UInt8])] = []

    mutating func set(_ key: String, _ value: GGUFValue) { metadata.append((key, value)) }

    /// Adds a tensor of `shape` (outermost first, as in PyTorch) from fp32 values.
    mutating func add(_ name: String, shape: [Int], values: [Float], type requested: GGMLType) {
        // Vectors stay f32; q8_0 needs rows that are a multiple of its 32-value blocks.
        var type = shape.count < 2 ? .f32 : requested
        if type == .q8_0 && shape.last! % 32 != 0 { type = .f16 }
        let bytes: [UInt8]
        switch type {
        case .f32: bytes = values.withUnsafeBytes { Array($0) }
        case .f16:
            var out = [UInt8](repeating: 0, count: 2 * values.count)
            for (i, v) in values.enumerated() {
                let h = floatToHalf(v)
                out[2 * i] = UInt8(h & 0xFF)
                out[2 * i + 1] = UInt8(h >> 8)
            }
            bytes = out
        case .q8_0: bytes = quantizeQ8_0(values)
        }
        tensors.append((name, shape.reversed(), type, bytes))
    }

    func encoded() -> Data {
        var out = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func string(_ s: String) { let b = Array(s.utf8); u64(UInt64(b.count)); out.append(contentsOf: b) }
        out.append(contentsOf: Array("GGUF".utf8))
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(metadata.count))
        for (key, value) in metadata {
            string(key)
            switch value {
            case .uint32(let v): u32(4); u32(v)
            case .float32(let v): u32(6); u32(v.bitPattern)
            case .bool(let v): u32(7); out.append(v ? 1 : 0)
            case .string(let s): u32(8); string(s)
            case .strings(let list): u32(9); u32(8); u64(UInt64(list.count)); list.forEach(string)
            case .int32s(let list): u32(9); u32(5); u64(UInt64(list.count)); list.forEach { u32(UInt32(bitPattern: $0)) }
            }
        }
        var offset = 0
        for t in tensors {
            string(t.name)
            u32(UInt32(t.dims.count))
            t.dims.forEach { u64(UInt64($0)) }
            u32(t.type.rawValue)
            u64(UInt64(offset))
            offset += (t.data.count + Self.alignment - 1) / Self.alignment * Self.alignment
        }
        func pad() { while out.count % Self.alignment != 0 { out.append(0) } }
        pad()
        for t in tensors {
            out.append(contentsOf: t.data)
            pad()
        }
        return out
    }
}

/// q8_0: blocks of 32 values stored as an f16 scale d = max|x|/127 and 32 int8 round(x/d).
func quantizeQ8_0(_ values: [Float]) -> [UInt8] {
    precondition(values.count % 32 == 0)
    var out = [UInt8](repeating: 0, count: values.count / 32 * 34)
    for b in 0..<(values.count / 32) {
        var amax: Float = 0
        for i in 0..<32 { amax = max(amax, abs(values[b * 32 + i])) }
        let d = amax / 127
        let inverse: Float = d != 0 ? 1 / d : 0
        let h = floatToHalf(d)
        out[b * 34] = UInt8(h & 0xFF)
        out[b * 34 + 1] = UInt8(h >> 8)
        for i in 0..<32 {
            out[b * 34 + 2 + i] = UInt8(bitPattern: Int8((values[b * 32 + i] * inverse).rounded(.toNearestOrAwayFromZero)))
        }
    }
    return out
}

/// IEEE float to half, rounding to nearest even (overflow → ±inf, NaN kept).
func floatToHalf(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    let sign = UInt16((bits >> 16) & 0x8000)
    let exponent = Int((bits >> 23) & 0xFF)
    var mantissa = bits & 0x7F_FFFF
    if exponent == 0xFF { return sign | 0x7C00 | (mantissa != 0 ? 0x200 : 0) }
    let e = exponent - 127 + 15
    if e >= 31 { return sign | 0x7C00 }
    if e <= 0 {
        // Subnormal half (or zero): shift the implicit bit in and round.
        if e < -10 { return sign }
        mantissa |= 0x80_0000
        let shift = UInt32(14 - e)
        var half = mantissa >> shift
        let rest = mantissa & ((1 << shift) - 1), halfway = UInt32(1) << (shift - 1)
        if rest > halfway || (rest == halfway && half & 1 == 1) { half += 1 }
        return sign | UInt16(half)
    }
    var half = UInt32(e) << 10 | (mantissa >> 13)
    let rest = mantissa & 0x1FFF
    if rest > 0x1000 || (rest == 0x1000 && half & 1 == 1) { half += 1 }  // may carry into the exponent: still correct
    return sign | UInt16(half)
}

public enum GGUFExporter {
    /// Writes `model` with its tokenizer as a GGUF file llama.cpp runs.
    public static func export(_ model: GPT, codec: TextCodec, name: String, type: GGUFType, to path: String) throws {
        let config = model.config
        let architecture = try HuggingFaceFormat.modelType(for: config)
        guard case .bpe(let bpe) = codec else {
            throw InteropError.unsupported("a character-level tokenizer", hint: "llama.cpp needs a BPE tokenizer; train one with `swiftgpt tokenizer train`")
        }
        var w = GGUFWriter()
        let a = architecture
        w.set("general.architecture", .string(a))
        w.set("general.name", .string(name))
        w.set("general.file_type", .uint32(type.fileType))
        w.set("general.alignment", .uint32(UInt32(GGUFWriter.alignment)))
        w.set("\(a).context_length", .uint32(UInt32(config.contextLength)))
        w.set("\(a).embedding_length", .uint32(UInt32(config.width)))
        w.set("\(a).feed_forward_length", .uint32(UInt32(config.hiddenWidth)))
        w.set("\(a).block_count", .uint32(UInt32(config.layers)))
        w.set("\(a).attention.head_count", .uint32(UInt32(config.heads)))
        if a == "llama" {
            w.set("llama.attention.head_count_kv", .uint32(UInt32(config.kvHeads)))
            w.set("llama.rope.freq_base", .float32(config.ropeTheta))
            w.set("llama.rope.dimension_count", .uint32(UInt32(config.headSize)))
            w.set("llama.attention.layer_norm_rms_epsilon", .float32(config.normEpsilon))
            w.set("llama.vocab_size", .uint32(UInt32(config.vocabSize)))
        } else {
            w.set("gpt2.attention.layer_norm_epsilon", .float32(config.normEpsilon))
        }
        addTokenizer(bpe, to: &w)

        let tensorType: GGMLType = type == .f32 ? .f32 : type == .f16 ? .f16 : .q8_0
        let host = Dictionary(uniqueKeysWithValues: model.hostTensors(model.parameters).map { ($0.name, ($0.shape, $0.values)) })
        let C = config.width, V = config.vocabSize, hs = config.headSize, H = config.hiddenWidth
        func matrix(_ name: String, rows: Int? = nil) -> (shape: [Int], values: [Float]) {
            let (shape, values) = host[name]!
            let r = rows ?? shape[0]
            return ([r, shape[1]], Array(values.prefix(r * shape[1])))
        }
        func vector(_ name: String) -> (shape: [Int], values: [Float]) {
            if let (shape, values) = host[name] { return (shape, values) }
            // A configuration without this bias: zeros give the same function.
            let n = name.hasSuffix("c_attn.bias") ? config.qkvWidth : name.hasSuffix("c_fc.bias") ? config.feedForwardInputWidth : C
            return ([n], [Float](repeating: 0, count: n))
        }
        func put(_ ggufName: String, _ tensor: (shape: [Int], values: [Float])) {
            w.add(ggufName, shape: tensor.shape, values: tensor.values, type: tensorType)
        }
        put("token_embd.weight", matrix("wte.weight", rows: V))
        if a == "gpt2" { put("position_embd.weight", matrix("wpe.weight")) }
        for l in 0..<config.layers {
            let p = "h.\(l).", b = "blk.\(l)."
            put(b + "attn_norm.weight", vector(p + "ln_1.weight"))
            put(b + "ffn_norm.weight", vector(p + "ln_2.weight"))
            if a == "gpt2" {
                put(b + "attn_norm.bias", vector(p + "ln_1.bias"))
                put(b + "attn_qkv.weight", matrix(p + "attn.c_attn.weight"))
                put(b + "attn_qkv.bias", vector(p + "attn.c_attn.bias"))
                put(b + "attn_output.weight", matrix(p + "attn.c_proj.weight"))
                put(b + "attn_output.bias", vector(p + "attn.c_proj.bias"))
                put(b + "ffn_norm.bias", vector(p + "ln_2.bias"))
                put(b + "ffn_up.weight", matrix(p + "mlp.c_fc.weight"))
                put(b + "ffn_up.bias", vector(p + "mlp.c_fc.bias"))
                put(b + "ffn_down.weight", matrix(p + "mlp.c_proj.weight"))
                put(b + "ffn_down.bias", vector(p + "mlp.c_proj.bias"))
            } else {
                let qkv = matrix(p + "attn.c_attn.weight").values
                let kv = config.kvWidth
                let q = Array(qkv[0..<(C * C)]), k = Array(qkv[(C * C)..<((C + kv) * C)]), v = Array(qkv[((C + kv) * C)...])
                put(b + "attn_q.weight", ([C, C], interleaveRotaryRows(q, heads: config.heads, headSize: hs, columns: C)))
                put(b + "attn_k.weight", ([kv, C], interleaveRotaryRows(k, heads: config.kvHeads, headSize: hs, columns: C)))
                put(b + "attn_v.weight", ([kv, C], v))
                put(b + "attn_output.weight", matrix(p + "attn.c_proj.weight"))
                let fc = matrix(p + "mlp.c_fc.weight").values
                put(b + "ffn_gate.weight", ([H, C], Array(fc[0..<(H * C)])))
                put(b + "ffn_up.weight", ([H, C], Array(fc[(H * C)...])))
                put(b + "ffn_down.weight", matrix(p + "mlp.c_proj.weight"))
                if config.bias {
                    // Optional in llama.cpp's llama architecture; queries and keys reordered like their rows.
                    let qkvBias = vector(p + "attn.c_attn.bias").values
                    put(b + "attn_q.bias", ([C], interleaveRotaryRows(Array(qkvBias[0..<C]), heads: config.heads, headSize: hs, columns: 1)))
                    put(b + "attn_k.bias", ([kv], interleaveRotaryRows(Array(qkvBias[C..<(C + kv)]), heads: config.kvHeads, headSize: hs, columns: 1)))
                    put(b + "attn_v.bias", ([kv], Array(qkvBias[(C + kv)...])))
                    put(b + "attn_output.bias", vector(p + "attn.c_proj.bias"))
                    let fcBias = vector(p + "mlp.c_fc.bias").values
                    put(b + "ffn_gate.bias", ([H], Array(fcBias[0..<H])))
                    put(b + "ffn_up.bias", ([H], Array(fcBias[H...])))
                    put(b + "ffn_down.bias", vector(p + "mlp.c_proj.bias"))
                }
            }
        }
        put("output_norm.weight", vector("ln_f.weight"))
        if a == "gpt2" { put("output_norm.bias", vector("ln_f.bias")) }
        if !config.tiedEmbeddings { put("output.weight", matrix("lm_head.weight", rows: V)) }
        try HuggingFaceConverter.write(w.encoded(), to: path)
    }

    /// The byte-level BPE vocabulary in llama.cpp's "gpt2" tokenizer model: tokens as Hugging Face
    /// spells them (bytes mapped to printable characters), merges in rank order, special tokens
    /// marked as control tokens.
    static func addTokenizer(_ bpe: BPE, to w: inout GGUFWriter) {
        let special = Dictionary(uniqueKeysWithValues: bpe.specialTokens.map { ($0.value, $0.key) })
        var tokens: [String] = [], types: [Int32] = []
        for (id, bytes) in bpe.tokenBytes.enumerated() {
            if let text = special[Int32(id)] {
                tokens.append(text)
                types.append(3)  // control
            } else {
                tokens.append(ByteLevelAlphabet.encode(bytes))
                types.append(1)  // normal
            }
        }
        let merges = bpe.merges.map {
            ByteLevelAlphabet.encode(bpe.tokenBytes[Int($0.left)]) + " " + ByteLevelAlphabet.encode(bpe.tokenBytes[Int($0.right)])
        }
        w.set("tokenizer.ggml.model", .string("gpt2"))
        // llama.cpp's names for the two split regexes (GPT-2's, and the GPT-4 one Llama 3 uses).
        w.set("tokenizer.ggml.pre", .string(bpe.pattern == .gpt2 ? "gpt-2" : "llama-bpe"))
        w.set("tokenizer.ggml.tokens", .strings(tokens))
        w.set("tokenizer.ggml.token_type", .int32s(types))
        w.set("tokenizer.ggml.merges", .strings(merges))
        if let eot = bpe.specialTokens[ChatTokens.endOfText] {
            w.set("tokenizer.ggml.bos_token_id", .uint32(UInt32(eot)))
            w.set("tokenizer.ggml.eos_token_id", .uint32(UInt32(eot)))
        }
        // SwiftGPT models never saw a BOS token in front of a prompt (llama-bpe would add one).
        w.set("tokenizer.ggml.add_bos_token", .bool(false))
        w.set("tokenizer.ggml.add_eos_token", .bool(false))
    }

    /// Reorders each head's rows from Hugging Face's rotary layout (pairs i, i + hs/2) to
    /// llama.cpp's (pairs 2i, 2i + 1): new row 2i + j is old row j·hs/2 + i.
    static func interleaveRotaryRows(_ w: [Float], heads: Int, headSize hs: Int, columns: Int) -> [Float] {
        var out = w
        let half = hs / 2
        for h in 0..<heads {
            for i in 0..<half {
                for j in 0..<2 {
                    let src = (h * hs + j * half + i) * columns, dst = (h * hs + 2 * i + j) * columns
                    for c in 0..<columns { out[dst + c] = w[src + c] }
                }
            }
        }
        return out
    }
}
