// Weight averaging of checkpoints ("model soup", checkpoint averaging): θ = Σ wᵢ θᵢ / Σ wᵢ over
// models of one architecture and one tokenizer — several fine-tunes of the same pre-trained model,
// or several checkpoints of one run. The result is an ordinary checkpoint of the same size.
//
// The average is taken one tensor at a time straight from the safetensors files, so merging n
// models needs memory for one model plus one tensor, not n models.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Compute
import Model

public enum ModelMerge {
    public struct Report: Sendable {
        /// The checkpoint folders that were averaged, in the order given.
        public let sources: [String]
        /// Their weights, normalised to sum to 1.
        public let weights: [Double]
        public let parameterCount: Int
        public let config: GPTConfig
    }

    /// Averages the checkpoints at `paths` (run or checkpoint folders, resolved like every other
    /// command: `best/` before `last/`) with `weights` (equal when nil) and writes the result to
    /// `output` as a checkpoint folder (model.safetensors, config.json, tokenizer.json, merge.json).
    public static func average(_ paths: [String], weights: [Double]? = nil, to output: String,
                               backend: any Backend = CPUBackend()) throws -> Report {
        guard paths.count >= 2 else {
            throw TrainingError.invalidSetting("merging needs at least two models, got \(paths.count)")
        }
        let normalised = try normalise(weights ?? Array(repeating: 1, count: paths.count), count: paths.count)
        let directories = try paths.map { try Checkpoint.resolve($0) }
        try checkOutput(output, inputs: directories)

        let configs = try directories.map(Checkpoint.readConfig)
        for (i, c) in configs.enumerated().dropFirst() where !sameArchitecture(c, configs[0]) {
            throw TrainingError.invalidSetting(
                "\(directories[i]) has another architecture than \(directories[0]) (\(describe(c)) against \(describe(configs[0]))); "
                + "only models of one architecture can be averaged")
        }
        let codecs = try directories.map { try TextCodec.load(path: $0 + "/tokenizer.json") }
        for (i, codec) in codecs.enumerated().dropFirst() {
            if let difference = try vocabularyDifference(codec, codecs[0]) {
                throw TrainingError.invalidSetting(
                    "\(directories[i]) has another tokenizer than \(directories[0]) (\(difference)); "
                    + "only fine-tunes of one pre-trained model (one tokenizer) can be averaged")
            }
        }

        let files = try directories.map { dir -> SafetensorsFile in
            do { return try SafetensorsFile(path: dir + "/model.safetensors") } catch {
                throw TrainingError.badCheckpoint(path: dir, reason: "model.safetensors is unreadable (\(error))")
            }
        }
        let model = try GPT(config: configs[0], backend: backend)
        try model.loadTensors(into: model.parameters) { name in
            var sum: [Double] = []
            for (file, w) in zip(files, normalised) {
                let values = try file.floats(name)
                if sum.isEmpty { sum = [Double](repeating: 0, count: values.count) }
                guard values.count == sum.count else {
                    throw ModelError.shapeMismatch("\(name): \(values.count) values in one model, \(sum.count) in another")
                }
                for i in values.indices { sum[i] += w * Double(values[i]) }
            }
            return sum.map { Float($0) }
        }
        try Checkpoint.save(model: model, codec: codecs[0], state: nil, to: output)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try AtomicFile.write(try encoder.encode(Provenance(sources: directories, weights: normalised)), to: output + "/merge.json")
        let count = model.parameters.entries.reduce(0) { $0 + $1.count }
        return Report(sources: directories, weights: normalised, parameterCount: count, config: configs[0])
    }

    /// The output may replace an earlier checkpoint folder, but never an input, a folder holding
    /// one (a run with best/ and last/), or anything that is not a checkpoint.
    static func checkOutput(_ output: String, inputs: [String]) throws {
        let out = URL(fileURLWithPath: output).standardizedFileURL.path
        for dir in inputs {
            let input = URL(fileURLWithPath: dir).standardizedFileURL.path
            if input == out || input.hasPrefix(out.hasSuffix("/") ? out : out + "/") {
                throw TrainingError.invalidSetting("--out \(output) is or holds one of the models being merged (\(dir)); write the merge to a new folder")
            }
        }
        let checkpointFiles: Set<String> = ["model.safetensors", "config.json", "tokenizer.json", "merge.json", "task.json",
                                            "optimizer.safetensors", "state.json"]
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: output),
           let other = entries.first(where: { !checkpointFiles.contains($0) }) {
            throw TrainingError.invalidSetting("--out \(output) already exists and holds \(other), so it is not a checkpoint folder; write the merge to a new folder")
        }
    }

    struct Provenance: Codable { let sources: [String]; let weights: [Double] }

    /// Weights scaled to sum to 1; each must be finite and not negative, and one above zero.
    static func normalise(_ weights: [Double], count: Int) throws -> [Double] {
        guard weights.count == count else {
            throw TrainingError.invalidSetting("\(weights.count) weights for \(count) models; give one weight per model")
        }
        guard weights.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
            throw TrainingError.invalidSetting("weights must be finite and not negative, got \(weights)")
        }
        let total = weights.reduce(0, +)
        guard total > 0 else { throw TrainingError.invalidSetting("the weights sum to 0; at least one must be positive") }
        return weights.map { $0 / total }
    }

    /// Same shapes and functions; the dropout probability (a training setting) may differ.
    static func sameArchitecture(_ a: GPTConfig, _ b: GPTConfig) -> Bool {
        var a = a, b = b
        a.dropout = 0; b.dropout = 0
        return a == b
    }

    static func describe(_ c: GPTConfig) -> String {
        "\(c.layers) layers, \(c.heads) heads, width \(c.width), context \(c.contextLength), vocabulary \(c.vocabSize)"
    }

    /// Nil when both codecs map every id to the same bytes (and mark the same special tokens), else what differs.
    static func vocabularyDifference(_ a: TextCodec, _ b: TextCodec) throws -> String? {
        if a.kind != b.kind { return "\(a.kind) against \(b.kind)" }
        if a.vocabularySize != b.vocabularySize { return "\(a.vocabularySize) tokens against \(b.vocabularySize)" }
        for id in 0..<Int32(a.vocabularySize) where try a.bytes(of: id) != b.bytes(of: id) {
            return "token \(id) differs"
        }
        if case .bpe(let x) = a, case .bpe(let y) = b, x.specialTokens != y.specialTokens {
            return "different special tokens"
        }
        return nil
    }
}
