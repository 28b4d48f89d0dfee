// A GPT prepared for generation: a preallocated KV cache with one slot per sequence, working
// buffers for a bounded number of new rows per pass, and optionally int8 copies of the weight
// matrices. A forward takes, for several sequences at once, the tokens that are new since the last
// call and returns the logits after the last new token of each.
//
// Legend: S cache slots, R rows per pass, L layers, C channels, NH heads, hs head size,
// V vocabulary, Vp padded vocabulary.

import Compute
import Model

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How the weight matrices are stored for inference.
public enum WeightFormat: String, Sendable, CaseIterable {
    /// The model's own fp32 weights.
    case float32 = "none"
    /// Per-row absmax int8 copies of every matrix (attention, MLP, vocabulary head): a quarter of the
    /// bytes to read per decoded token. Biases, layer norms and embeddings stay fp32.
    case int8
}

/// What the KV cache holds.
public enum KVCacheFormat: String, Sendable, CaseIterable {
    /// fp32 keys and values: decoding equals a full recomputation.
    case f32
    /// Half-precision keys and values (rounded when stored; attention arithmetic stays fp32): half
    /// the cache memory, and half the bytes each decoding step reads from it.
    case f16
}

/// The KV cache's storage, (L, S, KVH, capacity, hs) each for keys and values.
enum KVCacheStorage {
    case f32(keys: FloatBuffer, values: FloatBuffer)
    case f16(keys: HalfBuffer, values: HalfBuffer)

    /// `Backend.cachedAttentionForward` on layer `l`'s part of the cache (`perLayer` elements each).
    func attend(_ be: any Backend, layer l: Int, perLayer: Int, out: FloatBuffer, qkv: FloatBuffer, slots: TokenBuffer,
                positions: TokenBuffer, N: Int, C: Int, NH: Int, KVH: Int, capacity: Int) {
        switch self {
        case .f32(let keys, let values):
            be.cachedAttentionForward(out: out, qkv: qkv, keys: keys.slice(l * perLayer, perLayer), values: values.slice(l * perLayer, perLayer),
                                      slots: slots, positions: positions, N: N, C: C, NH: NH, KVH: KVH, capacity: capacity)
        case .f16(let keys, let values):
            be.cachedAttentionForward(out: out, qkv: qkv, keys: keys.slice(l * perLayer, perLayer), values: values.slice(l * perLayer, perLayer),
                                      slots: slots, positions: positions, N: N, C: C, NH: NH, KVH: KVH, capacity: capacity)
        }
    }

    /// `Backend.copyCacheSlot` on layer `l`'s part of the cache.
    func copySlot(_ be: any Backend, layer l: Int, perLayer: Int, from source: Int, to destination: Int, length: Int,
                  NH: Int, capacity: Int, headSize: Int) {
        switch self {
        case .f32(let keys, let values):
            be.copyCacheSlot(keys: keys.slice(l * perLayer, perLayer), values: values.slice(l * perLayer, perLayer),
                             from: source, to: destination, length: length, NH: NH, capacity: capacity, headSize: headSize)
        case .f16(let keys, let values):
            be.copyCacheSlot(keys: keys.slice(l * perLayer, perLayer), values: values.slice(l * perLayer, perLayer),
                             from: source, to: destination, length: length, NH: NH, capacity: capacity, headSize: headSize)
        }
    }

    func free(_ be: any Backend) {
        switch self {
        case .f32(let keys, let values): be.deallocate(keys); be.deallocate(values)
        case .f16(let keys, let values): be.deallocateHalf(keys); be.deallocateHalf(values)
        }
    }
}

/// New tokens of one sequence for `InferenceModel.forward`.
public struct SequenceInput: Sendable {
    /// Cache slot of the sequence (0..<slotCount).
    public var slot: Int
    /// Tokens to append, at positions start..<start+tokens.count.
    public var tokens: [Int32]
    /// Position of the first new token; positions 0..<start of the slot must already be cached.
    public var start: Int

    public init(slot: Int, tokens: [Int32], start: Int) {
        self.slot = slot
        self.tokens = tokens
        self.start = start
    }
}

public final class InferenceModel: @unchecked Sendable {
    public let model: GPT
    public let config: GPTConfig
    public let backend: any Backend
    public let slotCount: Int
    /// Positions each slot holds (the context length unless a smaller cache was asked for).
    public let capacity: Int
    /// New rows processed per pass; longer prompts are prefilled in several passes.
    public let rowsPerPass: Int
    public let weightFormat: WeightFormat
    public let kvCacheFormat: KVCacheFormat

