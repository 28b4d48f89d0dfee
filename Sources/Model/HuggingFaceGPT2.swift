// Mapping between Hugging Face GPT-2 state-dict tensors and our layout.
// HF's Conv1D stores weights as (in, out); ours are (out, in) like torch.nn.Linear.

import Compute

extension GPT {
    /// Loads every parameter from a Hugging Face GPT-2 state dict (names with or without the
    /// "transformer." prefix). Conv1D weights are transposed; the vocabulary is zero-padded.
    public func loadHuggingFaceGPT2(_ file: SafetensorsFile, prefix: String = "transformer.") throws {
        for entry in parameters.entries {
            let name = prefix + entry.name
            guard file.tensors[name] != nil else { throw ModelError.missingTensor(name, file: file.path) }
            try setParameter(entry.name, try huggingFaceToOurs(entry, file.floats(name), shape: file.tensors[name]!.shape))
        }
    }

    /// Converts one HF tensor to our layout for `entry`.
    public func huggingFaceToOurs(_ entry: ArenaEntry, _ values: [Float], shape: [Int]) throws -> [Float] {
        let name = entry.name
        if entry.shape.count == 2 && (name.hasSuffix("c_attn.weight") || name.hasSuffix("c_proj.weight") || name.hasSuffix("c_fc.weight")) {
            let outC = entry.shape[0], inC = entry.shape[1]
            guard shape == [inC, outC] else { throw ModelError.shapeMismatch("\(name): expected HF shape [\(inC), \(outC)], got \(shape)") }
            var out = [Float](repeating: 0, count: outC * inC)
            for i in 0..<inC { for o in 0..<outC { out[o * inC + i] = values[i * outC + o] } }
            return out
        }
        if name == "wte.weight" {
            let C = entry.shape[1]
            guard shape == [config.vocabSize, C] else {
                throw ModelError.shapeMismatch("wte: expected [\(config.vocabSize), \(C)], got \(shape)")
            }
            return values + [Float](repeating: 0, count: (entry.shape[0] - config.vocabSize) * C)
        }
        guard shape == entry.shape else { throw ModelError.shapeMismatch("\(name): expected \(entry.shape), got \(shape)") }
        return values
    }

    /// Converts one of our tensors to HF's layout (the inverse of `huggingFaceToOurs`).
    public func oursToHuggingFace(_ entry: ArenaEntry, _ values: [Float]) -> (shape: [Int], values: [Float]) {
        let name = entry.name
        if entry.shape.count == 2 && (name.hasSuffix("c_attn.weight") || name.hasSuffix("c_proj.weight") || name.hasSuffix("c_fc.weight")) {
            let outC = entry.shape[0], inC = entry.shape[1]
            var out = [Float](repeating: 0, count: outC * inC)
            for i in 0..<inC { for o in 0..<outC { out[i * outC + o] = values[o * inC + i] } }
            return ([inC, outC], out)
        }
        if name == "wte.weight" {
            let C = entry.shape[1]
            return ([config.vocabSize, C], Array(values[0..<(config.vocabSize * C)]))
        }
        return (entry.shape, values)
    }
}


