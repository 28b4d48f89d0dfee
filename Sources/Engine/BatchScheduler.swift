// Continuous batching for a server: requests arrive at any time, wait in a bounded queue, and join
// the running batch as soon as cache slots are free. Every iteration is one ragged forward pass that
// prefills the newly admitted prompts and advances every running sequence by one token, so many
// clients share each pass over the weights. A request whose consumer goes away (its stream is
// dropped or cancelled) is finished with `cancelled` at the next iteration and its slots freed.

import Foundation
import Synchronization

public struct SchedulerStatistics: Sendable {
    public var queued: Int
    public var running: Int
    public var requestsCompleted: Int
    public var requestsCancelled: Int
    public var promptTokens: Int
    public var generatedTokens: Int
    public var forwardPasses: Int
}

public enum SchedulerError: Error, CustomStringConvertible, Equatable {
    case queueFull(limit: Int)
    case shuttingDown

    public var description: String {
        switch self {
        case .queueFull(let limit): return "the server is busy: \(limit) requests are already waiting; retry later"
        case .shuttingDown: return "the server is shutting down"
        }
    }
}

/// A queued request: its events, and a way to end one sample early.
public struct SchedulerSubmission: Sendable {
    public let events: AsyncThrowingStream<GenerationEvent, Error>
    let stopSample: @Sendable (Int) -> Void
    let cancelAll: @Sendable () -> Void
    /// Ends sample `index` with `stop` at the next iteration (e.g. a stop string matched in its text).
    public func stop(sample index: Int) { stopSample(index) }
    /// Cancels the whole request (the client went away); its slots are freed at the next iteration.
    public func cancel() { cancelAll() }
}

/// Continuous batching for a server (see the top of this file). Dropping the scheduler stops its
/// worker thread and cancels whatever is still running.
public final class BatchScheduler: Sendable {
    private let core: SchedulerCore
    public typealias Submission = SchedulerSubmission

    /// - Parameters:
    ///   - model: its cache slots are the batch: at most `model.slotCount` sequences run at once.
    ///   - maxQueue: requests waiting beyond this are refused with `SchedulerError.queueFull`.
    public init(model: InferenceModel, maxQueue: Int = 256) { core = SchedulerCore(model: model, maxQueue: maxQueue) }
    deinit { core.shutdown() }

    public var model: InferenceModel { core.model }
    public var maxQueue: Int { core.maxQueue }
    public var statistics: SchedulerStatistics { core.statistics }

    /// Checks a request against the model (prompt length, sampling settings, token ids) without queueing it.
    public func validate(_ request: GenerationRequest) throws { try core.validate(request) }

    /// Queues a request. Its events arrive on the stream: tokens (`sequence` = sample index) and one
    /// `finished` per sample; the stream ends after the last sample finishes. Dropping or cancelling
    /// the stream's consumer cancels the request.
    public func submit(_ request: GenerationRequest) throws -> AsyncThrowingStream<GenerationEvent, Error> {
        try core.submitWithHandle(request).events
    }

    /// Queues a request and returns its events with a handle to stop one sample or cancel it all.
    public func submitWithHandle(_ request: GenerationRequest) throws -> Submission { try core.submitWithHandle(request) }

    /// Stops accepting requests, cancels queued and running ones (their streams end with
    /// `cancelled`), and waits for the worker to stop.
    public func shutdown() { core.shutdown() }
}

/// The worker and its state; the thread holds it strongly, the public `BatchScheduler` stops it on deinit.
final class SchedulerCore: @unchecked Sendable {
    private final class Job: @unchecked Sendable {  // mutable fields guarded by `condition`
        let request: GenerationRequest
        let continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation
        var cancelled = false
        /// Samples the consumer ended itself (a stop string matched): finished with `stop`.
        var stopped: Set<Int> = []
        init(request: GenerationRequest, continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation) {
            self.request = request
            self.continuation = continuation
        }
    }

    private struct Running {
        let job: Job
        let sample: Int
        let slot: Int
        var sampler: Sampler
        var generated: [Int32] = []
        var prefilled = false
    }

    let model: InferenceModel
    let maxQueue: Int
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var queue: [Job] = []
    private var stopping = false
    private var stats = SchedulerStatistics(queued: 0, running: 0, requestsCompleted: 0, requestsCancelled: 0,
                                            promptTokens: 0, generatedTokens: 0, forwardPasses: 0)
    // Owned by the worker thread:
    private var running: [Running] = []
    private var freeSlots: [Int]
    private var thread: Thread?

