// How Hugging Face's GPT2LMHeadModel and LlamaForCausalLM state dicts map onto our parameter table.
//
// Our layout fuses some HF tensors: the query/key/value projections are one (C + 2·kvWidth, C)
// matrix, and SwiGLU's gate and up projections one (2H, C) matrix (gate rows first). HF's GPT-2
// stores its linear weights as Conv1D (in, out); ours are (out, in) like torch.nn.Linear. Our
// vocabulary tables are padded to a multiple of 64 rows; HF's are not.

import Compute

/// One of our parameters and the HF tensors it is made of (stacked by rows, in order).
public struct HuggingFaceTensorMapping: Sendable {
    public let ours: String
    public let parts: [String]
    /// HF stores this tensor transposed (GPT-2's Conv1D).
    public let transposed: Bool
    /// A vocabulary table: our copy has padding rows that HF's does not.
    public let vocabularyTable: Bool
}

public enum HuggingFaceLayout {
    /// The tensors of `config`'s model in HF naming, for `modelType` "gpt2" or "llama"; `prefix`
    /// is GPT-2's "transformer." (or "" for checkpoints saved from the bare GPT2Model).
    public static func mappings(_ config: GPTConfig, modelType: String, prefix: String) -> [HuggingFaceTensorMapping] {
        GPTLayout.parameterEntries(config).map { entry in
            let name = entry.name
            let table = name == "wte.weight" || name == "lm_head.weight"
            if modelType == "gpt2" {
                let hf = name == "lm_head.weight" ? name : prefix + name
                let conv1D = entry.shape.count == 2 && (name.hasSuffix("c_attn.weight") || name.hasSuffix("c_proj.weight")
                                                         || name.hasSuffix("c_fc.weight"))
                return HuggingFaceTensorMapping(ours: name, parts: [hf], transposed: conv1D, vocabularyTable: table)
            }
            let parts: [String]
            switch name {
            case "wte.weight": parts = ["model.embed_tokens.weight"]
            case "lm_head.weight": parts = ["lm_head.weight"]
            case "ln_f.weight": parts = ["model.norm.weight"]
            default:
                // h.<l>.<rest>
                let pieces = name.split(separator: ".", maxSplits: 2).map(String.init)
                let layer = "model.layers.\(pieces[1]).", rest = pieces[2]
                let kind = rest.hasSuffix(".bias") ? "bias" : "weight"
                switch rest {
                case "ln_1.weight": parts = [layer + "input_layernorm.weight"]
                case "ln_2.weight": parts = [layer + "post_attention_layernorm.weight"]
                case "attn.c_attn.weight", "attn.c_attn.bias": parts = ["q_proj", "k_proj", "v_proj"].map { layer + "self_attn.\($0).\(kind)" }
                case "attn.c_proj.weight", "attn.c_proj.bias": parts = [layer + "self_attn.o_proj.\(kind)"]
                case "mlp.c_fc.weight", "mlp.c_fc.bias": parts = ["gate_proj", "up_proj"].map { layer + "mlp.\($0).\(kind)" }
                case "mlp.c_proj.weight", "mlp.c_proj.bias": parts = [layer + "mlp.down_proj.\(kind)"]
                default: parts = [layer + rest]
                }
            }
            return HuggingFaceTensorMapping(ours: name, parts: parts, transposed: false, vocabularyTable: table)
        }
    }

    /// The HF tensors (name and shape) one of our parameters becomes.
    public static func huggingFaceShapes(_ mapping: HuggingFaceTensorMapping, entry: ArenaEntry, config: GPTConfig) -> [(name: String, shape: [Int])] {
        let matrix = entry.shape.count == 2
        let columns = matrix ? entry.shape[1] : 1
        let rows = mapping.vocabularyTable ? config.vocabSize : entry.shape[0]
        let partRows: [Int]
        switch mapping.parts.count {
        case 3: partRows = [config.width, config.kvWidth, config.kvWidth]
        case 2: partRows = [config.hiddenWidth, config.hiddenWidth]
        default: partRows = [rows]
        }
        return zip(mapping.parts, partRows).map { part, n in
            (part, !matrix ? [n] : mapping.transposed ? [columns, n] : [n, columns])
        }
    }

