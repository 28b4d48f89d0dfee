// The GPT-2 model: parameters, gradients and AdamW moments in arenas, forward and backward as a
// fixed sequence of Backend kernels (no autograd).
//
// Legend: B batch, T time, C channels, NH heads, L layers, V vocab, Vp padded vocab.

import Compute

public final class GPT: @unchecked Sendable {
    public private(set) var config: GPTConfig
    public let backend: any Backend
    /// Where each parameter sits in `parameters`.
    public let index: ParameterIndex
    /// Parameters (weights) in the order of `GPTLayout.parameterEntries`.
    public let parameters: Arena
    /// Gradients, same table as `parameters`. Allocated on first backward.
    public private(set) var gradients: Arena?
    /// AdamW first and second moments. Allocated on first update.
    public private(set) var firstMoments: Arena?
    public private(set) var secondMoments: Arena?

    private var activations: Arena?
    private var gradientScratch: Arena?
    /// Buffers of other recently used batch shapes (most recent last), kept so that a loop that
    /// alternates between a few shapes (length-bucketed fine-tuning) does not reallocate each step.
    private var otherShapes: [(B: Int, T: Int, activations: Arena, scratch: Arena?)] = []
    /// How many batch shapes keep their activation buffers (1: only the current one).
    public var shapeCacheLimit = 1 {
        didSet { shapeCacheLimit = max(1, shapeCacheLimit); trimShapeCache() }
    }
    private var inputs: TokenBuffer?
    private var targets: TokenBuffer?
    private var tokenCapacity = 0
    /// Batch shape of the last forward.
    public private(set) var batchSize = 0
    public private(set) var sequenceLength = 0
    private var lastForwardHadGradient = false
    /// The last forward had targets (its per-token losses are in the activations).
    private var lastForwardHadTargets = false
    /// Index of the first activation after the blocks ("lnf"); then lnf_mean, lnf_rstd, logits, losses,
    /// weights (`GPTLayout.activationEntries`: the embedding output, 13 per layer, "proj").
    private var headIndex: Int { 2 + 13 * config.layers }
    /// True while every gradient is known to be 0 (the last update zeroed them as it read them), so
    /// `zeroGradients()` has nothing to do.
    private var gradientsAreZero = false
    /// Where each parameter tensor sits in the arenas and whether it is weight-decayed (matrices
    /// are), for the one-call AdamW update.
    private lazy var adamwLayout: [(offset: Int, count: Int, decays: Bool)] = parameters.entries.enumerated().map {
        (parameters.offsets[$0.offset], $0.element.count, $0.element.shape.count >= 2)
    }
    private var adamwSegments: [AdamWSegment] = []
    private var adamwSegmentsDecay = Float.nan
    private var lastDropoutSeed: UInt64? = nil
    /// Host copy of the per-token losses, reused every step (no allocation in the training loop).
    private var hostLosses: [Float] = []

    /// Creates a model with zeroed parameters. Call `initialize(seed:)` or load weights next.
    /// Changes the dropout probability used by training passes that are given a dropout seed (for
    /// example fine-tuning a model that was pre-trained without dropout). Checkpoints written
    /// afterwards record it in their config.
    public func setDropout(_ probability: Float) throws {
        guard probability >= 0 && probability < 1 else {
            throw ModelError.invalidConfig("dropout must be in [0, 1), got \(probability)", hint: "use e.g. 0.1, or 0 for none")
        }
        config.dropout = probability
    }

    public init(config: GPTConfig, backend: any Backend) throws {
        try config.validate()
        self.config = config
        self.backend = backend
        self.parameters = try Arena(backend: backend, entries: GPTLayout.parameterEntries(config))
        self.index = GPTLayout.parameterIndex(config)
    }

    deinit {
        if let inputs { backend.deallocateTokens(inputs) }
        if let targets { backend.deallocateTokens(targets) }
    }

