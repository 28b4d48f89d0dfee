// `convert --from-hf` and `convert --to-hf`: Hugging Face model directories in and out.

import Compute
import Foundation
import Model
import Tokenizer
import Training

/// The safetensors files of a HF directory: one `model.safetensors`, or shards listed by
/// `model.safetensors.index.json`. Files are memory-mapped; a tensor is read when asked for.
struct HuggingFaceTensors {
    let directory: String
    private let files: [String: SafetensorsFile]  // file name → file
    private let location: [String: String]        // tensor name → file name

    init(directory: String) throws {
        let fm = FileManager.default
        let indexPath = directory + "/model.safetensors.index.json"
        var files: [String: SafetensorsFile] = [:]
        var location: [String: String] = [:]
        if fm.fileExists(atPath: indexPath) {
            guard let data = fm.contents(atPath: indexPath),
                  let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
                  let map = json["weight_map"] as? [String: String] else {
                throw InteropError.badInput(path: indexPath, reason: "it has no \"weight_map\" object of tensor name → file name")
            }
            for file in Set(map.values).sorted() {
                guard !file.contains("/"), !file.hasPrefix(".") else {
                    throw InteropError.badInput(path: indexPath, reason: "shard name \"\(file)\" points outside the directory")
                }
                guard fm.fileExists(atPath: directory + "/" + file) else {
                    throw InteropError.badInput(path: indexPath, reason: "it names the shard \(file), which is missing from \(directory)")
                }
                files[file] = try SafetensorsFile(path: directory + "/" + file)
            }
            for (tensor, file) in map {
                guard files[file]!.tensors[tensor] != nil else {
                    throw InteropError.badInput(path: directory + "/" + file, reason: "the index says it holds \(tensor), but it does not")
                }
                location[tensor] = file
            }
        } else if fm.fileExists(atPath: directory + "/model.safetensors") {
            let file = try SafetensorsFile(path: directory + "/model.safetensors")
            files["model.safetensors"] = file
            for name in file.tensors.keys { location[name] = "model.safetensors" }
        } else if fm.fileExists(atPath: directory + "/pytorch_model.bin") {
            throw InteropError.unsupported("PyTorch pickle weights (pytorch_model.bin)",
                                           hint: "save the model with safe_serialization=True (model.safetensors); pickles can run code and are not read")
        } else {
            throw InteropError.badInput(path: directory, reason: "there is no model.safetensors or model.safetensors.index.json")
        }
        self.directory = directory
        self.files = files
        self.location = location
    }

    func has(_ name: String) -> Bool { location[name] != nil }

    func tensor(_ name: String) throws -> (shape: [Int], values: [Float]) {
        guard let fileName = location[name], let file = files[fileName] else {
            throw InteropError.badInput(path: directory, reason: "tensor \(name) is missing")
        }
        let info = file.tensors[name]!
        guard ["F32", "F16", "BF16"].contains(info.dtype) else {
            throw InteropError.unsupported("tensor \(name) has dtype \(info.dtype)", hint: "convert reads F32, F16 and BF16 weights")
        }
        return (info.shape, try file.floats(name))
    }

    /// dtypes of the weights (for the report).
    var dtypes: Set<String> { Set(files.values.flatMap { $0.tensors.values.map(\.dtype) }) }
}

public struct ConversionReport: Sendable {
    public var modelType: String
    public var config: GPTConfig
    public var parameterCount: Int
    public var sourceDtypes: [String]
    public var notes: [String]
}

public enum HuggingFaceConverter {
    /// Converts a HF model directory into a SwiftGPT checkpoint directory at `output`.
    /// `maxContext` caps the context (and the KV cache the engine allocates) for long-context models.
    @discardableResult
    public static func importModel(from directory: String, to output: String, maxContext: Int? = nil) throws -> ConversionReport {
        var (config, modelType, json) = try HuggingFaceFormat.readConfig(directory: directory, maxContext: maxContext)
        var notes: [String] = []
        let declaredContext = ((json["n_positions"] ?? json["max_position_embeddings"]) as? NSNumber)?.intValue ?? config.contextLength
        if declaredContext > config.contextLength {
            notes.append("context capped at \(config.contextLength) tokens (the checkpoint allows \(declaredContext)); --context changes it")
        }
        let tensors = try HuggingFaceTensors(directory: directory)
        let prefix = modelType == "gpt2" && tensors.has("transformer.wte.weight") ? "transformer." : ""
        if modelType == "gpt2" && !config.tiedEmbeddings && !tensors.has("lm_head.weight") {
            config.tiedEmbeddings = true
            notes.append("no lm_head.weight: the output head is tied to the embeddings")
        }
        if modelType == "llama" && config.tiedEmbeddings == false && !tensors.has("lm_head.weight") {
            throw InteropError.badInput(path: directory, reason: "tie_word_embeddings is false but lm_head.weight is missing")
        }
        let tokenizerPath = directory + "/tokenizer.json"
        guard FileManager.default.fileExists(atPath: tokenizerPath) else {
            throw InteropError.badInput(path: directory, reason: "there is no tokenizer.json (SwiftGPT needs the tokenizer next to the weights)")
        }
        let codec: TextCodec
        do { codec = try TextCodec.load(path: tokenizerPath) } catch {
            throw InteropError.unsupported("this tokenizer.json: \(error)", hint: "SwiftGPT reads byte-level BPE tokenizers (GPT-2, Llama 3 style)")
        }
        if codec.vocabularySize != config.vocabSize {
            throw InteropError.badInput(path: directory, reason:
                "the model has \(config.vocabSize) token rows but tokenizer.json has \(codec.vocabularySize) tokens")
        }
        let model = try GPT(config: config, backend: CPUBackend())
        let entries = Dictionary(uniqueKeysWithValues: model.parameters.entries.map { ($0.name, $0) })
        for mapping in HuggingFaceLayout.mappings(config, modelType: modelType, prefix: prefix) {
            let parts = try mapping.parts.map { try tensors.tensor($0) }
            do {
                try model.setParameter(mapping.ours, try HuggingFaceLayout.toOurs(mapping, entry: entries[mapping.ours]!, config: config, parts: parts))
            } catch let error as ModelError {
                throw InteropError.badInput(path: directory, reason: "\(error)")
            }
        }
        try Checkpoint.save(model: model, codec: codec, state: nil, to: output)
        return ConversionReport(modelType: modelType, config: config, parameterCount: config.parameterCount,
                                sourceDtypes: tensors.dtypes.sorted(), notes: notes)
    }

