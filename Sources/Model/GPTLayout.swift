// Every size of the GPT-2 model in one place (llm.c's fill_in_parameter_sizes).
//
// Legend: B batch, T time, C channels (width), NH heads, L layers, V vocab, Vp padded vocab,
// maxT context length. Linear weights are (out, in) row-major, like torch.nn.Linear.

import Compute

/// Where each parameter sits in the table, for one configuration (nil: the model has none).
public struct LayerParameterIndex: Sendable {
    public let norm1Weight: Int, norm1Bias: Int?
    public let qkvWeight: Int, qkvBias: Int?
    public let projWeight: Int, projBias: Int?
    public let norm2Weight: Int, norm2Bias: Int?
    public let fcWeight: Int, fcBias: Int?
    public let fcProjWeight: Int, fcProjBias: Int?
}

public struct ParameterIndex: Sendable {
    public let tokenEmbedding: Int
    public let positionEmbedding: Int?
    public let layers: [LayerParameterIndex]
    public let finalNormWeight: Int, finalNormBias: Int?
    /// The output head's matrix: the token embedding when tied.
    public let head: Int

    init(_ entries: [ArenaEntry], layers L: Int) {
        var position: [String: Int] = [:]
        for (i, e) in entries.enumerated() { position[e.name] = i }
        tokenEmbedding = position["wte.weight"]!
        positionEmbedding = position["wpe.weight"]
        layers = (0..<L).map { l in
            let p = "h.\(l)."
            return LayerParameterIndex(
                norm1Weight: position[p + "ln_1.weight"]!, norm1Bias: position[p + "ln_1.bias"],
                qkvWeight: position[p + "attn.c_attn.weight"]!, qkvBias: position[p + "attn.c_attn.bias"],
                projWeight: position[p + "attn.c_proj.weight"]!, projBias: position[p + "attn.c_proj.bias"],
                norm2Weight: position[p + "ln_2.weight"]!, norm2Bias: position[p + "ln_2.bias"],
                fcWeight: position[p + "mlp.c_fc.weight"]!, fcBias: position[p + "mlp.c_fc.bias"],
                fcProjWeight: position[p + "mlp.c_proj.weight"]!, fcProjBias: position[p + "mlp.c_proj.bias"])
        }
        finalNormWeight = position["ln_f.weight"]!
        finalNormBias = position["ln_f.bias"]
        head = position["lm_head.weight"] ?? tokenEmbedding
    }
}

public enum GPTLayout {
    /// The parameter size table, in storage order. Names follow Hugging Face's GPT-2 state dict
    /// (without the "transformer." prefix) for every architecture; shapes are ours (Linear layout,
    /// padded vocabulary). Llama-style options change shapes and drop entries: the query/key/value
    /// matrix is (C + 2·kvWidth, C); with SwiGLU `mlp.c_fc` holds the gate rows then the up rows
    /// (2H, C); rotary positions have no `wpe`; without biases there are no linear biases; RMSNorm
    /// has no shift; an untied head adds `lm_head.weight` (Vp, C).
    public static func parameterEntries(_ config: GPTConfig) -> [ArenaEntry] {
        let C = config.width, Vp = config.paddedVocabSize, maxT = config.contextLength
        let H = config.hiddenWidth, QKV = config.qkvWidth, F = config.feedForwardInputWidth
        let linearBias = config.bias, normBias = config.norm == .layernorm
        var e: [ArenaEntry] = [ArenaEntry(name: "wte.weight", shape: [Vp, C])]  // (Vp, C), the output head when tied
        if config.positionEncoding == .learned { e.append(ArenaEntry(name: "wpe.weight", shape: [maxT, C])) }
        func norm(_ name: String) {
            e.append(ArenaEntry(name: name + ".weight", shape: [C]))
            if normBias { e.append(ArenaEntry(name: name + ".bias", shape: [C])) }
        }
        func linear(_ name: String, out: Int, in inC: Int) {
            e.append(ArenaEntry(name: name + ".weight", shape: [out, inC]))
            if linearBias { e.append(ArenaEntry(name: name + ".bias", shape: [out])) }
        }
        for l in 0..<config.layers {
            let p = "h.\(l)."
            norm(p + "ln_1")
            linear(p + "attn.c_attn", out: QKV, in: C)
            linear(p + "attn.c_proj", out: C, in: C)
            norm(p + "ln_2")
            linear(p + "mlp.c_fc", out: F, in: C)
            linear(p + "mlp.c_proj", out: C, in: H)
        }
        norm("ln_f")
        if !config.tiedEmbeddings { e.append(ArenaEntry(name: "lm_head.weight", shape: [Vp, C])) }
        return e
    }