    // MARK: Initialisation

    /// GPT-2 initialisation: N(0, 0.02) for embeddings and matrices, N(0, 0.02/√(2L)) for the two
    /// residual projections of every block, zeros for biases, ones for norm gains. Padded
    /// vocabulary rows stay zero. Deterministic for a seed on every machine.
    public func initialize(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        let residualStd = 0.02 / Float(2 * config.layers).squareRoot()
        var host: [Float] = []
        for (i, entry) in parameters.entries.enumerated() {
            let n = entry.count
            host = [Float](repeating: 0, count: n)
            if entry.name.hasSuffix("ln_1.weight") || entry.name.hasSuffix("ln_2.weight") || entry.name == "ln_f.weight" {
                for j in 0..<n { host[j] = 1 }
            } else if entry.shape.count == 2 {
                let std: Float = entry.name.hasSuffix("c_proj.weight") ? residualStd : 0.02
                let rows = entry.name == "wte.weight" || entry.name == "lm_head.weight" ? config.vocabSize : entry.shape[0]
                for j in 0..<(rows * entry.shape[1]) { host[j] = rng.nextNormal() * std }
            }
            host.withUnsafeBufferPointer { backend.upload($0, to: parameters[i]) }
        }
    }

    // MARK: Buffers

    private func prepare(B: Int, T: Int) throws {
        if B == batchSize && T == sequenceLength && activations != nil { return }
        if let current = activations, shapeCacheLimit > 1 {
            otherShapes.append((batchSize, sequenceLength, current, gradientScratch))
        }
        activations = nil
        gradientScratch = nil
        if let i = otherShapes.firstIndex(where: { $0.B == B && $0.T == T }) {
            activations = otherShapes[i].activations
            gradientScratch = otherShapes[i].scratch
            otherShapes.remove(at: i)
        }
        trimShapeCache()
        if activations == nil {
            activations = try Arena(backend: backend, entries: GPTLayout.activationEntries(config, B: B, T: T))
        }
        if B * T > tokenCapacity {
            if let inputs { backend.deallocateTokens(inputs) }
            if let targets { backend.deallocateTokens(targets) }
            inputs = try backend.allocateTokens(B * T)
            targets = try backend.allocateTokens(B * T)
            tokenCapacity = B * T
        }
        batchSize = B
        sequenceLength = T
    }

    private func trimShapeCache() {
        let keep = shapeCacheLimit - 1
        if otherShapes.count > keep { otherShapes.removeFirst(otherShapes.count - keep) }
    }

    /// Allocates gradients, moments and backward scratch now rather than at the first step.
    public func prepareForTraining(batchSize B: Int, sequenceLength T: Int) throws {
        try prepare(B: B, T: T)
        _ = try ensureGradients()
        try ensureOptimizerState()
        if gradientScratch == nil {
            gradientScratch = try Arena(backend: backend, entries: GPTLayout.gradientScratchEntries(config, B: B, T: T))
        }
    }

    private func ensureGradients() throws -> Arena {
        if let gradients { return gradients }
        let g = try Arena(backend: backend, entries: parameters.entries)
        gradients = g
        return g
    }

    /// Floats allocated by every arena the model holds now (for memory accounting).
    public var allocatedFloats: Int {
        parameters.allocatedCount + (gradients?.allocatedCount ?? 0) + (firstMoments?.allocatedCount ?? 0)
            + (secondMoments?.allocatedCount ?? 0) + (activations?.allocatedCount ?? 0)
            + (gradientScratch?.allocatedCount ?? 0)
            + otherShapes.reduce(0) { $0 + $1.activations.allocatedCount + ($1.scratch?.allocatedCount ?? 0) }
    }

    // MARK: Forward

    private func checkTokens(_ tokens: UnsafeBufferPointer<Int32>, _ what: String) throws {
        let V = config.vocabSize
        for (i, t) in tokens.enumerated() where t < 0 || Int(t) >= V {
            throw ModelError.tokenOutOfRange(index: i, value: t, vocabSize: V)
        }
    }