    private let cache: KVCacheStorage
    private let work: Arena
    private let tokenIds: TokenBuffer
    private let positions: TokenBuffer
    private let slots: TokenBuffer
    private var quantized: [Int: (q: Int8Buffer, scales: FloatBuffer)] = [:]
    private var quantizedStorage: Int8Buffer?
    private var scaleStorage: FloatBuffer?
    /// fp32 matrices packed for decoding several sequences at once (see `Backend.packPanels`).
    private var panels: [Int: FloatBuffer] = [:]
    private var panelStorage: FloatBuffer?
    private var headScratch: Arena?
    /// Logits handed to the caller, and the padded rows they are cut from (reused between steps).
    private var hostLogits: [Float] = []
    private var paddedHostLogits: [Float] = []
    /// Bumped whenever something other than the Engine overwrites the cache (scoring), so the
    /// Engine knows its record of what the slots hold is stale.
    public private(set) var cacheEpoch = 0

    /// - Parameters:
    ///   - slots: sequences that can be generated at once (each owns a KV cache slot).
    ///   - capacity: positions per slot (default and maximum: the model's context length).
    ///   - rowsPerPass: new tokens per forward pass (prompt chunk size).
    ///   - kvCache: fp32, or f16 (half the cache memory and reads; the backend must support it).
    ///   - packedDecode: with fp32 weights and more than one slot, keep a second copy of every
    ///     matrix in the backend's small-batch layout when it has one (faster decoding of several
    ///     sequences at once, for one more copy of the matrices in memory). The copy is taken
    ///     here: later changes to the model's weights do not reach it.
    public init(model: GPT, slots: Int = 1, capacity: Int? = nil, rowsPerPass: Int = 256,
                weightFormat: WeightFormat = .float32, kvCache: KVCacheFormat = .f32, packedDecode: Bool = true) throws {
        let config = model.config
        let T = config.contextLength
        let capacity = capacity ?? T
        guard slots >= 1 else { throw EngineError.invalidSetting("at least one sequence slot is needed (got \(slots))") }
        guard capacity >= 1 && capacity <= T else {
            throw EngineError.invalidSetting("the KV cache capacity must be in 1...\(T) (the model's context), got \(capacity)")
        }
        guard rowsPerPass >= 1 else { throw EngineError.invalidSetting("rowsPerPass must be at least 1") }
        self.model = model
        self.config = config
        self.backend = model.backend
        self.slotCount = slots
        self.capacity = capacity
        self.rowsPerPass = min(rowsPerPass, slots * capacity)
        self.weightFormat = weightFormat
        self.kvCacheFormat = kvCache
        let C = config.width, L = config.layers
        let cacheCount = L * slots * capacity * config.kvWidth
        switch kvCache {
        case .f32:
            cache = .f32(keys: try backend.allocate(cacheCount), values: try backend.allocate(cacheCount))
        case .f16:
            guard backend.supportsHalfPrecisionCache else {
                throw EngineError.invalidSetting("an f16 KV cache is not available on the \(backend.name) backend yet; use --kv-cache f32")
            }
            cache = .f16(keys: try backend.allocateHalf(cacheCount), values: try backend.allocateHalf(cacheCount))
        }
        let R = self.rowsPerPass
        work = try Arena(backend: backend, entries: [
            ArenaEntry(name: "x", shape: [R, C]), ArenaEntry(name: "ln", shape: [R, C]),
            ArenaEntry(name: "mean", shape: [R]), ArenaEntry(name: "rstd", shape: [R]),
            ArenaEntry(name: "qkv", shape: [R, config.qkvWidth]), ArenaEntry(name: "atty", shape: [R, C]),
            ArenaEntry(name: "proj", shape: [R, C]), ArenaEntry(name: "fc", shape: [R, config.feedForwardInputWidth]),
            ArenaEntry(name: "fc_gelu", shape: [R, config.hiddenWidth]), ArenaEntry(name: "last", shape: [slots, C]),
            ArenaEntry(name: "last_ln", shape: [slots, C]), ArenaEntry(name: "last_mean", shape: [slots]),
            ArenaEntry(name: "last_rstd", shape: [slots]), ArenaEntry(name: "logits", shape: [slots, config.paddedVocabSize]),
        ])
        tokenIds = try backend.allocateTokens(R)
        positions = try backend.allocateTokens(R)
        self.slots = try backend.allocateTokens(max(R, slots))
        if weightFormat == .int8 { try quantize() }
        if weightFormat == .float32 && slots > 1 && packedDecode && backend.supportsPanelWeights { try packPanels() }
    }

