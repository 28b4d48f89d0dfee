// Continuous batching: requests that join and leave the running batch at different times give the
// same tokens as each request alone; cancellation frees slots; a full queue is refused.

import Compute
import XCTest
@testable import Engine
import Model

final class BatchSchedulerTests: XCTestCase {
    func makeModel() throws -> GPT {
        let model = try GPT(config: GPTConfig(vocabSize: 70, contextLength: 48, layers: 2, heads: 2, width: 32), backend: CPUBackend())
        model.initialize(seed: 3)
        for i in model.parameters.entries.indices {
            let b = model.parameters[i]
            for j in 0..<b.count { b.pointer[j] *= 6 }
        }
        return model
    }

    static func collect(_ stream: AsyncThrowingStream<GenerationEvent, Error>, samples: Int = 1) async throws -> ([[Int32]], [FinishReason?]) {
        var ids = [[Int32]](repeating: [], count: samples)
        var reasons = [FinishReason?](repeating: nil, count: samples)
        for try await event in stream {
            switch event {
            case .token(let t): ids[t.sequence].append(t.id)
            case .finished(let s, let r): reasons[s] = r
            }
        }
        return (ids, reasons)
    }

    func testConcurrentRequestsGiveTheSameTokensAsEachAlone() async throws {
        let model = try makeModel()
        let engine = Engine(model: try InferenceModel(model: model, slots: 1))
        let prompts: [[Int32]] = [[5], [1, 2, 3, 4, 5, 6, 7], Array(0..<20).map { Int32($0 * 3 % 70) }, [9, 9, 9]]
        let lengths = [12, 5, 20, 9]
        var expected: [[Int32]] = []
        for (p, n) in zip(prompts, lengths) {
            expected.append(try engine.complete([GenerationRequest(prompt: p, maxTokens: n, sampling: .greedy)])[0].ids)
        }
        // Three slots for four requests: the fourth waits for a free slot and joins mid-flight.
        let scheduler = BatchScheduler(model: try InferenceModel(model: model, slots: 3))
        let results = try await withThrowingTaskGroup(of: (Int, [Int32], FinishReason?).self) { group in
            for i in prompts.indices {
                let stream = try scheduler.submit(GenerationRequest(prompt: prompts[i], maxTokens: lengths[i], sampling: .greedy))
                group.addTask { let (ids, reasons) = try await Self.collect(stream); return (i, ids[0], reasons[0]) }
            }
            var out = [(Int, [Int32], FinishReason?)]()
            for try await r in group { out.append(r) }
            return out.sorted { $0.0 < $1.0 }
        }
        for (i, ids, reason) in results {
            XCTAssertEqual(ids, expected[i], "request \(i)")
            XCTAssertEqual(reason, .length)
        }
        let stats = scheduler.statistics
        XCTAssertEqual(stats.generatedTokens, lengths.reduce(0, +))
        XCTAssertEqual(stats.requestsCompleted, 4)
        XCTAssertEqual(stats.running, 0)
    }

    func testSamplesOfOneRequestAndStopTokens() async throws {
        let model = try makeModel()
        let scheduler = BatchScheduler(model: try InferenceModel(model: model, slots: 4))
        var sampling = SamplingParameters(temperature: 1, seed: 11)
        sampling.topK = 5
        let (ids, reasons) = try await Self.collect(try scheduler.submit(GenerationRequest(prompt: [1, 2, 3], maxTokens: 10, sampling: sampling, samples: 3)), samples: 3)
        XCTAssertEqual(ids.count, 3)
        XCTAssertTrue(reasons.allSatisfy { $0 == .length })
        // The same seed gives the same samples again.
        let (again, _) = try await Self.collect(try scheduler.submit(GenerationRequest(prompt: [1, 2, 3], maxTokens: 10, sampling: sampling, samples: 3)), samples: 3)
        XCTAssertEqual(ids, again)
        // A stop token ends a sequence with `stop` and is not emitted.
        let greedy = try await Self.collect(try scheduler.submit(GenerationRequest(prompt: [5], maxTokens: 10, sampling: .greedy)))
        let stopAt = greedy.0[0][3]
        let stopped = try await Self.collect(try scheduler.submit(GenerationRequest(prompt: [5], maxTokens: 10, sampling: .greedy, stopTokens: [stopAt])))
        XCTAssertEqual(stopped.0[0], Array(greedy.0[0].prefix(while: { $0 != stopAt })))
        XCTAssertEqual(stopped.1[0], .stop)
    }

    func testCancellingFreesTheSlotAndAFullQueueIsRefused() async throws {
        let model = try makeModel()
        let scheduler = BatchScheduler(model: try InferenceModel(model: model, slots: 1), maxQueue: 1)
        let submission = try scheduler.submitWithHandle(GenerationRequest(prompt: [1], maxTokens: 40, sampling: .greedy))
        submission.cancel()
        var reasons: [FinishReason] = []
        for try await event in submission.events { if case .finished(_, let r) = event { reasons.append(r) } }
        XCTAssertTrue(reasons.isEmpty || reasons == [.length], "\(reasons)")  // ends early (or had finished already)
        // The slot is free again: a new request completes.
        let (ids, _) = try await Self.collect(try scheduler.submit(GenerationRequest(prompt: [2], maxTokens: 4, sampling: .greedy)))
        XCTAssertEqual(ids[0].count, 4)
        // A queue of 0 refuses everything.
        let closed = BatchScheduler(model: try InferenceModel(model: model, slots: 1), maxQueue: 0)
        XCTAssertThrowsError(try closed.submit(GenerationRequest(prompt: [1], maxTokens: 2, sampling: .greedy))) {
            XCTAssertEqual($0 as? SchedulerError, .queueFull(limit: 0))
        }
        // Bad requests are refused before queueing.
        XCTAssertThrowsError(try scheduler.submit(GenerationRequest(prompt: Array(repeating: 1, count: 48), maxTokens: 2, sampling: .greedy)))
        XCTAssertThrowsError(try scheduler.submit(GenerationRequest(prompt: [1], maxTokens: 2, sampling: .greedy, samples: 2)))
        scheduler.shutdown()
        XCTAssertThrowsError(try scheduler.submit(GenerationRequest(prompt: [1], maxTokens: 2, sampling: .greedy))) {
            XCTAssertEqual($0 as? SchedulerError, .shuttingDown)
        }
    }
}