    /// Runs the model on `B` rows of `T` token ids (row-major, B·T ids).
    ///
    /// - targets: next-token ids (B·T); with them the per-token losses are computed.
    /// - weights: per-token loss weights (B·T), e.g. 1/(B·T) for a mean, 0 to ignore a token.
    ///   With targets and weights the logits buffer is overwritten by the gradient of
    ///   Σ weights·loss, ready for `backward()`. With targets only, the mean loss is returned
    ///   and the logits are kept.
    /// - dropoutSeed: non-nil enables dropout (training) with masks derived from this seed.
    /// - Returns: Σ weights·loss (or the mean loss without weights); NaN without targets.
    @discardableResult
    public func forward(tokens: UnsafeBufferPointer<Int32>, targets targetIds: UnsafeBufferPointer<Int32>? = nil,
                        weights lossWeights: UnsafeBufferPointer<Float>? = nil,
                        batchSize B: Int, sequenceLength T: Int, dropoutSeed: UInt64? = nil) throws -> Float {
        guard B > 0, T > 0, tokens.count == B * T else {
            throw ModelError.shapeMismatch("expected \(B)×\(T) = \(B * T) token ids, got \(tokens.count)")
        }
        if T > config.contextLength { throw ModelError.sequenceTooLong(length: T, contextLength: config.contextLength) }
        try checkTokens(tokens, "input")
        if let targetIds {
            guard targetIds.count == B * T else {
                throw ModelError.shapeMismatch("expected \(B * T) targets, got \(targetIds.count)")
            }
            try checkTokens(targetIds, "target")
        }
        if let lossWeights, lossWeights.count != B * T {
            throw ModelError.shapeMismatch("expected \(B * T) loss weights, got \(lossWeights.count)")
        }
        try prepare(B: B, T: T)
        let be = backend, acts = activations!, par = parameters
        let C = config.width, NH = config.heads, L = config.layers, V = config.vocabSize, Vp = config.paddedVocabSize
        let N = B * T
        be.uploadTokens(tokens, to: inputs!)
        let drop = dropoutSeed.map { DropoutSpec(probability: config.dropout, seed: $0) }

        let encoded = acts[0]
        let ix = index, KVH = config.kvHeads, QKV = config.qkvWidth, F = config.feedForwardInputWidth, H = config.hiddenWidth
        be.encoderForward(out: encoded, tokens: inputs!, wte: par[ix.tokenEmbedding], wpe: ix.positionEmbedding.map { par[$0] },
                          B: B, T: T, C: C)
        if let drop, drop.isActive { be.dropoutForward(encoded, count: N * C, dropout: site(drop, 0)) }
        let proj = acts[1 + 13 * L]
        var residual = encoded
        for l in 0..<L {
            let p = ix.layers[l], a = GPTLayout.activationLayerBase(l)
            let ln1 = acts[a], ln1Mean = acts[a + 1], ln1Rstd = acts[a + 2], qkv = acts[a + 3], atty = acts[a + 4]
            let lse = acts[a + 5], residual2 = acts[a + 6], ln2 = acts[a + 7], ln2Mean = acts[a + 8]
            let ln2Rstd = acts[a + 9], fch = acts[a + 10], fchGelu = acts[a + 11], residual3 = acts[a + 12]
            normForward(out: ln1, mean: ln1Mean, rstd: ln1Rstd, input: residual, weight: p.norm1Weight, bias: p.norm1Bias, N: N)
            be.matmulForward(out: qkv, input: ln1, weight: par[p.qkvWeight], bias: p.qkvBias.map { par[$0] }, N: N, C: C, OC: QKV)
            if config.positionEncoding == .rope {
                be.rotaryEmbedding(qkv, positions: nil, N: N, T: T, heads: NH, kvHeads: KVH, headSize: config.headSize,
                                   theta: config.ropeTheta, inverse: false)
            }
            be.attentionForward(out: atty, lse: lse, qkv: qkv, B: B, T: T, C: C, NH: NH, KVH: KVH,
                                dropout: drop.map { site($0, 1 + 3 * l) })
            be.matmulForward(out: proj, input: atty, weight: par[p.projWeight], bias: p.projBias.map { par[$0] }, N: N, C: C, OC: C)
            if let drop, drop.isActive { be.dropoutForward(proj, count: N * C, dropout: site(drop, 2 + 3 * l)) }
            be.residualForward(out: residual2, a: residual, b: proj, count: N * C)
            normForward(out: ln2, mean: ln2Mean, rstd: ln2Rstd, input: residual2, weight: p.norm2Weight, bias: p.norm2Bias, N: N)
            switch config.feedForward {
            case .gelu:
                be.matmulGELUForward(preactivation: fch, activated: fchGelu, input: ln2, weight: par[p.fcWeight],
                                     bias: p.fcBias.map { par[$0] }, N: N, C: C, OC: F)
            case .swiglu:
                be.matmulForward(out: fch, input: ln2, weight: par[p.fcWeight], bias: p.fcBias.map { par[$0] }, N: N, C: C, OC: F)
                be.swigluForward(out: fchGelu, input: fch, N: N, H: H)
            }
            be.matmulForward(out: proj, input: fchGelu, weight: par[p.fcProjWeight], bias: p.fcProjBias.map { par[$0] },
                             N: N, C: H, OC: C)
            if let drop, drop.isActive { be.dropoutForward(proj, count: N * C, dropout: site(drop, 3 + 3 * l)) }
            be.residualForward(out: residual3, a: residual2, b: proj, count: N * C)
            residual = residual3
        }
        let f = headIndex
        let lnf = acts[f], lnfMean = acts[f + 1], lnfRstd = acts[f + 2], logits = acts[f + 3]
        let losses = acts[f + 4], weightBuffer = acts[f + 5]
        normForward(out: lnf, mean: lnfMean, rstd: lnfRstd, input: residual, weight: ix.finalNormWeight, bias: ix.finalNormBias, N: N)
        be.matmulForward(out: logits, input: lnf, weight: par[ix.head], bias: nil, N: N, C: C, OC: Vp)
        lastDropoutSeed = dropoutSeed
        lastForwardHadGradient = false
        lastForwardHadTargets = targetIds != nil
        guard let targetIds else { return .nan }
        be.uploadTokens(targetIds, to: targets!)
        if let lossWeights { be.upload(lossWeights, to: weightBuffer) }
        be.crossEntropyForward(losses: losses, logits: logits, targets: targets!,
                               weights: lossWeights == nil ? nil : weightBuffer, N: N, V: V, Vp: Vp)
        lastForwardHadGradient = lossWeights != nil
        if hostLosses.count != N { hostLosses = [Float](repeating: 0, count: N) }
        return hostLosses.withUnsafeMutableBufferPointer { host -> Float in
            be.download(losses, into: host)
            var total: Double = 0
            if let lossWeights {
                for i in 0..<N { total += Double(lossWeights[i]) * Double(host[i]) }
                return Float(total)
            }
            for i in 0..<N { total += Double(host[i]) }
            return Float(total / Double(N))
        }
    }

