// The generation loop: prompts in, token ids out. Prefills every prompt in one pass (sharing the
// prefill of n samples of one prompt, and reusing whatever prefix a slot already holds from the last
// call, e.g. the earlier turns of a chat), then decodes all sequences together, one token each per
// step, with a KV cache. Knows token ids, not text.

import Compute
import Foundation
import Model
import Synchronization

public struct GenerationRequest: Sendable {
    public var prompt: [Int32]
    /// Most new tokens per sequence (generation also stops when the context is full).
    public var maxTokens: Int
    public var sampling: SamplingParameters
    /// Ids that end a sequence (reason `stop`); the stop token itself is not emitted.
    public var stopTokens: Set<Int32>
    /// Independent samples of this prompt (n); they share its prefill.
    public var samples: Int
    /// Also report the log-probabilities of this many most likely tokens at each step.
    public var topLogprobs: Int

    public init(prompt: [Int32], maxTokens: Int, sampling: SamplingParameters = SamplingParameters(),
                stopTokens: Set<Int32> = [], samples: Int = 1, topLogprobs: Int = 0) {
        self.prompt = prompt
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stopTokens = stopTokens
        self.samples = samples
        self.topLogprobs = topLogprobs
    }
}

public enum FinishReason: String, Sendable, Codable {
    /// A stop token (or, one level up, a stop string) ended the sequence.
    case stop
    /// maxTokens reached or the context window is full.
    case length
    /// The caller stopped it.
    case cancelled
}

public struct GeneratedToken: Sendable {
    /// Index of the sequence (requests in order, each with its samples).
    public var sequence: Int
    public var request: Int
    public var sample: Int
    public var id: Int32
    /// Log-probability of `id` under the model's raw distribution.
    public var logprob: Float
    /// The most likely alternatives (when asked for).
    public var topLogprobs: [TokenLogprob]
}

public enum GenerationEvent: Sendable {
    case token(GeneratedToken)
    case finished(sequence: Int, reason: FinishReason)
}

/// Generates with one InferenceModel. One generation runs at a time.
public final class Engine: @unchecked Sendable {
    public let model: InferenceModel
    /// Tokens whose keys and values each slot holds.
    fileprivate var cached: [[Int32]]
    fileprivate var epoch = 0
    private let busy = Mutex(false)

    public init(model: InferenceModel) {
        self.model = model
        cached = Array(repeating: [], count: model.slotCount)
    }

    /// Drops what the slots hold, so the next prompts are prefilled from scratch.
    public func forgetCache() {
        for i in cached.indices { cached[i] = [] }
    }

    /// Starts generating; call `step()` on the result until `isFinished`.
    public func start(_ requests: [GenerationRequest]) throws -> Generation {
        try Generation(engine: self, requests: requests)
    }

    /// Runs to the end, handing every event to `onEvent`. Returning false from it cancels the rest.
    public func generate(_ requests: [GenerationRequest], onEvent: (GenerationEvent) throws -> Bool) throws {
        let generation = try start(requests)
        while !generation.isFinished {
            for event in try generation.step() {
                if try !onEvent(event) {
                    for e in generation.cancel() { _ = try onEvent(e) }
                    return
                }
            }
        }
    }

    /// Completions (ids and finish reason) of every sequence, for callers that need no streaming.
    public func complete(_ requests: [GenerationRequest]) throws -> [(ids: [Int32], reason: FinishReason)] {
        let total = requests.reduce(0) { $0 + $1.samples }
        var ids = Array(repeating: [Int32](), count: total)
        var reasons = Array(repeating: FinishReason.length, count: total)
        try generate(requests) { event in
            switch event {
            case .token(let t): ids[t.sequence].append(t.id)
            case .finished(let s, let r): reasons[s] = r
            }
            return true
        }
        return Array(zip(ids, reasons))
    }