    /// Positions of every parameter in the table of `parameterEntries(config)`.
    public static func parameterIndex(_ config: GPTConfig) -> ParameterIndex {
        ParameterIndex(parameterEntries(config), layers: config.layers)
    }

    /// Activations saved for backward, for a batch of B sequences of T tokens.
    public static func activationEntries(_ config: GPTConfig, B: Int, T: Int) -> [ArenaEntry] {
        let C = config.width, NH = config.heads, Vp = config.paddedVocabSize
        let QKV = config.qkvWidth, F = config.feedForwardInputWidth, H = config.hiddenWidth
        var e: [ArenaEntry] = [ArenaEntry(name: "encoded", shape: [B, T, C])]  // (B, T, C)
        for l in 0..<config.layers {
            let p = "h.\(l)."
            e += [
                ArenaEntry(name: p + "ln1", shape: [B, T, C]),
                ArenaEntry(name: p + "ln1_mean", shape: [B, T]),   // unused by RMSNorm
                ArenaEntry(name: p + "ln1_rstd", shape: [B, T]),
                ArenaEntry(name: p + "qkv", shape: [B, T, QKV]),   // after rotary positions when used
                ArenaEntry(name: p + "atty", shape: [B, T, C]),
                ArenaEntry(name: p + "att_lse", shape: [B, NH, T]),
                ArenaEntry(name: p + "residual2", shape: [B, T, C]),
                ArenaEntry(name: p + "ln2", shape: [B, T, C]),
                ArenaEntry(name: p + "ln2_mean", shape: [B, T]),
                ArenaEntry(name: p + "ln2_rstd", shape: [B, T]),
                ArenaEntry(name: p + "fch", shape: [B, T, F]),
                ArenaEntry(name: p + "fch_gelu", shape: [B, T, H]),     // GELU or SwiGLU output
                ArenaEntry(name: p + "residual3", shape: [B, T, C]),
            ]
        }
        e += [
            ArenaEntry(name: "proj", shape: [B, T, C]),      // (B, T, C) branch output before the residual add
            ArenaEntry(name: "lnf", shape: [B, T, C]),
            ArenaEntry(name: "lnf_mean", shape: [B, T]),
            ArenaEntry(name: "lnf_rstd", shape: [B, T]),
            ArenaEntry(name: "logits", shape: [B, T, Vp]),   // (B, T, Vp); holds dlogits after a training forward
            ArenaEntry(name: "losses", shape: [B, T]),
            ArenaEntry(name: "weights", shape: [B, T]),
        ]
        return e
    }

    /// Positions of a layer's activations in the activation table (13 entries per layer).
    @inline(__always)
    static func activationLayerBase(_ l: Int) -> Int { 1 + 13 * l }

    /// Gradient scratch reused by every layer during backward.
    public static func gradientScratchEntries(_ config: GPTConfig, B: Int, T: Int) -> [ArenaEntry] {
        let C = config.width, QKV = config.qkvWidth, F = config.feedForwardInputWidth, H = config.hiddenWidth
        return [
            ArenaEntry(name: "dresidual", shape: [B, T, C]),   // gradient flowing down the residual stream
            ArenaEntry(name: "dproj", shape: [B, T, C]),       // branch gradient after dropout's mask
            ArenaEntry(name: "dln", shape: [B, T, C]),
            ArenaEntry(name: "datty", shape: [B, T, C]),
            ArenaEntry(name: "dqkv", shape: [B, T, QKV]),
            ArenaEntry(name: "dfch_gelu", shape: [B, T, H]),
            ArenaEntry(name: "dfch", shape: [B, T, F]),
        ]
    }

    /// Model FLOPs per trained token (forward + backward), counted as PaLM/nanoGPT do:
    /// 6 per weight of every matrix product (2 forward, 4 backward), including the output head,
    /// plus attention's QKᵀ and PV products, 12·L·T·C, at full (non-causal) T — the convention
    /// behind published MFU figures. Embedding lookups, norms and pointwise work are not counted.
    public static func trainingFlopsPerToken(_ config: GPTConfig, T: Int) -> Double {
        let C = Double(config.width), L = Double(config.layers), V = Double(config.vocabSize)
        let perLayer = C * Double(config.qkvWidth) + C * C + C * Double(config.feedForwardInputWidth + config.hiddenWidth)
        let matrixWeights = L * perLayer + V * C
        return 6 * matrixWeights + 12 * L * Double(T) * C
    }
}