    /// Layer norm or RMSNorm (by the configuration) of N rows; `weight`/`bias` index the parameters.
    @inline(__always)
    public func normForward(out: FloatBuffer, mean: FloatBuffer, rstd: FloatBuffer, input: FloatBuffer, weight: Int, bias: Int?, N: Int) {
        let par = parameters
        switch config.norm {
        case .layernorm:
            backend.layerNormForward(out: out, mean: mean, rstd: rstd, input: input, weight: par[weight], bias: par[bias!],
                                     N: N, C: config.width)
        case .rmsnorm:
            backend.rmsNormForward(out: out, rstd: rstd, input: input, weight: par[weight], N: N, C: config.width,
                                   epsilon: config.normEpsilon)
        }
    }

    @inline(__always)
    private func normBackward(dinput: FloatBuffer, dout: FloatBuffer, input: FloatBuffer, mean: FloatBuffer, rstd: FloatBuffer,
                              weight: Int, bias: Int?, gradients grads: Arena, N: Int) {
        let par = parameters
        switch config.norm {
        case .layernorm:
            backend.layerNormBackward(dinput: dinput, dweight: grads[weight], dbias: grads[bias!], dout: dout, input: input,
                                      weight: par[weight], mean: mean, rstd: rstd, N: N, C: config.width)
        case .rmsnorm:
            backend.rmsNormBackward(dinput: dinput, dweight: grads[weight], dout: dout, input: input, weight: par[weight],
                                    rstd: rstd, N: N, C: config.width)
        }
    }