    deinit {
        cache.free(backend)
        backend.deallocateTokens(tokenIds)
        backend.deallocateTokens(positions)
        backend.deallocateTokens(slots)
        if let quantizedStorage { backend.deallocateInt8(quantizedStorage) }
        if let scaleStorage { backend.deallocate(scaleStorage) }
        if let panelStorage { backend.deallocate(panelStorage) }
    }

    /// Indices (in the parameter table) of the matrices that int8 mode replaces, with their shapes.
    private var matrixEntries: [(index: Int, rows: Int, cols: Int)] {
        let C = config.width, ix = model.index
        var list: [(Int, Int, Int)] = [(ix.head, config.paddedVocabSize, C)]
        for p in ix.layers {
            list += [(p.qkvWeight, config.qkvWidth, C), (p.projWeight, C, C), (p.fcWeight, config.feedForwardInputWidth, C),
                     (p.fcProjWeight, C, config.hiddenWidth)]
        }
        return list
    }

    private func quantize() throws {
        let entries = matrixEntries
        let total = entries.reduce(0) { $0 + $1.rows * $1.cols }
        let rows = entries.reduce(0) { $0 + $1.rows }
        let q = try backend.allocateInt8(total)
        let s = try backend.allocate(rows)
        quantizedStorage = q
        scaleStorage = s
        var qo = 0, so = 0
        for e in entries {
            let qb = q.slice(qo, e.rows * e.cols), sb = s.slice(so, e.rows)
            backend.quantizeRows(weight: model.parameters[e.index], into: qb, scales: sb, rows: e.rows, C: e.cols)
            quantized[e.index] = (qb, sb)
            qo += e.rows * e.cols
            so += e.rows
        }
    }

    private func packPanels() throws {
        let entries = matrixEntries
        let total = entries.reduce(0) { $0 + backend.panelFloats(rows: $1.rows, C: $1.cols) }
        let storage = try backend.allocate(total)
        panelStorage = storage
        var offset = 0
        for e in entries {
            let count = backend.panelFloats(rows: e.rows, C: e.cols)
            let buffer = storage.slice(offset, count)
            backend.packPanels(weight: model.parameters[e.index], into: buffer, rows: e.rows, C: e.cols)
            panels[e.index] = buffer
            offset += count
        }
    }

    /// Bytes of weights one decode step reads (every matrix once, plus biases and norms), for
    /// bandwidth accounting.
    public var weightBytesPerStep: Int {
        let matrixFloats = matrixEntries.reduce(0) { $0 + $1.rows * $1.cols }
        let allFloats = model.parameters.entries.reduce(0) { $0 + $1.count }
        // Embedding tables are read one row per token, not whole.
        var tables = model.index.positionEmbedding == nil ? 0 : config.contextLength * config.width
        if !config.tiedEmbeddings { tables += config.paddedVocabSize * config.width }
        let other = allFloats - matrixFloats - tables
        return (weightFormat == .int8 ? matrixFloats : 4 * matrixFloats) + 4 * other
    }

    @inline(__always)
    private func linear(out: FloatBuffer, input: FloatBuffer, weight index: Int, bias: Int?, N: Int, C: Int, OC: Int) {
        let par = model.parameters
        if let (q, scales) = quantized[index] {
            backend.matmulInt8Forward(out: out, input: input, weight: q, scales: scales, bias: bias.map { par[$0] },
                                      N: N, C: C, OC: OC)
        } else if let packed = panels[index] {
            backend.matmulPanelForward(out: out, input: input, weight: par[index], panels: packed, bias: bias.map { par[$0] },
                                       N: N, C: C, OC: OC)
        } else {
            backend.matmulForward(out: out, input: input, weight: par[index], bias: bias.map { par[$0] }, N: N, C: C, OC: OC)
        }
    }

