// Checkpoints: a folder with model.safetensors (weights), config.json (GPTConfig),
// tokenizer.json, optimizer.safetensors (AdamW moments) and state.json (step, RNG, config).
//
// A run folder holds `last/` (most recent) and `best/` (lowest val loss). A checkpoint is written
// to `<name>.tmp/` (every file flushed to disk), then swapped in with renames: the previous
// checkpoint stays loadable until the new one is complete, and `<name>.old/` is used if a crash
// happened between the two renames.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Compute
import Model

public struct TrainState: Codable, Sendable {
    public var step: Int
    public var rng: SeededRandom
    public var bestValLoss: Double?
    public var tokensSeen: Int
    public var config: TrainConfig
    public var dataDirectory: String

    enum CodingKeys: String, CodingKey {
        case step, rng, config
        case bestValLoss = "best_val_loss"
        case tokensSeen = "tokens_seen"
        case dataDirectory = "data_directory"
    }
}

public enum Checkpoint {
    /// Writes the model's weights (no optimizer state) as `run/step-NNNNNN`, the snapshot that
    /// `--keep-checkpoints` keeps at each checkpoint of train, sft and dpo (to average with merge,
    /// or to evaluate along the run).
    public static func saveSnapshot(model: GPT, codec: TextCodec, step: Int, in run: String) throws {
        let digits = String(step), padded = String(repeating: "0", count: max(0, 6 - digits.count)) + digits
        try save(model: model, codec: codec, state: nil, to: run + "/step-" + padded)
    }

    /// Writes a checkpoint folder at `directory` atomically.
    public static func save(model: GPT, codec: TextCodec, state: TrainState?, to directory: String) throws {
        let fm = FileManager.default
        let temporary = directory + ".tmp", old = directory + ".old"
        try? fm.removeItem(atPath: temporary)
        do { try fm.createDirectory(atPath: temporary, withIntermediateDirectories: true) } catch {
            throw TrainingError.ioFailure(path: temporary, reason: "could not create the folder")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        do {
            try writeTensors(model, model.parameters, to: temporary + "/model.safetensors", metadata: ["format": "pt", "layout": "swiftgpt"])
            try AtomicFile.write(try encoder.encode(model.config), to: temporary + "/config.json")
            try codec.save(to: temporary + "/tokenizer.json")
            if let state {
                if let m = model.firstMoments, let v = model.secondMoments {
                    let tensors = model.hostTensors(m).map { ("m." + $0.name, $0.shape, $0.values) }
                        + model.hostTensors(v).map { ("v." + $0.name, $0.shape, $0.values) }
                    try AtomicFile.write(try SafetensorsFile.encode(tensors), to: temporary + "/optimizer.safetensors")
                }
                try AtomicFile.write(try encoder.encode(state), to: temporary + "/state.json")
            }
        } catch {
            // A failed write (a full disk, say) leaves the previous checkpoint as it was and frees
            // what the new one had taken.
            try? fm.removeItem(atPath: temporary)
            throw error
        }
        try? fm.removeItem(atPath: old)
        if fm.fileExists(atPath: directory) {
            do { try fm.moveItem(atPath: directory, toPath: old) } catch {
                throw TrainingError.ioFailure(path: directory, reason: "could not move the previous checkpoint aside (\(error))")
            }
        }
        do { try fm.moveItem(atPath: temporary, toPath: directory) } catch {
            throw TrainingError.ioFailure(path: directory, reason: "could not move the new checkpoint in place (\(error)); the previous one is in \(old)")
        }
        try? fm.removeItem(atPath: old)
    }

    /// Streams an arena to a safetensors file one tensor at a time (a 1B-parameter model needs no
    /// second copy of its weights in memory).
    static func writeTensors(_ model: GPT, _ arena: Arena, prefix: String = "", to path: String,
                             metadata: [String: String] = [:]) throws {
        let header = try SafetensorsFile.header(arena.entries.map { (prefix + $0.name, $0.shape) }, metadata: metadata)
        try AtomicFile.write(to: path) { emit in
            try header.withUnsafeBytes { try emit($0) }
            var host: [Float] = []
            for (i, entry) in arena.entries.enumerated() {
                if host.count != entry.count { host = [Float](repeating: 0, count: entry.count) }
                host.withUnsafeMutableBufferPointer { model.backend.download(arena[i], into: $0) }
                try host.withUnsafeBytes { try emit($0) }  // little-endian hosts only
            }
        }
    }

    /// The checkpoint folder `path` names: itself if it holds model.safetensors, else its `best/`
    /// or `last/` (or their `.old` left by an interrupted swap).
    public static func resolve(_ path: String, prefer: [String] = ["best", "last"]) throws -> String {
        let fm = FileManager.default
        if fm.fileExists(atPath: path + "/model.safetensors") { return path }
        for name in prefer {
            for candidate in [path + "/" + name, path + "/" + name + ".old"] where fm.fileExists(atPath: candidate + "/model.safetensors") {
                return candidate
            }
        }
        if fm.fileExists(atPath: path + ".old/model.safetensors") { return path + ".old" }
        throw TrainingError.badCheckpoint(path: path, reason: "no model.safetensors here or in \(prefer.map { $0 + "/" }.joined(separator: " or "))")
    }

    /// The model configuration of the checkpoint folder `dir` (already resolved).
    static func readConfig(_ dir: String) throws -> GPTConfig {
        do { return try JSONDecoder().decode(GPTConfig.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) } catch {
            throw TrainingError.badCheckpoint(path: dir, reason: "config.json is missing or malformed (\(error))")
        }
    }

    /// Loads a model (and its tokenizer and training state, when present).
    public static func load(_ path: String, backend: any Backend, prefer: [String] = ["best", "last"],
                            loadOptimizer: Bool = false) throws -> (model: GPT, codec: TextCodec, state: TrainState?, directory: String) {
        let dir = try resolve(path, prefer: prefer)
        let config = try readConfig(dir)
        let model = try GPT(config: config, backend: backend)
        let weights = try SafetensorsFile(path: dir + "/model.safetensors")
        try model.loadTensors(into: model.parameters) { try weights.floats($0) }
        let codec = try TextCodec.load(path: dir + "/tokenizer.json")
        guard codec.vocabularySize == config.vocabSize else {
            throw TrainingError.badCheckpoint(path: dir, reason: "tokenizer.json has \(codec.vocabularySize) tokens, the model \(config.vocabSize)")
        }
        var state: TrainState? = nil
        if let data = try? Data(contentsOf: URL(fileURLWithPath: dir + "/state.json")) {
            do { state = try JSONDecoder().decode(TrainState.self, from: data) } catch {
                throw TrainingError.badCheckpoint(path: dir, reason: "state.json is malformed (\(error))")
            }
        }
        if loadOptimizer {
            let optimizer = try SafetensorsFile(path: dir + "/optimizer.safetensors")
            try model.ensureOptimizerState()
            try model.loadTensors(into: model.firstMoments!) { try optimizer.floats("m." + $0) }
            try model.loadTensors(into: model.secondMoments!) { try optimizer.floats("v." + $0) }
        }
        return (model, codec, state, dir)
    }
}