    /// Writes a HF model directory for a SwiftGPT checkpoint: config.json, model.safetensors (fp32,
    /// HF names and layouts), tokenizer.json, tokenizer_config.json and generation_config.json.
    @discardableResult
    public static func exportModel(_ model: GPT, codec: TextCodec, to directory: String) throws -> ConversionReport {
        let config = model.config
        let modelType = try HuggingFaceFormat.modelType(for: config)
        guard case .bpe(let bpe) = codec else {
            throw InteropError.unsupported("a character-level tokenizer", hint: "Hugging Face and llama.cpp need a BPE tokenizer; train one with `swiftgpt tokenizer train`")
        }
        // The file is streamed: each parameter is downloaded once, when its HF tensors are written,
        // so the weights never exist twice in memory.
        let mappings = HuggingFaceLayout.mappings(config, modelType: modelType, prefix: "transformer.")
        let entries = Dictionary(uniqueKeysWithValues: model.parameters.entries.map { ($0.name, $0) })
        var names = mappings.flatMap { HuggingFaceLayout.huggingFaceShapes($0, entry: entries[$0.ours]!, config: config) }
        var zeroBiases: [(name: String, shape: [Int])] = []
        if modelType == "gpt2" && !config.bias {
            // HF's GPT-2 always has linear biases: zeros give the same function.
            for l in 0..<config.layers {
                for (name, n) in [("attn.c_attn.bias", config.qkvWidth), ("attn.c_proj.bias", config.width),
                                  ("mlp.c_fc.bias", config.hiddenWidth), ("mlp.c_proj.bias", config.width)] {
                    zeroBiases.append(("transformer.h.\(l)." + name, [n]))
                }
            }
            names += zeroBiases
        }
        let fm = FileManager.default
        do { try fm.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw InteropError.ioFailure(path: directory, reason: "could not create the folder (\(error))")
        }
        let eot = codec.endOfText.map(Int.init)
        let header = try SafetensorsFile.header(names, metadata: ["format": "pt"])
        do {
            try AtomicFile.write(to: directory + "/model.safetensors") { emit in
                try header.withUnsafeBytes { try emit($0) }
                for mapping in mappings {  // little-endian hosts only
                    let values = model.parameter(mapping.ours)!
                    for t in HuggingFaceLayout.toHuggingFace(mapping, entry: entries[mapping.ours]!, config: config, values: values) {
                        try t.values.withUnsafeBytes { try emit($0) }
                    }
                }
                for bias in zeroBiases { try [Float](repeating: 0, count: bias.shape[0]).withUnsafeBytes { try emit($0) } }
            }
        } catch { throw InteropError.ioFailure(path: directory + "/model.safetensors", reason: "\(error)") }
        try write(try HuggingFaceFormat.configJSON(config, modelType: modelType, bos: eot, eos: eot), to: directory + "/config.json")
        try write(try bpe.huggingFaceJSON(), to: directory + "/tokenizer.json")
        var tokenizerConfig: [String: Any] = ["tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": config.contextLength,
                                              "clean_up_tokenization_spaces": false, "add_bos_token": false, "add_eos_token": false]
        var generation: [String: Any] = ["do_sample": false]
        if let eotText = bpe.specialTokens.first(where: { Int($0.value) == eot })?.key, let eot {
            tokenizerConfig["bos_token"] = eotText
            tokenizerConfig["eos_token"] = eotText
            generation["bos_token_id"] = eot
            generation["eos_token_id"] = eot
        }
        try write(try JSONSerialization.data(withJSONObject: tokenizerConfig, options: [.prettyPrinted, .sortedKeys]),
                  to: directory + "/tokenizer_config.json")
        try write(try JSONSerialization.data(withJSONObject: generation, options: [.prettyPrinted, .sortedKeys]),
                  to: directory + "/generation_config.json")
        return ConversionReport(modelType: modelType, config: config, parameterCount: config.parameterCount,
                                sourceDtypes: ["F32"], notes: [])
    }

    static func write(_ data: Data, to path: String) throws {
        do { try data.write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw InteropError.ioFailure(path: path, reason: "\(error)")
        }
    }

}