    /// Final norm and the vocabulary head: logits (N, Vp) from hidden states (N, C).
    private func head(out: FloatBuffer, hidden: FloatBuffer, ln: FloatBuffer, mean: FloatBuffer, rstd: FloatBuffer, N: Int) {
        let ix = model.index
        model.normForward(out: ln, mean: mean, rstd: rstd, input: hidden, weight: ix.finalNormWeight, bias: ix.finalNormBias, N: N)
        linear(out: out, input: ln, weight: ix.head, bias: nil, N: N, C: config.width, OC: config.paddedVocabSize)
    }

    /// Copies the first `length` cached positions of one slot into another (n samples of one prompt
    /// share its prefill).
    public func copySlot(from source: Int, to destination: Int, length: Int) {
        let perLayer = slotCount * capacity * config.kvWidth
        for l in 0..<config.layers {
            cache.copySlot(backend, layer: l, perLayer: perLayer, from: source, to: destination, length: length,
                           NH: config.kvHeads, capacity: capacity, headSize: config.headSize)
        }
    }

    /// Appends each input's tokens to its slot and returns the logits (V each, unpadded) after the
    /// last new token of every input, in input order: (inputs.count × V).
    public func forward(_ inputs: [SequenceInput]) throws -> [Float] {
        guard !inputs.isEmpty else { return [] }
        try check(inputs)
        // Flatten into rows and process them in passes of at most rowsPerPass.
        var rowSlot: [Int32] = [], rowToken: [Int32] = [], rowPosition: [Int32] = [], rowOutput: [Int] = []
        for (i, input) in inputs.enumerated() {
            for (j, t) in input.tokens.enumerated() {
                rowSlot.append(Int32(input.slot))
                rowToken.append(t)
                rowPosition.append(Int32(input.start + j))
                rowOutput.append(j == input.tokens.count - 1 ? i : -1)
            }
        }
        var r0 = 0
        while r0 < rowSlot.count {
            let r1 = min(rowSlot.count, r0 + rowsPerPass)
            pass(slots: rowSlot[r0..<r1], tokens: rowToken[r0..<r1], positions: rowPosition[r0..<r1], outputs: rowOutput[r0..<r1])
            r0 = r1
        }
        // Final layer norm and vocabulary head for the last row of every input only.
        let C = config.width, V = config.vocabSize, Vp = config.paddedVocabSize
        let n = inputs.count
        let last = work[9].slice(0, n * C), lastLn = work[10].slice(0, n * C), logits = work[13].slice(0, n * Vp)
        head(out: logits, hidden: last, ln: lastLn, mean: work[11], rstd: work[12], N: n)
        // Host buffers are reused from step to step (a fresh 1.6 MB array per decoding step of a
        // batch of 8 cost page faults and zeroing); a caller still holding the previous result
        // keeps its own copy (copy on write).
        if hostLogits.count != n * V { hostLogits = [Float](repeating: 0, count: n * V) }
        if V == Vp {
            hostLogits.withUnsafeMutableBufferPointer { backend.download(logits, into: $0) }
            return hostLogits
        }
        if paddedHostLogits.count < n * Vp { paddedHostLogits = [Float](repeating: 0, count: n * Vp) }
        paddedHostLogits.withUnsafeMutableBufferPointer { padded in
            backend.download(logits, into: UnsafeMutableBufferPointer(rebasing: padded[0..<(n * Vp)]))
            hostLogits.withUnsafeMutableBufferPointer { out in
                for i in 0..<n {
                    (out.baseAddress! + i * V).update(from: padded.baseAddress! + i * Vp, count: V)
                }
            }
        }
        return hostLogits
    }

    private func check(_ inputs: [SequenceInput]) throws {
        guard inputs.count <= slotCount else {
            throw EngineError.invalidSetting("\(inputs.count) sequences but only \(slotCount) cache slots")
        }
        var seen = Set<Int>()
        for input in inputs {
            guard input.slot >= 0 && input.slot < slotCount else {
                throw EngineError.invalidSetting("slot \(input.slot) is outside 0..<\(slotCount)")
            }
            guard seen.insert(input.slot).inserted else { throw EngineError.invalidSetting("slot \(input.slot) appears twice") }
            guard !input.tokens.isEmpty else { throw EngineError.invalidSetting("an input has no tokens") }
            guard input.start >= 0 && input.start + input.tokens.count <= capacity else {
                throw EngineError.contextFull(needed: input.start + input.tokens.count, capacity: capacity)
            }
            for t in input.tokens where t < 0 || Int(t) >= config.vocabSize {
                throw EngineError.invalidToken(t, vocabularySize: config.vocabSize)
            }
        }
    }

