// Every size of the GPT-2 model in one place (llm.c's fill_in_parameter_sizes).
//
// Legend: B batch, T time, C channels (width), NH heads, L layers, V vocab, Vp padded vocab,
// maxT context length. Linear weights are (out, in) row-major, like torch.nn.Linear.

import Compute

public enum GPTLayout {
    /// The parameter size table, in storage order. Names follow Hugging Face's GPT-2 state dict
    /// (without the "transformer." prefix); shapes are ours (Linear layout, padded vocabulary).
    public static func parameterEntries(_ config: GPTConfig) -> [ArenaEntry] {
        let C = config.width, Vp = config.paddedVocabSize, maxT = config.contextLength
        var e: [ArenaEntry] = [
            ArenaEntry(name: "wte.weight", shape: [Vp, C]),   // (Vp, C), also the output head
            ArenaEntry(name: "wpe.weight", shape: [maxT, C]), // (maxT, C)
        ]
        for l in 0..<config.layers {
            let p = "h.\(l)."
            e += [
                ArenaEntry(name: p + "ln_1.weight", shape: [C]),
                ArenaEntry(name: p + "ln_1.bias", shape: [C]),
                ArenaEntry(name: p + "attn.c_attn.weight", shape: [3 * C, C]),  // (3C, C)
                ArenaEntry(name: p + "attn.c_attn.bias", shape: [3 * C]),
                ArenaEntry(name: p + "attn.c_proj.weight", shape: [C, C]),      // (C, C)
                ArenaEntry(name: p + "attn.c_proj.bias", shape: [C]),
                ArenaEntry(name: p + "ln_2.weight", shape: [C]),
                ArenaEntry(name: p + "ln_2.bias", shape: [C]),
                ArenaEntry(name: p + "mlp.c_fc.weight", shape: [4 * C, C]),     // (4C, C)
                ArenaEntry(name: p + "mlp.c_fc.bias", shape: [4 * C]),
                ArenaEntry(name: p + "mlp.c_proj.weight", shape: [C, 4 * C]),   // (C, 4C)
                ArenaEntry(name: p + "mlp.c_proj.bias", shape: [C]),
            ]
        }
        e += [
            ArenaEntry(name: "ln_f.weight", shape: [C]),
            ArenaEntry(name: "ln_f.bias", shape: [C]),
        ]
        return e
    }

    /// Index of layer l's first entry in the parameter table; the 12 entries of a block follow.
    @inline(__always)
    public static func layerBase(_ l: Int) -> Int { 2 + 12 * l }

    /// Activations saved for backward, for a batch of B sequences of T tokens.
    public static func activationEntries(_ config: GPTConfig, B: Int, T: Int) -> [ArenaEntry] {
        let C = config.width, NH = config.heads, Vp = config.paddedVocabSize
        var e: [ArenaEntry] = [ArenaEntry(name: "encoded", shape: [B, T, C])]  // (B, T, C)
        for l in 0..<config.layers {
            let p = "h.\(l)."
            e += [
                ArenaEntry(name: p + "ln1", shape: [B, T, C]),
                ArenaEntry(name: p + "ln1_mean", shape: [B, T]),
                ArenaEntry(name: p + "ln1_rstd", shape: [B, T]),
                ArenaEntry(name: p + "qkv", shape: [B, T, 3 * C]),
                ArenaEntry(name: p + "atty", shape: [B, T, C]),
                ArenaEntry(name: p + "att_lse", shape: [B, NH, T]),
                ArenaEntry(name: p + "residual2", shape: [B, T, C]),
                ArenaEntry(name: p + "ln2", shape: [B, T, C]),
                ArenaEntry(name: p + "ln2_mean", shape: [B, T]),
                ArenaEntry(name: p + "ln2_rstd", shape: [B, T]),
                ArenaEntry(name: p + "fch", shape: [B, T, 4 * C]),
                ArenaEntry(name: p + "fch_gelu", shape: [B, T, 4 * C]),
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
        let C = config.width
        return [
            ArenaEntry(name: "dresidual", shape: [B, T, C]),   // gradient flowing down the residual stream
            ArenaEntry(name: "dproj", shape: [B, T, C]),       // branch gradient after dropout's mask
            ArenaEntry(name: "dln", shape: [B, T, C]),
            ArenaEntry(name: "datty", shape: [B, T, C]),
            ArenaEntry(name: "dqkv", shape: [B, T, 3 * C]),
            ArenaEntry(name: "dfch_gelu", shape: [B, T, 4 * C]),
            ArenaEntry(name: "dfch", shape: [B, T, 4 * C]),
        ]
    }

    /// Model FLOPs per trained token (forward + backward), counted as PaLM/nanoGPT do:
    /// 6 per weight of every matrix product (2 forward, 4 backward), including the output head,
    /// plus attention's QKᵀ and PV products, 12·L·T·C, at full (non-causal) T — the convention
    /// behind published MFU figures. Embedding lookups, norms and pointwise work are not counted.
    public static func trainingFlopsPerToken(_ config: GPTConfig, T: Int) -> Double {
        let C = Double(config.width), L = Double(config.layers), V = Double(config.vocabSize)
        let matrixWeights = L * 12 * C * C + V * C
        return 6 * matrixWeights + 12 * L * Double(T) * C
    }
}