    @inline(__always)
    private func site(_ d: DropoutSpec, _ index: Int) -> DropoutSpec {
        DropoutSpec(probability: d.probability, seed: mix64(d.seed ^ (UInt64(index) &* 0x9E37_79B9)))
    }

    /// Logits of the last forward, (B, T, V) without padding, copied to the host. Only valid
    /// after a forward without loss weights (a training forward overwrites them with gradients).
    public func logits() -> [Float] {
        precondition(!lastForwardHadGradient, "logits were replaced by their gradient; run forward without weights")
        let N = batchSize * sequenceLength, V = config.vocabSize, Vp = config.paddedVocabSize
        let buffer = activations![headIndex + 3]
        var padded = [Float](repeating: 0, count: N * Vp)
        padded.withUnsafeMutableBufferPointer { backend.download(buffer, into: $0) }
        var out = [Float](repeating: 0, count: N * V)
        for n in 0..<N { for v in 0..<V { out[n * V + v] = padded[n * Vp + v] } }
        return out
    }

    /// Logits (V, unpadded) of one position of the last forward (inference forward only).
    public func logits(batch b: Int, position t: Int) -> [Float] {
        precondition(!lastForwardHadGradient, "logits were replaced by their gradient; run forward without weights")
        precondition(b < batchSize && t < sequenceLength, "position outside the last forward")
        let V = config.vocabSize, Vp = config.paddedVocabSize
        let buffer = activations![headIndex + 3].slice((b * sequenceLength + t) * Vp, V)
        var out = [Float](repeating: 0, count: V)
        out.withUnsafeMutableBufferPointer { backend.download(buffer, into: $0) }
        return out
    }

    /// Weighs the tokens of the last forward after the fact: that forward ran with targets and without
    /// weights, and its logits become the gradient of Σ weights·loss, exactly as a forward with these
    /// weights would have left them, ready for `backward()` — without running the model again. DPO
    /// uses it: a reply's weight depends on the log-probabilities of that same forward.
    /// Returns Σ weights·loss.
    @discardableResult
    public func applyLossWeights(_ lossWeights: UnsafeBufferPointer<Float>) throws -> Float {
        precondition(lastForwardHadTargets && !lastForwardHadGradient,
                     "applyLossWeights needs a forward with targets and without weights just before")
        let N = batchSize * sequenceLength
        guard lossWeights.count == N else { throw ModelError.shapeMismatch("expected \(N) loss weights, got \(lossWeights.count)") }
        let f = headIndex, acts = activations!
        let logits = acts[f + 3], losses = acts[f + 4], weightBuffer = acts[f + 5]
        backend.upload(lossWeights, to: weightBuffer)
        backend.crossEntropyForward(losses: losses, logits: logits, targets: targets!, weights: weightBuffer,
                                    N: N, V: config.vocabSize, Vp: config.paddedVocabSize)
        lastForwardHadGradient = true
        var total: Double = 0
        for i in 0..<N { total += Double(lossWeights[i]) * Double(hostLosses[i]) }
        return Float(total)
    }

