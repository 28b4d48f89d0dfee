// Hugging Face config.json for the `gpt2` and `llama` model types, both ways. The tensor mapping
// is Model's HuggingFaceLayout.

import Foundation
import Model

enum HuggingFaceFormat {
    /// Context length of imported models when the checkpoint allows more and --context is not given.
    static let defaultMaxContext = 8192

    /// The model type HF knows this configuration as, or an error saying why none fits.
    static func modelType(for config: GPTConfig) throws -> String {
        if config.positionEncoding == .learned && config.norm == .layernorm && config.feedForward == .gelu {
            guard config.kvHeads == config.heads else {
                throw InteropError.unsupported("a GPT-2 model with grouped-query attention (\(config.kvHeads) key/value heads)",
                                               hint: "Hugging Face's GPT-2 has one key/value head per query head")
            }
            guard config.normEpsilon == 1e-5 else {
                throw InteropError.unsupported("layer norm ε \(config.normEpsilon)", hint: "GPT-2 models use ε = 1e-5")
            }
            return "gpt2"
        }
        if config.positionEncoding == .rope && config.norm == .rmsnorm && config.feedForward == .swiglu {
            return "llama"
        }
        throw InteropError.unsupported(
            "this mix of options (positions \(config.positionEncoding.rawValue), norm \(config.norm.rawValue), feed-forward \(config.feedForward.rawValue))",
            hint: "Hugging Face and llama.cpp know GPT-2 (learned positions, layer norm, GELU) and Llama (rope, rmsnorm, swiglu); train with one of those")
    }

    // MARK: config.json

