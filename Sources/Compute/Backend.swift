// The device abstraction. The model is written once against this protocol; the CPU backend
// implements it now and a CUDA backend implements the same calls later.
//
// Conventions (llm.c style): outputs first, then saved statistics, then inputs, then dimensions.
// Backward kernels *add* into every gradient they produce (weights and activations alike); callers
// zero gradient buffers once per step.
//
// Dimension legend: B batch, T time, C channels, NH heads, hs head size (C / NH), N rows (B*T),
// OC output channels, V vocabulary, Vp padded vocabulary.

/// Dropout settings for one kernel call. Masks come from a counter-based hash of (seed, element
/// index), so backward regenerates the forward mask without storing it.
public struct DropoutSpec: Sendable, Equatable {
    public var probability: Float
    public var seed: UInt64

    public init(probability: Float, seed: UInt64) {
        self.probability = probability
        self.seed = seed
    }

    public var isActive: Bool { probability > 0 }
}

/// One parameter tensor's place in arenas that share a layout (parameters, gradients, moments), for
/// an AdamW update of many tensors in one call.
public struct AdamWSegment: Sendable {
    public var offset: Int
    public var count: Int
    public var weightDecay: Float

    public init(offset: Int, count: Int, weightDecay: Float) {
        self.offset = offset
        self.count = count
        self.weightDecay = weightDecay
    }
}

/// Hyper-parameters of one AdamW update of one parameter tensor.
public struct AdamWStep: Sendable {
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    public var weightDecay: Float
    /// 1-based step number, for bias correction.
    public var step: Int
    /// Multiplies every gradient before the update (gradient clipping by global norm).
    public var gradientScale: Float

    public init(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.95, epsilon: Float = 1e-8,
                weightDecay: Float = 0, step: Int, gradientScale: Float = 1) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.step = step
        self.gradientScale = gradientScale
    }
}

public protocol Backend: AnyObject, Sendable {
    /// Short name for logs ("cpu", "cuda").
    var name: String { get }

    // MARK: Memory

    /// Allocates `count` zero-filled floats.
    func allocate(_ count: Int) throws -> FloatBuffer
    func deallocate(_ buffer: FloatBuffer)
    func allocateTokens(_ count: Int) throws -> TokenBuffer
    func deallocateTokens(_ buffer: TokenBuffer)
    func upload(_ values: UnsafeBufferPointer<Float>, to buffer: FloatBuffer)
    func download(_ buffer: FloatBuffer, into values: UnsafeMutableBufferPointer<Float>)
    func uploadTokens(_ values: UnsafeBufferPointer<Int32>, to buffer: TokenBuffer)
    func zero(_ buffer: FloatBuffer)
    func copy(from source: FloatBuffer, to destination: FloatBuffer)

    // MARK: Layers

    /// out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:] (no wpe: rotary positions, the embedding alone)
    func encoderForward(out: FloatBuffer, tokens: TokenBuffer, wte: FloatBuffer, wpe: FloatBuffer?,
                        B: Int, T: Int, C: Int)
    func encoderBackward(dwte: FloatBuffer, dwpe: FloatBuffer?, dout: FloatBuffer, tokens: TokenBuffer,
                         B: Int, T: Int, C: Int)

    /// Row-wise layer norm over C channels of N rows, saving mean and 1/std per row.
    func layerNormForward(out: FloatBuffer, mean: FloatBuffer, rstd: FloatBuffer, input: FloatBuffer,
                          weight: FloatBuffer, bias: FloatBuffer, N: Int, C: Int)
    func layerNormBackward(dinput: FloatBuffer, dweight: FloatBuffer, dbias: FloatBuffer, dout: FloatBuffer,
                           input: FloatBuffer, weight: FloatBuffer, mean: FloatBuffer, rstd: FloatBuffer,
                           N: Int, C: Int)

    /// RMSNorm over C channels of N rows: out = x / √(mean(x²) + ε) ⊙ weight, saving 1/rms per row.
    func rmsNormForward(out: FloatBuffer, rstd: FloatBuffer, input: FloatBuffer, weight: FloatBuffer,
                        N: Int, C: Int, epsilon: Float)
    func rmsNormBackward(dinput: FloatBuffer, dweight: FloatBuffer, dout: FloatBuffer, input: FloatBuffer,
                         weight: FloatBuffer, rstd: FloatBuffer, N: Int, C: Int)