    /// Appends each input's tokens to its slot and returns, for every input token j, the
    /// log-probability the model gives `targets[i][j]` as the token that follows it (the
    /// continuation scores of classification and multiple-choice evaluation). Prompts can share a
    /// prefix through `copySlot`.
    public func logProbabilities(_ inputs: [SequenceInput], targets: [[Int32]]) throws -> [[Float]] {
        guard inputs.count == targets.count else { throw EngineError.invalidSetting("\(inputs.count) inputs but \(targets.count) target lists") }
        try check(inputs)
        for (input, target) in zip(inputs, targets) {
            guard input.tokens.count == target.count else {
                throw EngineError.invalidSetting("an input has \(input.tokens.count) tokens but \(target.count) targets")
            }
            for t in target where t < 0 || Int(t) >= config.vocabSize { throw EngineError.invalidToken(t, vocabularySize: config.vocabSize) }
        }
        var rowSlot: [Int32] = [], rowToken: [Int32] = [], rowPosition: [Int32] = [], rowTarget: [Int32] = []
        for (input, target) in zip(inputs, targets) {
            for (j, t) in input.tokens.enumerated() {
                rowSlot.append(Int32(input.slot)); rowToken.append(t); rowPosition.append(Int32(input.start + j)); rowTarget.append(target[j])
            }
        }
        let flat = try scoreRows(slots: rowSlot, tokens: rowToken, positions: rowPosition, targets: rowTarget)
        var out: [[Float]] = []
        var k = 0
        for input in inputs { out.append(flat[k..<(k + input.tokens.count)].map { Float($0) }); k += input.tokens.count }
        return out
    }

    /// Runs the rows through the model (appending them to their cache slots) and returns the
    /// log-probability of each row's target after it. The cache is no longer what the Engine
    /// left there, so its epoch advances.
    private func scoreRows(slots: [Int32], tokens: [Int32], positions: [Int32], targets: [Int32]) throws -> [Double] {
        let scratch = try headArena()
        let C = config.width, V = config.vocabSize, Vp = config.paddedVocabSize
        cacheEpoch += 1
        var out: [Double] = []
        out.reserveCapacity(tokens.count)
        var host = [Float](repeating: 0, count: rowsPerPass * Vp)
        var r0 = 0
        while r0 < tokens.count {
            let r1 = min(tokens.count, r0 + rowsPerPass), n = r1 - r0
            pass(slots: slots[r0..<r1], tokens: tokens[r0..<r1], positions: positions[r0..<r1], outputs: ArraySlice(repeating: -1, count: n))
            let x = work[0].slice(0, n * C), ln = scratch[0].slice(0, n * C), logits = scratch[3].slice(0, n * Vp)
            head(out: logits, hidden: x, ln: ln, mean: scratch[1], rstd: scratch[2], N: n)
            host.withUnsafeMutableBufferPointer { backend.download(logits, into: UnsafeMutableBufferPointer(rebasing: $0[0..<(n * Vp)])) }
            for i in 0..<n { out.append(logSoftmax(host, row: i * Vp, count: V, at: Int(targets[r0 + i]))) }
            r0 = r1
        }
        return out
    }

    private func headArena() throws -> Arena {
        if let headScratch { return headScratch }
        let C = config.width, Vp = config.paddedVocabSize
        let arena = try Arena(backend: backend, entries: [
            ArenaEntry(name: "ln", shape: [rowsPerPass, C]), ArenaEntry(name: "mean", shape: [rowsPerPass]),
            ArenaEntry(name: "rstd", shape: [rowsPerPass]), ArenaEntry(name: "logits", shape: [rowsPerPass, Vp]),
        ])
        headScratch = arena
        return arena
    }

    /// log softmax(values[row..<row+count])[at], in double precision.
    private func logSoftmax(_ values: [Float], row: Int, count: Int, at target: Int) -> Double {
        var mx = -Float.infinity
        for v in 0..<count { mx = max(mx, values[row + v]) }
        var sum: Double = 0
        for v in 0..<count { sum += Double(expScalar(values[row + v] - mx)) }
        return Double(values[row + target]) - Double(mx) - log(sum)
    }