    /// Reads config.json and returns our configuration for it.
    static func readConfig(directory: String, maxContext: Int?) throws -> (config: GPTConfig, modelType: String, json: [String: Any]) {
        let path = directory + "/config.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw InteropError.badInput(path: directory, reason: "there is no config.json (is this a Hugging Face model directory?)")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw InteropError.badInput(path: path, reason: "it is not a JSON object")
        }
        func bad(_ reason: String) -> InteropError { .badInput(path: path, reason: reason) }
        func int(_ key: String) throws -> Int {
            guard let v = json[key] as? NSNumber, v.doubleValue == v.doubleValue.rounded() else { throw bad("\"\(key)\" is missing or not an integer") }
            return v.intValue
        }
        func optionalInt(_ key: String) -> Int? { (json[key] as? NSNumber)?.intValue }
        func double(_ key: String, default value: Double) -> Double { (json[key] as? NSNumber)?.doubleValue ?? value }
        func bool(_ key: String, default value: Bool) -> Bool { (json[key] as? Bool) ?? (json[key] as? NSNumber)?.boolValue ?? value }
        guard let modelType = json["model_type"] as? String else { throw bad("\"model_type\" is missing") }
        var config: GPTConfig
        switch modelType {
        case "gpt2":
            let activation = json["activation_function"] as? String ?? "gelu_new"
            guard activation == "gelu_new" || activation == "gelu_pytorch_tanh" else {
                throw InteropError.unsupported("GPT-2 activation \(activation)", hint: "SwiftGPT's GELU is the tanh approximation (gelu_new)")
            }
            let epsilon = double("layer_norm_epsilon", default: 1e-5)
            guard abs(epsilon - 1e-5) < 1e-12 else {
                throw InteropError.unsupported("layer_norm_epsilon \(epsilon)", hint: "SwiftGPT's layer norm uses ε = 1e-5, as GPT-2 does")
            }
            if bool("scale_attn_by_inverse_layer_idx", default: false) || bool("reorder_and_upcast_attn", default: false)
                || !bool("scale_attn_weights", default: true) {
                throw InteropError.unsupported("GPT-2 attention scaling options", hint: "only the standard 1/√head_size scaling is implemented")
            }
            let C = try int("n_embd")
            config = GPTConfig(vocabSize: try int("vocab_size"), contextLength: try int("n_positions"), layers: try int("n_layer"),
                               heads: try int("n_head"), width: C, hiddenWidth: optionalInt("n_inner") ?? 4 * C,
                               tiedEmbeddings: bool("tie_word_embeddings", default: true))
        case "llama":
            let activation = json["hidden_act"] as? String ?? "silu"
            guard activation == "silu" else {
                throw InteropError.unsupported("Llama activation \(activation)", hint: "SwiftGPT's SwiGLU uses SiLU")
            }
            let C = try int("hidden_size"), heads = try int("num_attention_heads")
            if let headDim = optionalInt("head_dim"), headDim != C / max(heads, 1) {
                throw InteropError.unsupported("head_dim \(headDim) ≠ hidden_size / heads (\(C / max(heads, 1)))",
                                               hint: "SwiftGPT's heads are hidden_size / num_attention_heads wide")
            }
            let rope = json["rope_parameters"] as? [String: Any] ?? json["rope_scaling"] as? [String: Any]
            let ropeType = (rope?["rope_type"] ?? rope?["type"]) as? String ?? "default"
            guard ropeType == "default" else {
                throw InteropError.unsupported("rope scaling \"\(ropeType)\"", hint: "only plain rotary embeddings (rope_type default) are implemented")
            }
            let theta = (rope?["rope_theta"] as? NSNumber)?.doubleValue ?? double("rope_theta", default: 10000)
            guard !bool("attention_bias", default: false) == !bool("mlp_bias", default: false) else {
                throw InteropError.unsupported("attention_bias ≠ mlp_bias", hint: "SwiftGPT has biases on every linear layer or on none")
            }
            config = GPTConfig.llama(vocabSize: try int("vocab_size"), contextLength: try int("max_position_embeddings"),
                                     layers: try int("num_hidden_layers"), heads: heads, width: C,
                                     kvHeads: optionalInt("num_key_value_heads") ?? heads, hiddenWidth: try int("intermediate_size"))
            config.ropeTheta = Float(theta)
            config.normEpsilon = Float(double("rms_norm_eps", default: 1e-6))
            config.bias = bool("attention_bias", default: false)
            config.tiedEmbeddings = bool("tie_word_embeddings", default: false)
        default:
            throw InteropError.unsupported("model_type \"\(modelType)\"", hint: "convert reads gpt2 and llama models")
        }
        // The engine allocates every KV cache slot at full context, so long-context checkpoints are
        // capped unless asked otherwise.
        let cap = maxContext ?? HuggingFaceFormat.defaultMaxContext
        if cap < config.contextLength { config.contextLength = cap }
        do { try config.validate() } catch { throw bad("\(error)") }
        return (config, modelType, json)
    }

    /// config.json for `config` as `modelType`.
    static func configJSON(_ config: GPTConfig, modelType: String, bos: Int?, eos: Int?) throws -> Data {
        var json: [String: Any] = [
            "model_type": modelType, "vocab_size": config.vocabSize, "tie_word_embeddings": config.tiedEmbeddings,
            "torch_dtype": "float32", "dtype": "float32", "initializer_range": 0.02, "use_cache": true,
        ]
        if let bos { json["bos_token_id"] = bos }
        if let eos { json["eos_token_id"] = eos }
        if modelType == "gpt2" {
            json["architectures"] = ["GPT2LMHeadModel"]
            json["n_positions"] = config.contextLength
            json["n_ctx"] = config.contextLength
            json["n_embd"] = config.width
            json["n_layer"] = config.layers
            json["n_head"] = config.heads
            json["n_inner"] = config.hiddenWidth == 4 * config.width ? NSNull() : config.hiddenWidth as Any
            json["activation_function"] = "gelu_new"
            json["layer_norm_epsilon"] = shortest(config.normEpsilon)
            json["resid_pdrop"] = 0.0
            json["embd_pdrop"] = 0.0
            json["attn_pdrop"] = 0.0
        } else {
            json["architectures"] = ["LlamaForCausalLM"]
            json["hidden_size"] = config.width
            json["intermediate_size"] = config.hiddenWidth
            json["num_hidden_layers"] = config.layers
            json["num_attention_heads"] = config.heads
            json["num_key_value_heads"] = config.kvHeads
            json["head_dim"] = config.headSize
            json["max_position_embeddings"] = config.contextLength
            json["rms_norm_eps"] = shortest(config.normEpsilon)
            json["rope_theta"] = shortest(config.ropeTheta)
            json["rope_parameters"] = ["rope_theta": shortest(config.ropeTheta), "rope_type": "default"] as [String: Any]
            json["hidden_act"] = "silu"
            json["attention_bias"] = config.bias
            json["mlp_bias"] = config.bias
            json["attention_dropout"] = 0.0
        }
        return try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
    }

    /// The double with the float's shortest decimal spelling (1e-05, not 9.999999747378752e-06).
    static func shortest(_ x: Float) -> Double { Double("\(x)") ?? Double(x) }
}