    /// Per-token losses of the last forward with targets, (B, T).
    public func tokenLosses() -> [Float] {
        let N = batchSize * sequenceLength
        var host = [Float](repeating: 0, count: N)
        host.withUnsafeMutableBufferPointer { backend.download(activations![headIndex + 4], into: $0) }
        return host
    }

    // MARK: Backward

    /// Zeroes the AdamW moments (a new optimisation phase, e.g. fine-tuning after pre-training in
    /// the same process, must not inherit the previous phase's moments).
    public func resetOptimizerState() {
        if let m = firstMoments { backend.zero(m.storage) }
        if let v = secondMoments { backend.zero(v.storage) }
    }

    /// Sets every parameter gradient to zero.
    public func zeroGradients() throws {
        let grads = try ensureGradients()
        if gradientsAreZero { return }
        backend.zero(grads.storage)
        gradientsAreZero = true
    }

    /// Adds the gradient of the last forward's weighted loss to `gradients`.
    public func backward() throws {
        precondition(lastForwardHadGradient, "backward() needs a forward with targets and loss weights first")
        let grads = try ensureGradients()
        gradientsAreZero = false
        if gradientScratch == nil {
            gradientScratch = try Arena(backend: backend,
                                        entries: GPTLayout.gradientScratchEntries(config, B: batchSize, T: sequenceLength))
        }
        let be = backend, acts = activations!, par = parameters, scr = gradientScratch!
        let B = batchSize, T = sequenceLength
        let C = config.width, NH = config.heads, L = config.layers, Vp = config.paddedVocabSize
        let N = B * T
        let drop = lastDropoutSeed.map { DropoutSpec(probability: config.dropout, seed: $0) }
        let dresidual = scr[0], dproj = scr[1], dln = scr[2], datty = scr[3], dqkv = scr[4]
        let dfchGelu = scr[5], dfch = scr[6]

        let ix = index, KVH = config.kvHeads, QKV = config.qkvWidth, F = config.feedForwardInputWidth, H = config.hiddenWidth
        let f = headIndex
        let lnf = acts[f], lnfMean = acts[f + 1], lnfRstd = acts[f + 2], dlogits = acts[f + 3]
        be.zero(dresidual)
        be.matmulBackwardOverwritingInput(dinput: dln, dweight: grads[ix.head], dbias: nil, dout: dlogits, input: lnf,
                                          weight: par[ix.head], N: N, C: C, OC: Vp)
        let lastResidual = L > 0 ? acts[GPTLayout.activationLayerBase(L - 1) + 12] : acts[0]
        normBackward(dinput: dresidual, dout: dln, input: lastResidual, mean: lnfMean, rstd: lnfRstd,
                     weight: ix.finalNormWeight, bias: ix.finalNormBias, gradients: grads, N: N)
        for l in stride(from: L - 1, through: 0, by: -1) {
            let p = ix.layers[l], a = GPTLayout.activationLayerBase(l)
            let residual = l == 0 ? acts[0] : acts[GPTLayout.activationLayerBase(l - 1) + 12]
            let ln1 = acts[a], ln1Mean = acts[a + 1], ln1Rstd = acts[a + 2], qkv = acts[a + 3], atty = acts[a + 4]
            let lse = acts[a + 5], residual2 = acts[a + 6], ln2 = acts[a + 7], ln2Mean = acts[a + 8]
            let ln2Rstd = acts[a + 9], fch = acts[a + 10], fchGelu = acts[a + 11]

            // MLP branch: residual3 = residual2 + dropout(fcproj(act(fc(norm2(residual2)))))
            var branch = dresidual
            if let drop, drop.isActive {
                be.copy(from: dresidual, to: dproj)
                be.dropoutBackward(dproj, count: N * C, dropout: site(drop, 3 + 3 * l))
                branch = dproj
            }
            switch config.feedForward {
            case .gelu:
                // dfch = GELU'(fch) ⊙ (branch · W), overwritten; dfchGelu is scratch.
                be.matmulGELUBackward(dpreactivation: dfch, dactivated: dfchGelu, dweight: grads[p.fcProjWeight],
                                      dbias: p.fcProjBias.map { grads[$0] }, dout: branch, preactivation: fch,
                                      activated: fchGelu, weight: par[p.fcProjWeight], N: N, C: H, OC: C)
            case .swiglu:
                be.zero(dfchGelu)
                be.matmulBackward(dinput: dfchGelu, dweight: grads[p.fcProjWeight], dbias: p.fcProjBias.map { grads[$0] },
                                  dout: branch, input: fchGelu, weight: par[p.fcProjWeight], N: N, C: H, OC: C)
                be.zero(dfch)
                be.swigluBackward(dinput: dfch, input: fch, dout: dfchGelu, N: N, H: H)
            }
            be.matmulBackwardOverwritingInput(dinput: dln, dweight: grads[p.fcWeight], dbias: p.fcBias.map { grads[$0] },
                                              dout: dfch, input: ln2, weight: par[p.fcWeight], N: N, C: C, OC: F)
            normBackward(dinput: dresidual, dout: dln, input: residual2, mean: ln2Mean, rstd: ln2Rstd,
                         weight: p.norm2Weight, bias: p.norm2Bias, gradients: grads, N: N)

            // Attention branch: residual2 = residual + dropout(attproj(attention(rope(qkv(norm1(residual))))))
            branch = dresidual
            if let drop, drop.isActive {
                be.copy(from: dresidual, to: dproj)
                be.dropoutBackward(dproj, count: N * C, dropout: site(drop, 2 + 3 * l))
                branch = dproj
            }
            be.matmulBackwardOverwritingInput(dinput: datty, dweight: grads[p.projWeight], dbias: p.projBias.map { grads[$0] },
                                              dout: branch, input: atty, weight: par[p.projWeight], N: N, C: C, OC: C)
            be.zero(dqkv)
            be.attentionBackward(dqkv: dqkv, dout: datty, lse: lse, qkv: qkv, B: B, T: T, C: C, NH: NH, KVH: KVH,
                                 dropout: drop.map { site($0, 1 + 3 * l) })
            if config.positionEncoding == .rope {
                // The rotation is orthogonal: its backward is the rotation by the opposite angle.
                be.rotaryEmbedding(dqkv, positions: nil, N: N, T: T, heads: NH, kvHeads: KVH, headSize: config.headSize,
                                   theta: config.ropeTheta, inverse: true)
            }
            be.matmulBackwardOverwritingInput(dinput: dln, dweight: grads[p.qkvWeight], dbias: p.qkvBias.map { grads[$0] },
                                              dout: dqkv, input: ln1, weight: par[p.qkvWeight], N: N, C: C, OC: QKV)
            normBackward(dinput: dresidual, dout: dln, input: residual, mean: ln1Mean, rstd: ln1Rstd,
                         weight: p.norm1Weight, bias: p.norm1Bias, gradients: grads, N: N)
        }
        if let drop, drop.isActive { be.dropoutBackward(dresidual, count: N * C, dropout: site(drop, 0)) }
        be.encoderBackward(dwte: grads[ix.tokenEmbedding], dwpe: ix.positionEmbedding.map { grads[$0] }, dout: dresidual,
                           tokens: inputs!, B: B, T: T, C: C)
    }