    /// - Parameters:
    ///   - model: its cache slots are the batch: at most `model.slotCount` sequences run at once.
    ///   - maxQueue: requests waiting beyond this are refused with `SchedulerError.queueFull`.
    init(model: InferenceModel, maxQueue: Int) {
        self.model = model
        self.maxQueue = maxQueue
        self.freeSlots = Array((0..<model.slotCount).reversed())
        let thread = Thread { [self] in self.work() }
        thread.name = "swiftgpt-scheduler"
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
    }

    /// Checks a request against the model (prompt length, sampling settings, token ids) without
    /// queueing it.
    func validate(_ request: GenerationRequest) throws {
        guard !request.prompt.isEmpty else { throw EngineError.emptyPrompt }
        guard request.prompt.count < model.capacity else {
            throw EngineError.promptTooLong(tokens: request.prompt.count, capacity: model.capacity)
        }
        guard request.samples >= 1 else { throw EngineError.invalidSetting("n must be at least 1, got \(request.samples)") }
        guard request.samples <= model.slotCount else {
            throw EngineError.tooManySequences(requested: request.samples, slots: model.slotCount)
        }
        guard request.maxTokens >= 1 else { throw EngineError.invalidSetting("max tokens must be ≥ 1, got \(request.maxTokens)") }
        guard request.topLogprobs >= 0 else { throw EngineError.invalidSetting("top logprobs must be ≥ 0") }
        try request.sampling.validate(vocabularySize: model.config.vocabSize)
        for t in request.prompt where t < 0 || Int(t) >= model.config.vocabSize {
            throw EngineError.invalidToken(t, vocabularySize: model.config.vocabSize)
        }
    }

    /// Queues a request. Its events arrive on the stream: tokens (`sequence` = sample index) and one
    /// `finished` per sample; the stream ends after the last sample finishes. Dropping or cancelling
    /// the stream's consumer cancels the request.
    func submitWithHandle(_ request: GenerationRequest) throws -> SchedulerSubmission {
        try validate(request)
        let (stream, continuation) = AsyncThrowingStream<GenerationEvent, Error>.makeStream(bufferingPolicy: .unbounded)
        let job = Job(request: request, continuation: continuation)
        condition.lock()
        defer { condition.unlock() }
        if stopping { throw SchedulerError.shuttingDown }
        if queue.count >= maxQueue { throw SchedulerError.queueFull(limit: maxQueue) }
        queue.append(job)
        stats.queued = queue.count
        continuation.onTermination = { [weak self] termination in
            guard let self, case .cancelled = termination else { return }
            self.condition.lock()
            job.cancelled = true
            self.condition.signal()
            self.condition.unlock()
        }
        condition.signal()
        return SchedulerSubmission(events: stream, stopSample: { [weak self] sample in
            guard let self else { return }
            self.condition.lock()
            job.stopped.insert(sample)
            self.condition.signal()
            self.condition.unlock()
        }, cancelAll: { [weak self] in
            guard let self else { return }
            self.condition.lock()
            job.cancelled = true
            self.condition.signal()
            self.condition.unlock()
        })
    }

    var statistics: SchedulerStatistics {
        condition.lock()
        defer { condition.unlock() }
        return stats
    }

    /// Stops accepting requests, cancels queued and running ones (their streams end with
    /// `cancelled`), and waits for the worker to stop.
    func shutdown() {
        condition.lock()
        if stopping { condition.unlock(); return }
        stopping = true
        condition.signal()
        condition.unlock()
        while true {
            condition.lock()
            let done = thread == nil
            condition.unlock()
            if done { return }
            usleep(1000)
        }
    }

    // MARK: Worker