    /// Our values for `entry` from its HF tensors, in `mapping.parts` order. A position table may
    /// have more rows than ours (a shortened context keeps the first ones).
    public static func toOurs(_ mapping: HuggingFaceTensorMapping, entry: ArenaEntry, config: GPTConfig,
                              parts: [(shape: [Int], values: [Float])]) throws -> [Float] {
        let expected = huggingFaceShapes(mapping, entry: entry, config: config)
        var values: [Float] = []
        values.reserveCapacity(entry.count)
        for ((name, shape), part) in zip(expected, parts) {
            let longerPositionTable = mapping.ours == "wpe.weight" && part.shape.count == 2 && part.shape[1] == shape[1]
                && part.shape[0] > shape[0]
            guard part.shape == shape || longerPositionTable else {
                throw ModelError.shapeMismatch("\(name) has shape \(part.shape), the configuration needs \(shape) for \(mapping.ours)")
            }
            if mapping.transposed {
                values += transpose(part.values, rows: shape[0], cols: shape[1])
            } else {
                values += part.values.prefix(shape.reduce(1, *))
            }
        }
        values += [Float](repeating: 0, count: entry.count - values.count)  // vocabulary padding rows
        return values
    }

    /// The HF tensors of one of our parameters (the inverse of `toOurs`).
    public static func toHuggingFace(_ mapping: HuggingFaceTensorMapping, entry: ArenaEntry, config: GPTConfig,
                                     values: [Float]) -> [(name: String, shape: [Int], values: [Float])] {
        var start = 0
        return huggingFaceShapes(mapping, entry: entry, config: config).map { name, shape in
            let count = shape.reduce(1, *)
            defer { start += count }
            let slice = Array(values[start..<(start + count)])
            return (name, shape, mapping.transposed ? transpose(slice, rows: shape[1], cols: shape[0]) : slice)
        }
    }
}

/// (rows, cols) row-major → (cols, rows) row-major.
public func transpose(_ values: [Float], rows: Int, cols: Int) -> [Float] {
    var out = [Float](repeating: 0, count: values.count)
    values.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            for r in 0..<rows { for c in 0..<cols { dst[c * rows + r] = src[r * cols + c] } }
        }
    }
    return out
}

extension GPT {
    /// Loads every parameter from a Hugging Face GPT-2 state dict (names with the given prefix).
    public func loadHuggingFaceGPT2(_ file: SafetensorsFile, prefix: String = "transformer.") throws {
        let entries = Dictionary(uniqueKeysWithValues: parameters.entries.map { ($0.name, $0) })
        for mapping in HuggingFaceLayout.mappings(config, modelType: "gpt2", prefix: prefix) {
            let parts = try mapping.parts.map { name -> (shape: [Int], values: [Float]) in
                guard let info = file.tensors[name] else { throw ModelError.missingTensor(name, file: file.path) }
                return (info.shape, try file.floats(name))
            }
            try setParameter(mapping.ours, try HuggingFaceLayout.toOurs(mapping, entry: entries[mapping.ours]!, config: config, parts: parts))
        }
    }

    /// One of our GPT-2 tensors in HF's layout (Conv1D transposed, vocabulary unpadded).
    public func oursToHuggingFace(_ entry: ArenaEntry, _ values: [Float]) -> (shape: [Int], values: [Float]) {
        let mapping = HuggingFaceLayout.mappings(config, modelType: "gpt2", prefix: "").first { $0.ours == entry.name }!
        let tensor = HuggingFaceLayout.toHuggingFace(mapping, entry: entry, config: config, values: values)[0]
        return (tensor.shape, tensor.values)
    }
}