    // MARK: Optimiser

    /// The global L2 norm of all gradients.
    public func gradientNorm() throws -> Float {
        Float(backend.sumOfSquares(try ensureGradients().storage).squareRoot())
    }

    /// One AdamW step over every parameter: weight decay on matrices (2-D tensors) only, bias
    /// correction, and — when `gradientClip` > 0 — gradients scaled so their global norm is at most
    /// `gradientClip` (as torch.nn.utils.clip_grad_norm_). Returns the pre-clip gradient norm and
    /// leaves every gradient at 0 (read them before updating).
    @discardableResult
    public func update(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.95, epsilon: Float = 1e-8,
                       weightDecay: Float = 0.1, gradientClip: Float = 1.0, step: Int) throws -> Float {
        let grads = try ensureGradients()
        try ensureOptimizerState()
        let norm = try gradientNorm()
        var scale: Float = 1
        if gradientClip > 0 {
            let coefficient = gradientClip / (norm + 1e-6)
            if coefficient < 1 { scale = coefficient }
        }
        if adamwSegmentsDecay != weightDecay {
            adamwSegments = adamwLayout.map { AdamWSegment(offset: $0.offset, count: $0.count, weightDecay: $0.decays ? weightDecay : 0) }
            adamwSegmentsDecay = weightDecay
        }
        // One call for every tensor; it also zeroes each gradient as it reads it (the next step's
        // zeroGradients() then has nothing to do).
        backend.adamw(params: parameters.storage, grads: grads.storage, m: firstMoments!.storage, v: secondMoments!.storage,
                      segments: adamwSegments, step: AdamWStep(learningRate: learningRate, beta1: beta1, beta2: beta2,
                                                               epsilon: epsilon, step: step, gradientScale: scale),
                      zeroGradients: true)
        gradientsAreZero = true
        return norm
    }