    private func work() {
        while true {
            // Admit waiting requests while slots are free; sleep when there is nothing to do.
            condition.lock()
            while !stopping && queue.isEmpty && running.isEmpty { condition.wait() }
            if stopping {
                let pending = queue
                queue.removeAll()
                stats.queued = 0
                condition.unlock()
                for job in pending { finishAll(job, samples: 0..<job.request.samples, reason: .cancelled) }
                var jobs: [ObjectIdentifier: Job] = [:]
                for r in running {
                    r.job.continuation.yield(.finished(sequence: r.sample, reason: .cancelled))
                    jobs[ObjectIdentifier(r.job)] = r.job
                }
                for job in jobs.values { job.continuation.finish() }
                running.removeAll()
                condition.lock()
                thread = nil
                condition.unlock()
                return
            }
            var admitted: [Job] = []
            while let job = queue.first, job.request.samples <= freeSlots.count {
                queue.removeFirst()
                if job.cancelled { stats.requestsCancelled += 1; job.continuation.finish(); continue }
                admitted.append(job)
                for s in 0..<job.request.samples {
                    running.append(Running(job: job, sample: s, slot: freeSlots.removeLast(),
                                           sampler: Sampler(parameters: job.request.sampling, prompt: job.request.prompt, stream: UInt64(s))))
                }
            }
            stats.queued = queue.count
            // Samples ended by their consumer.
            var stoppedRows: [Int] = []
            for (i, r) in running.enumerated() where !r.job.cancelled && r.job.stopped.contains(r.sample) { stoppedRows.append(i) }
            // Drop running sequences whose consumer went away.
            let cancelledJobs = Set(running.filter { $0.job.cancelled }.map { ObjectIdentifier($0.job) })
            stats.requestsCancelled += cancelledJobs.count
            condition.unlock()
            if !cancelledJobs.isEmpty {
                for r in running where cancelledJobs.contains(ObjectIdentifier(r.job)) { freeSlots.append(r.slot) }
                var finished = Set<ObjectIdentifier>()
                for r in running where cancelledJobs.contains(ObjectIdentifier(r.job)) && finished.insert(ObjectIdentifier(r.job)).inserted {
                    r.job.continuation.finish()
                }
                running.removeAll { cancelledJobs.contains(ObjectIdentifier($0.job)) }
            }
            if !stoppedRows.isEmpty {
                for i in stoppedRows { running[i].job.continuation.yield(.finished(sequence: running[i].sample, reason: .stop)) }
                let ended = retire(stoppedRows)
                condition.lock()
                stats.running = running.count
                stats.requestsCompleted += ended.count
                condition.unlock()
                for job in ended { job.continuation.finish() }
            }
            if running.isEmpty { continue }
            step()
        }
    }

    /// Frees the slots of the sequences at `rows` (already sent their `finished`). Returns the
    /// requests whose last sample is done: the caller ends their streams after updating the
    /// statistics, so a consumer that sees its stream end also sees itself counted.
    private func retire(_ rows: [Int]) -> [Job] {
        guard !rows.isEmpty else { return [] }
        let gone = Set(rows)
        for i in rows { freeSlots.append(running[i].slot) }
        let remaining = running.enumerated().filter { !gone.contains($0.offset) }.map(\.element)
        var ended: [Job] = []
        for i in rows {
            let job = running[i].job
            if !remaining.contains(where: { $0.job === job }) && !ended.contains(where: { $0 === job }) { ended.append(job) }
        }
        running = remaining
        return ended
    }

    private func finishAll(_ job: Job, samples: Range<Int>, reason: FinishReason) {
        for s in samples { job.continuation.yield(.finished(sequence: s, reason: reason)) }
        job.continuation.finish()
    }

    /// One forward pass: prompts of newly admitted sequences, the last token of running ones.
    private func step() {
        var inputs: [SequenceInput] = []
        var promptTokens = 0
        for r in running {
            let prompt = r.job.request.prompt
            if !r.prefilled {
                inputs.append(SequenceInput(slot: r.slot, tokens: prompt, start: 0))
                promptTokens += prompt.count
            } else {
                inputs.append(SequenceInput(slot: r.slot, tokens: [r.generated.last!], start: prompt.count + r.generated.count - 1))
            }
        }
        let logits: [Float]
        do {
            logits = try model.forward(inputs)
        } catch {
            // Validation happened at submit; an error here is a bug. Fail every running request.
            for r in running { r.job.continuation.finish(throwing: error); freeSlots.append(r.slot) }
            running.removeAll()
            return
        }
        let V = model.config.vocabSize, capacity = model.capacity
        var generated = 0
        var done: [Int] = []
        logits.withUnsafeBufferPointer { all in
            for i in running.indices {
                running[i].prefilled = true
                let x = UnsafeBufferPointer(rebasing: all[(i * V)..<((i + 1) * V)])
                let request = running[i].job.request
                let id = running[i].sampler.sample(logits: x)
                running[i].sampler.accept(id)
                let sample = running[i].sample, job = running[i].job
                if request.stopTokens.contains(id) {
                    job.continuation.yield(.finished(sequence: sample, reason: .stop))
                    done.append(i)
                    continue
                }
                let (chosen, top) = logprobs(logits: x, of: id, top: request.topLogprobs)
                running[i].generated.append(id)
                generated += 1
                job.continuation.yield(.token(GeneratedToken(sequence: sample, request: 0, sample: sample, id: id,
                                                             logprob: chosen.logprob, topLogprobs: top)))
                let count = running[i].generated.count
                if count >= request.maxTokens || request.prompt.count + count >= capacity {
                    job.continuation.yield(.finished(sequence: sample, reason: .length))
                    done.append(i)
                }
            }
        }
        let ended = retire(done)
        condition.lock()
        stats.running = running.count
        stats.promptTokens += promptTokens
        stats.generatedTokens += generated
        stats.forwardPasses += 1
        stats.requestsCompleted += ended.count
        condition.unlock()
        for job in ended { job.continuation.finish() }
    }
}