    /// Rotary position embeddings, in place, on the query and key heads of qkv (N rows of
    /// (heads + 2·kvHeads)·headSize: queries, keys, values). Row n is at position positions[n],
    /// or n mod T without positions. Channel pairs (i, i + headSize/2) rotate by position·θ^(-2i/headSize)
    /// (Hugging Face's layout). `inverse` rotates backwards: the backward pass of the forward rotation.
    func rotaryEmbedding(_ qkv: FloatBuffer, positions: TokenBuffer?, N: Int, T: Int, heads: Int, kvHeads: Int,
                         headSize: Int, theta: Float, inverse: Bool)

    /// SwiGLU: out (N, H) = SiLU(gate) ⊙ up, where input (N, 2H) holds gate then up in each row.
    func swigluForward(out: FloatBuffer, input: FloatBuffer, N: Int, H: Int)
    func swigluBackward(dinput: FloatBuffer, input: FloatBuffer, dout: FloatBuffer, N: Int, H: Int)

    /// out (N, OC) = input (N, C) · weightᵀ (weight is (OC, C)) + bias (OC), bias optional.
    func matmulForward(out: FloatBuffer, input: FloatBuffer, weight: FloatBuffer, bias: FloatBuffer?,
                       N: Int, C: Int, OC: Int)
    /// dinput += dout · weight, dweight += doutᵀ · input, dbias += Σ_rows dout. dinput may be nil
    /// (first layer needs none).
    func matmulBackward(dinput: FloatBuffer?, dweight: FloatBuffer, dbias: FloatBuffer?, dout: FloatBuffer,
                        input: FloatBuffer, weight: FloatBuffer, N: Int, C: Int, OC: Int)
    /// As matmulBackward, but dinput = dout · weight is overwritten, not added to (the caller
    /// need not zero it first). Default: zero, then matmulBackward.
    func matmulBackwardOverwritingInput(dinput: FloatBuffer, dweight: FloatBuffer, dbias: FloatBuffer?, dout: FloatBuffer,
                                        input: FloatBuffer, weight: FloatBuffer, N: Int, C: Int, OC: Int)

    /// Causal multi-head self-attention. qkv is (B, T, C + 2·KVH·hs) with Q (NH heads), K and V
    /// (KVH heads each; query head h uses key/value head h / (NH/KVH)) side by side; out is
    /// (B, T, C); lse (B, NH, T) saves each softmax row's log-sum-exp so backward recomputes the
    /// probabilities instead of storing a (B, NH, T, T) tensor.
    func attentionForward(out: FloatBuffer, lse: FloatBuffer, qkv: FloatBuffer,
                          B: Int, T: Int, C: Int, NH: Int, KVH: Int, dropout: DropoutSpec?)
    func attentionBackward(dqkv: FloatBuffer, dout: FloatBuffer, lse: FloatBuffer, qkv: FloatBuffer,
                           B: Int, T: Int, C: Int, NH: Int, KVH: Int, dropout: DropoutSpec?)

    /// GELU, tanh approximation (GPT-2's "gelu_new").
    func geluForward(out: FloatBuffer, input: FloatBuffer, count: Int)
    func geluBackward(dinput: FloatBuffer, input: FloatBuffer, dout: FloatBuffer, count: Int)