    // MARK: Host access

    /// Creates the AdamW moment arenas now (zero) if they do not exist yet.
    public func ensureOptimizerState() throws {
        if firstMoments == nil {
            firstMoments = try Arena(backend: backend, entries: parameters.entries)
            secondMoments = try Arena(backend: backend, entries: parameters.entries)
        }
    }

    /// Every tensor of an arena, copied to the host, in table order.
    public func hostTensors(_ arena: Arena) -> [(name: String, shape: [Int], values: [Float])] {
        arena.entries.enumerated().map { i, e in
            var host = [Float](repeating: 0, count: e.count)
            host.withUnsafeMutableBufferPointer { backend.download(arena[i], into: $0) }
            return (e.name, e.shape, host)
        }
    }

    /// Overwrites every tensor of an arena from host values keyed by name (all must be present).
    public func loadTensors(into arena: Arena, _ lookup: (String) throws -> [Float]) throws {
        for (i, e) in arena.entries.enumerated() {
            let values = try lookup(e.name)
            guard values.count == e.count else {
                throw ModelError.shapeMismatch("\(e.name): expected \(e.count) values, found \(values.count)")
            }
            values.withUnsafeBufferPointer { backend.upload($0, to: arena[i]) }
        }
    }

    /// A parameter tensor copied to the host.
    public func parameter(_ name: String) -> [Float]? { read(parameters, name) }

    /// A gradient tensor copied to the host.
    public func gradient(_ name: String) -> [Float]? { gradients.flatMap { read($0, name) } }

    private func read(_ arena: Arena, _ name: String) -> [Float]? {
        guard let buffer = arena[name] else { return nil }
        var host = [Float](repeating: 0, count: buffer.count)
        host.withUnsafeMutableBufferPointer { backend.download(buffer, into: $0) }
        return host
    }

    /// Overwrites a parameter tensor from host values (count must match the table).
    public func setParameter(_ name: String, _ values: [Float]) throws {
        guard let buffer = parameters[name] else { throw ModelError.missingTensor(name, file: "model") }
        guard values.count == buffer.count else {
            throw ModelError.shapeMismatch("\(name): expected \(buffer.count) values, got \(values.count)")
        }
        values.withUnsafeBufferPointer { backend.upload($0, to: buffer) }
    }
}