    /// Negative log-likelihood of a token sequence under the model: ids[0] is context only, every
    /// later id is predicted from the ones before it. Sequences longer than the cache are scored in
    /// consecutive windows of `capacity` tokens (each window starts fresh, as in nanoGPT's eval).
    /// Uses cache slot 0. Returns the summed NLL in nats and the number of predicted tokens.
    public func negativeLogLikelihood(_ ids: [Int32]) throws -> (nll: Double, count: Int) {
        guard ids.count >= 2 else { return (0, 0) }
        for t in ids where t < 0 || Int(t) >= config.vocabSize { throw EngineError.invalidToken(t, vocabularySize: config.vocabSize) }
        var nll: Double = 0, count = 0
        var w0 = 0
        while w0 + 1 < ids.count {
            // A window of up to `capacity` inputs in slot 0 predicts the next token of each.
            let w1 = min(ids.count - 1, w0 + capacity), n = w1 - w0
            let logps = try scoreRows(slots: [Int32](repeating: 0, count: n), tokens: Array(ids[w0..<w1]),
                                      positions: (0..<n).map { Int32($0) }, targets: Array(ids[(w0 + 1)...w1]))
            for l in logps { nll -= l }
            count += n
            w0 = w1
        }
        return (nll, count)
    }

    private func pass(slots rowSlots: ArraySlice<Int32>, tokens: ArraySlice<Int32>, positions rowPositions: ArraySlice<Int32>,
                      outputs: ArraySlice<Int>) {
        let be = backend, par = model.parameters
        let C = config.width, NH = config.heads, L = config.layers
        let N = tokens.count
        Array(tokens).withUnsafeBufferPointer { be.uploadTokens($0, to: tokenIds) }
        Array(rowPositions).withUnsafeBufferPointer { be.uploadTokens($0, to: positions) }
        Array(rowSlots).withUnsafeBufferPointer { be.uploadTokens($0, to: slots) }
        let QKV = config.qkvWidth, F = config.feedForwardInputWidth, H = config.hiddenWidth, KVH = config.kvHeads
        let x = work[0].slice(0, N * C), ln = work[1].slice(0, N * C), mean = work[2], rstd = work[3]
        let qkv = work[4].slice(0, N * QKV), atty = work[5].slice(0, N * C), proj = work[6].slice(0, N * C)
        let fc = work[7].slice(0, N * F), fcGelu = work[8].slice(0, N * H)
        let ix = model.index
        be.embedForward(out: x, tokens: tokenIds, positions: positions, wte: par[ix.tokenEmbedding],
                        wpe: ix.positionEmbedding.map { par[$0] }, N: N, C: C)
        let perLayer = slotCount * capacity * config.kvWidth
        for l in 0..<L {
            let p = ix.layers[l]
            model.normForward(out: ln, mean: mean, rstd: rstd, input: x, weight: p.norm1Weight, bias: p.norm1Bias, N: N)
            linear(out: qkv, input: ln, weight: p.qkvWeight, bias: p.qkvBias, N: N, C: C, OC: QKV)
            if config.positionEncoding == .rope {
                be.rotaryEmbedding(qkv, positions: positions, N: N, T: capacity, heads: NH, kvHeads: KVH, headSize: config.headSize,
                                   theta: config.ropeTheta, inverse: false)
            }
            cache.attend(be, layer: l, perLayer: perLayer, out: atty, qkv: qkv, slots: slots, positions: positions,
                         N: N, C: C, NH: NH, KVH: KVH, capacity: capacity)
            linear(out: proj, input: atty, weight: p.projWeight, bias: p.projBias, N: N, C: C, OC: C)
            be.residualForward(out: x, a: x, b: proj, count: N * C)
            model.normForward(out: ln, mean: mean, rstd: rstd, input: x, weight: p.norm2Weight, bias: p.norm2Bias, N: N)
            linear(out: fc, input: ln, weight: p.fcWeight, bias: p.fcBias, N: N, C: C, OC: F)
            switch config.feedForward {
            case .gelu: be.geluForward(out: fcGelu, input: fc, count: N * H)
            case .swiglu: be.swigluForward(out: fcGelu, input: fc, N: N, H: H)
            }
            linear(out: proj, input: fcGelu, weight: p.fcProjWeight, bias: p.fcProjBias, N: N, C: H, OC: C)
            be.residualForward(out: x, a: x, b: proj, count: N * C)
        }
        // Keep the hidden state of rows whose logits were asked for.
        for (r, output) in outputs.enumerated() where output >= 0 {
            be.copy(from: x.slice(r * C, C), to: work[9].slice(output * C, C))
        }
    }
}