    /// The MLP's first layer and its activation in one call: preactivation (N, OC) = input · weightᵀ
    /// + bias, activated (N, OC) = GELU(preactivation). A backend may apply GELU to each block of
    /// rows while the block is still in cache, and may leave in `preactivation`, instead of the
    /// product, what its own matmulGELUBackward needs from it (the CPU backend keeps GELU'(x) there,
    /// so its backward does no exp or division); callers only hand the buffer back to that backward.
    /// Default: matmulForward, then geluForward (the product stays).
    func matmulGELUForward(preactivation: FloatBuffer, activated: FloatBuffer, input: FloatBuffer, weight: FloatBuffer,
                           bias: FloatBuffer?, N: Int, C: Int, OC: Int)
    /// The backward of a layer whose input is GELU(preactivation) (the MLP's second layer), through
    /// the activation: dpreactivation = GELU'(x) ⊙ (dout · weight), overwritten (not
    /// added to); dweight += doutᵀ · activated, dbias += Σ_rows dout. `dactivated` (N, C) is
    /// scratch; its contents afterwards are unspecified. `preactivation` is what matmulGELUForward
    /// of the same backend left in it for x = input · weightᵀ + bias. Default: matmulBackward into the zeroed
    /// scratch, then geluBackward into the zeroed dpreactivation.
    func matmulGELUBackward(dpreactivation: FloatBuffer, dactivated: FloatBuffer, dweight: FloatBuffer, dbias: FloatBuffer?,
                            dout: FloatBuffer, preactivation: FloatBuffer, activated: FloatBuffer, weight: FloatBuffer,
                            N: Int, C: Int, OC: Int)

    /// out = a + b
    func residualForward(out: FloatBuffer, a: FloatBuffer, b: FloatBuffer, count: Int)

    /// Inverted dropout in place: x = x * keep / (1 - p). Backward applies the same mask to the
    /// gradient in place.
    func dropoutForward(_ x: FloatBuffer, count: Int, dropout: DropoutSpec)
    func dropoutBackward(_ dx: FloatBuffer, count: Int, dropout: DropoutSpec)

    /// Fused softmax + cross-entropy over the first V of Vp logits per row. Writes each row's loss
    /// to `losses` (N). With `weights` (N) given, overwrites `logits` with
    /// d(Σ_n weights[n]·loss[n])/dlogits (padding columns get 0). Targets must be in 0..<V.
    func crossEntropyForward(losses: FloatBuffer, logits: FloatBuffer, targets: TokenBuffer,
                             weights: FloatBuffer?, N: Int, V: Int, Vp: Int)

    // MARK: Inference (KV cache)

    /// out[n,:] = wte[tokens[n],:] + wpe[positions[n],:] for N rows that may belong to different
    /// sequences at different positions.
    func embedForward(out: FloatBuffer, tokens: TokenBuffer, positions: TokenBuffer, wte: FloatBuffer,
                      wpe: FloatBuffer?, N: Int, C: Int)
    /// Attention of N new rows against a KV cache. Row n belongs to cache slot `slots[n]` at
    /// position `positions[n]`. First every row's K and V (from qkv (N, C + 2·KVH·hs)) are written
    /// into `keys`/`values` (slots, KVH, capacity, hs) at its position; then each row attends,
    /// causally, to positions 0...positions[n] of its slot. out is (N, C). Rows of one sequence must
    /// come in increasing position order.
    func cachedAttentionForward(out: FloatBuffer, qkv: FloatBuffer, keys: FloatBuffer, values: FloatBuffer,
                                slots: TokenBuffer, positions: TokenBuffer, N: Int, C: Int, NH: Int, KVH: Int,
                                capacity: Int)
    /// Copies positions 0..<length of cache slot `source` to slot `destination` (keys and values;
    /// NH is the number of heads the cache holds, i.e. the key/value heads).
    func copyCacheSlot(keys: FloatBuffer, values: FloatBuffer, from source: Int, to destination: Int, length: Int,
                       NH: Int, capacity: Int, headSize: Int)

    /// Whether the KV cache can be kept in half precision: `allocateHalf` and the `HalfBuffer`
    /// forms of `cachedAttentionForward` and `copyCacheSlot` (keys and values are rounded to f16
    /// when stored; scores and sums stay fp32).
    var supportsHalfPrecisionCache: Bool { get }
    func allocateHalf(_ count: Int) throws -> HalfBuffer
    func deallocateHalf(_ buffer: HalfBuffer)
    func cachedAttentionForward(out: FloatBuffer, qkv: FloatBuffer, keys: HalfBuffer, values: HalfBuffer,
                                slots: TokenBuffer, positions: TokenBuffer, N: Int, C: Int, NH: Int, KVH: Int,
                                capacity: Int)
    func copyCacheSlot(keys: HalfBuffer, values: HalfBuffer, from source: Int, to destination: Int, length: Int,
                       NH: Int, capacity: Int, headSize: Int)