    /// The same events as an AsyncSequence. The model runs on its own thread; cancelling the
    /// consuming task (or dropping the stream) stops generation at the next token with `cancelled`.
    public func stream(_ requests: [GenerationRequest]) -> AsyncThrowingStream<GenerationEvent, Error> {
        AsyncThrowingStream { continuation in
            let cancelled = CancelFlag()
            continuation.onTermination = { _ in cancelled.set() }
            let thread = Thread { [self] in
                do {
                    let generation = try start(requests)
                    while !generation.isFinished {
                        if cancelled.isSet {
                            for e in generation.cancel() { continuation.yield(e) }
                            break
                        }
                        for e in try generation.step() { continuation.yield(e) }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    fileprivate func acquire() throws {
        let ok = busy.withLock { (b: inout Bool) -> Bool in
            if b { return false }
            b = true
            return true
        }
        if !ok { throw EngineError.invalidSetting("this engine is already generating; run one generation at a time") }
    }

    fileprivate func release() { busy.withLock { $0 = false } }
}

final class CancelFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .relaxed) }
    var isSet: Bool { flag.load(ordering: .relaxed) }
}

/// A running batch of sequences. `step()` advances every unfinished sequence by one token (the
/// first call prefills the prompts).
public final class Generation {
    private struct Sequence {
        var request: Int
        var sample: Int
        var slot: Int
        var prompt: [Int32]
        var generated: [Int32] = []
        var sampler: Sampler
        var finished: FinishReason? = nil
        var stopTokens: Set<Int32>
        var maxTokens: Int
        var topLogprobs: Int
        /// The sequence whose prefill this one copies (samples after the first).
        var primary: Int?
    }

    private let engine: Engine
    private var sequences: [Sequence] = []
    private var started = false
    private var released = false
    public private(set) var isFinished = false

    init(engine: Engine, requests: [GenerationRequest]) throws {
        self.engine = engine
        let model = engine.model
        let total = requests.reduce(0) { $0 + max(0, $1.samples) }
        guard total <= model.slotCount else { throw EngineError.tooManySequences(requested: total, slots: model.slotCount) }
        for (r, request) in requests.enumerated() {
            guard !request.prompt.isEmpty else { throw EngineError.emptyPrompt }
            guard request.prompt.count < model.capacity else {
                throw EngineError.promptTooLong(tokens: request.prompt.count, capacity: model.capacity)
            }
            guard request.samples >= 1 else { throw EngineError.invalidSetting("samples must be at least 1, got \(request.samples)") }
            guard request.maxTokens >= 0 else { throw EngineError.invalidSetting("max tokens must be ≥ 0, got \(request.maxTokens)") }
            guard request.topLogprobs >= 0 else { throw EngineError.invalidSetting("top logprobs must be ≥ 0") }
            try request.sampling.validate(vocabularySize: model.config.vocabSize)
            for t in request.prompt where t < 0 || Int(t) >= model.config.vocabSize {
                throw EngineError.invalidToken(t, vocabularySize: model.config.vocabSize)
            }
            let first = sequences.count
            for s in 0..<request.samples {
                sequences.append(Sequence(
                    request: r, sample: s, slot: sequences.count, prompt: request.prompt,
                    sampler: Sampler(parameters: request.sampling, prompt: request.prompt, stream: UInt64(s)),
                    stopTokens: request.stopTokens, maxTokens: request.maxTokens, topLogprobs: request.topLogprobs,
                    primary: s == 0 ? nil : first))
            }
        }
        try engine.acquire()
        if engine.epoch != model.cacheEpoch {
            engine.forgetCache()
            engine.epoch = model.cacheEpoch
        }
        if sequences.isEmpty || sequences.allSatisfy({ $0.maxTokens == 0 }) {
            for i in sequences.indices { sequences[i].finished = .length }
        }
    }

    deinit { if !released { engine.release() } }

    private func finishIfDone() {
        if !isFinished && sequences.allSatisfy({ $0.finished != nil }) {
            isFinished = true
            if !released { released = true; engine.release() }
        }
    }

    /// One token for every unfinished sequence. Returns its events (tokens and finishes).
    public func step() throws -> [GenerationEvent] {
        finishIfDone()
        if isFinished {
            if !started {
                started = true
                return sequences.indices.map { .finished(sequence: $0, reason: sequences[$0].finished ?? .length) }
            }
            return []
        }
        let model = engine.model
        var inputs: [SequenceInput] = []
        var row = [Int](repeating: -1, count: sequences.count)
        if !started {
            started = true
            for (i, s) in sequences.enumerated() where s.primary == nil {
                let held = engine.cached[s.slot]
                var reuse = 0
                let limit = min(held.count, s.prompt.count - 1)
                while reuse < limit && held[reuse] == s.prompt[reuse] { reuse += 1 }
                row[i] = inputs.count
                inputs.append(SequenceInput(slot: s.slot, tokens: Array(s.prompt[reuse...]), start: reuse))
            }
            // Invalidate what is being overwritten before running (an error leaves no stale claims).
            for s in sequences { engine.cached[s.slot] = [] }
            let logits = try model.forward(inputs)
            for (i, s) in sequences.enumerated() {
                if let p = s.primary {
                    model.copySlot(from: sequences[p].slot, to: s.slot, length: s.prompt.count)
                    row[i] = row[p]
                }
                engine.cached[s.slot] = s.prompt
            }
            return sampleAll(logits: logits, rows: row)
        }
        for (i, s) in sequences.enumerated() where s.finished == nil {
            row[i] = inputs.count
            inputs.append(SequenceInput(slot: s.slot, tokens: [s.generated.last!], start: engine.cached[s.slot].count))
        }
        let logits = try model.forward(inputs)
        for (i, s) in sequences.enumerated() where row[i] >= 0 { engine.cached[s.slot].append(s.generated.last!) }
        return sampleAll(logits: logits, rows: row)
    }

    private func sampleAll(logits: [Float], rows: [Int]) -> [GenerationEvent] {
        let V = engine.model.config.vocabSize, capacity = engine.model.capacity
        var events: [GenerationEvent] = []
        logits.withUnsafeBufferPointer { all in
            for i in sequences.indices where rows[i] >= 0 && sequences[i].finished == nil {
                let x = UnsafeBufferPointer(rebasing: all[(rows[i] * V)..<((rows[i] + 1) * V)])
                let id = sequences[i].sampler.sample(logits: x)
                sequences[i].sampler.accept(id)
                if sequences[i].stopTokens.contains(id) {
                    sequences[i].finished = .stop
                    events.append(.finished(sequence: i, reason: .stop))
                    continue
                }
                let (chosen, top) = logprobs(logits: x, of: id, top: sequences[i].topLogprobs)
                sequences[i].generated.append(id)
                let s = sequences[i]
                events.append(.token(GeneratedToken(sequence: i, request: s.request, sample: s.sample, id: id,
                                                    logprob: chosen.logprob, topLogprobs: top)))
                if s.generated.count >= s.maxTokens || s.prompt.count + s.generated.count >= capacity {
                    sequences[i].finished = .length
                    events.append(.finished(sequence: i, reason: .length))
                }
            }
        }
        finishIfDone()
        return events
    }

    /// Ends one sequence early (e.g. a stop string matched one level up).
    public func finish(sequence: Int, reason: FinishReason) -> GenerationEvent? {
        guard sequences.indices.contains(sequence), sequences[sequence].finished == nil else { return nil }
        sequences[sequence].finished = reason
        finishIfDone()
        return .finished(sequence: sequence, reason: reason)
    }

    /// Ends every unfinished sequence with `cancelled`.
    public func cancel() -> [GenerationEvent] {
        var events: [GenerationEvent] = []
        for i in sequences.indices where sequences[i].finished == nil {
            sequences[i].finished = .cancelled
            events.append(.finished(sequence: i, reason: .cancelled))
        }
        finishIfDone()
        return events
    }

    /// Tokens generated so far by one sequence.
    public func generated(_ sequence: Int) -> [Int32] { sequences[sequence].generated }
}