    func allocateInt8(_ count: Int) throws -> Int8Buffer
    func deallocateInt8(_ buffer: Int8Buffer)
    /// Per-row absmax int8 quantisation of a (rows, C) matrix: scale[r] = max|w[r,:]| / 127,
    /// q = round(w / scale).
    func quantizeRows(weight: FloatBuffer, into q: Int8Buffer, scales: FloatBuffer, rows: Int, C: Int)
    /// out (N, OC) = input (N, C) · (scales ⊙ q)ᵀ + bias: matmulForward with int8 weights.
    func matmulInt8Forward(out: FloatBuffer, input: FloatBuffer, weight: Int8Buffer, scales: FloatBuffer,
                           bias: FloatBuffer?, N: Int, C: Int, OC: Int)

    /// Whether the backend has a faster small-batch layout for fp32 weights: `panelFloats`,
    /// `packPanels` and `matmulPanelForward`. An inference model that decodes several sequences
    /// at once keeps a packed copy of each matrix when this is true.
    var supportsPanelWeights: Bool { get }
    /// Floats the packed copy of a (rows, C) matrix takes.
    func panelFloats(rows: Int, C: Int) -> Int
    /// Packs a (rows, C) matrix into `panels` (`panelFloats(rows:C:)` floats).
    func packPanels(weight: FloatBuffer, into panels: FloatBuffer, rows: Int, C: Int)
    /// matmulForward for a decode step: `panels` is `weight` packed by `packPanels`; the backend
    /// uses whichever of the two suits N.
    func matmulPanelForward(out: FloatBuffer, input: FloatBuffer, weight: FloatBuffer, panels: FloatBuffer,
                            bias: FloatBuffer?, N: Int, C: Int, OC: Int)

    // MARK: Optimiser

    /// Σ x² over the buffer, in double precision, in a fixed order.
    func sumOfSquares(_ buffer: FloatBuffer) -> Double
    /// One AdamW update (PyTorch semantics, decoupled weight decay) of `count` parameters.
    func adamw(params: FloatBuffer, grads: FloatBuffer, m: FloatBuffer, v: FloatBuffer, count: Int,
               step: AdamWStep)
    /// AdamW over every segment of the same arenas in one call, each with its own weight decay
    /// (`step.weightDecay` is ignored). With `zeroGradients`, each gradient is set to 0 once read,
    /// which is the next step's zeroing done while the values are in cache. Default: `adamw` per
    /// segment, then `zero(grads)`.
    func adamw(params: FloatBuffer, grads: FloatBuffer, m: FloatBuffer, v: FloatBuffer, segments: [AdamWSegment],
               step: AdamWStep, zeroGradients: Bool)

    /// Waits until queued work has finished (no-op on the CPU).
    func synchronize()
}

/// A backend without a packed small-batch layout says so; callers check `supportsPanelWeights`,
/// and the matrix product falls back to the plain one.
extension Backend {
    public var supportsPanelWeights: Bool { false }
    public func panelFloats(rows: Int, C: Int) -> Int { rows * C }
    public func packPanels(weight: FloatBuffer, into panels: FloatBuffer, rows: Int, C: Int) {
        copy(from: weight, to: panels)
    }
    public func matmulPanelForward(out: FloatBuffer, input: FloatBuffer, weight: FloatBuffer, panels: FloatBuffer,
                                   bias: FloatBuffer?, N: Int, C: Int, OC: Int) {
        matmulForward(out: out, input: input, weight: weight, bias: bias, N: N, C: C, OC: OC)
    }
}

/// A backend without a half-precision KV cache says so; callers check `supportsHalfPrecisionCache`
/// before allocating one, so the kernels below are never reached.
extension Backend {
    public var supportsHalfPrecisionCache: Bool { false }
    public func allocateHalf(_ count: Int) throws -> HalfBuffer {
        throw ComputeError.unsupported("a half-precision (f16) KV cache is not available on the \(name) backend")
    }
    public func deallocateHalf(_ buffer: HalfBuffer) {}
    public func cachedAttentionForward(out: FloatBuffer, qkv: FloatBuffer, keys: HalfBuffer, values: HalfBuffer,
                                       slots: TokenBuffer, positions: TokenBuffer, N: Int, C: Int, NH: Int, KVH: Int,
                                       capacity: Int) {
        preconditionFailure("the \(name) backend has no half-precision KV cache")
    }
    public func copyCacheSlot(keys: HalfBuffer, values: HalfBuffer, from source: Int, to destination: Int, length: Int,
                              NH: Int, capacity: Int, headSize: Int) {
        preconditionFailure("the \(name) backend has no half-precision KV cache")
    }
}

extension Backend {
    public func adamw(params: FloatBuffer, grads: FloatBuffer, m: FloatBuffer, v: FloatBuffer, segments: [AdamWSegment],
                      step: AdamWStep, zeroGradients: Bool) {
        for segment in segments {
            var s = step
            s.weightDecay = segment.weightDecay
            adamw(params: params.slice(segment.offset, segment.count), grads: grads.slice(segment.offset, segment.count),
                  m: m.slice(segment.offset, segment.count), v: v.slice(segment.offset, segment.count), count: segment.count,
                  step: s)
        }
        if zeroGradients { zero(grads) }
    }

    public func matmulGELUForward(preactivation: FloatBuffer, activated: FloatBuffer, input: FloatBuffer, weight: FloatBuffer,
                                  bias: FloatBuffer?, N: Int, C: Int, OC: Int) {
        matmulForward(out: preactivation, input: input, weight: weight, bias: bias, N: N, C: C, OC: OC)
        geluForward(out: activated, input: preactivation, count: N * OC)
    }

    public func matmulBackwardOverwritingInput(dinput: FloatBuffer, dweight: FloatBuffer, dbias: FloatBuffer?, dout: FloatBuffer,
                                               input: FloatBuffer, weight: FloatBuffer, N: Int, C: Int, OC: Int) {
        zero(dinput)
        matmulBackward(dinput: dinput, dweight: dweight, dbias: dbias, dout: dout, input: input, weight: weight, N: N, C: C, OC: OC)
    }

    public func matmulGELUBackward(dpreactivation: FloatBuffer, dactivated: FloatBuffer, dweight: FloatBuffer,
                                   dbias: FloatBuffer?, dout: FloatBuffer, preactivation: FloatBuffer, activated: FloatBuffer,
                                   weight: FloatBuffer, N: Int, C: Int, OC: Int) {
        zero(dactivated)
        matmulBackward(dinput: dactivated, dweight: dweight, dbias: dbias, dout: dout, input: activated, weight: weight,
                       N: N, C: C, OC: OC)
        zero(dpreactivation)
        geluBackward(dinput: dpreactivation, input: preactivation, dout: dactivated, count: N * C)
    }

    /// Multi-head attention without grouping (KVH = NH).
    public func attentionForward(out: FloatBuffer, lse: FloatBuffer, qkv: FloatBuffer,
                                 B: Int, T: Int, C: Int, NH: Int, dropout: DropoutSpec?) {
        attentionForward(out: out, lse: lse, qkv: qkv, B: B, T: T, C: C, NH: NH, KVH: NH, dropout: dropout)
    }

    public func attentionBackward(dqkv: FloatBuffer, dout: FloatBuffer, lse: FloatBuffer, qkv: FloatBuffer,
                                  B: Int, T: Int, C: Int, NH: Int, dropout: DropoutSpec?) {
        attentionBackward(dqkv: dqkv, dout: dout, lse: lse, qkv: qkv, B: B, T: T, C: C, NH: NH, KVH: NH, dropout: dropout)
    }

    public func cachedAttentionForward(out: FloatBuffer, qkv: FloatBuffer, keys: FloatBuffer, values: FloatBuffer,
                                       slots: TokenBuffer, positions: TokenBuffer, N: Int, C: Int, NH: Int, capacity: Int) {
        cachedAttentionForward(out: out, qkv: qkv, keys: keys, values: values, slots: slots, positions: positions,
                               N: N, C: C, NH: NH, KVH: NH, capacity: capacity)
    }
}
