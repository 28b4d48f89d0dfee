// The engine against full recomputation, batching and chunked prefill against single runs, int8
// against fp32, seeded sampling, stop tokens, lengths and bad input.

import Compute
import XCTest
@testable import Engine
import Model

final class EngineTests: XCTestCase {
    let config = GPTConfig(vocabSize: 70, contextLength: 48, layers: 2, heads: 2, width: 32)

    func makeModel(seed: UInt64 = 3) throws -> GPT {
        let model = try GPT(config: config, backend: CPUBackend())
        model.initialize(seed: seed)
        // Larger weights than GPT-2's init make the distribution peaked, so greedy paths are not ties.
        for i in model.parameters.entries.indices {
            let b = model.parameters[i]
            for j in 0..<b.count { b.pointer[j] *= 6 }
        }
        return model
    }

    /// Greedy continuation by running the full sequence through the training forward every step.
    func greedyByRecomputation(_ model: GPT, prompt: [Int32], count: Int) throws -> [Int32] {
        var ids = prompt
        var out: [Int32] = []
        for _ in 0..<count {
            try ids.withUnsafeBufferPointer { try model.forward(tokens: $0, batchSize: 1, sequenceLength: ids.count) }
            let logits = model.logits(batch: 0, position: ids.count - 1)
            var best = 0
            for v in 1..<logits.count where logits[v] > logits[best] { best = v }
            out.append(Int32(best))
            ids.append(Int32(best))
        }
        return out
    }

    func testKVCachedGreedyEqualsFullRecomputation() throws {
        let model = try makeModel()
        let engine = Engine(model: try InferenceModel(model: model, slots: 1))
        for prompt in [[Int32(5)], [1, 2, 3, 4, 5, 6, 7], Array(0..<20).map { Int32($0 * 3 % 70) }] {
            let expected = try greedyByRecomputation(model, prompt: prompt, count: 20)
            let got = try engine.complete([GenerationRequest(prompt: prompt, maxTokens: 20, sampling: .greedy)])
            XCTAssertEqual(got[0].ids, expected, "prompt \(prompt)")
            XCTAssertEqual(got[0].reason, .length)
        }
    }

    func testLogitsMatchFullForwardAtEveryPosition() throws {
        let model = try makeModel()
        let prompt: [Int32] = [3, 9, 27, 11, 40, 2, 8, 1, 66, 5, 12]
        try prompt.withUnsafeBufferPointer { try model.forward(tokens: $0, batchSize: 1, sequenceLength: prompt.count) }
        let reference = model.logits()
        // One token at a time, and in chunks of 4 rows per pass: both must give every position's logits.
        for rowsPerPass in [1, 4, 256] {
            let inference = try InferenceModel(model: model, slots: 1, rowsPerPass: rowsPerPass)
            for t in 0..<prompt.count {
                let logits = try inference.forward([SequenceInput(slot: 0, tokens: [prompt[t]], start: t)])
                for v in 0..<70 { XCTAssertEqual(logits[v], reference[t * 70 + v], accuracy: 2e-4) }
            }
            let whole = try InferenceModel(model: model, slots: 1, rowsPerPass: rowsPerPass)
            let last = try whole.forward([SequenceInput(slot: 0, tokens: prompt, start: 0)])
            for v in 0..<70 { XCTAssertEqual(last[v], reference[(prompt.count - 1) * 70 + v], accuracy: 2e-4) }
        }
    }

    /// The f16 KV cache: keys and values are rounded when stored, so logits stay close to the fp32
    /// forward (and pick the same token); prefill in one pass agrees with token-by-token decoding;
    /// batching and copying a prompt's slot for n samples behave
    /// as with the fp32 cache.
    func testHalfPrecisionCache() throws {
        let model = try makeModel()
        let prompt: [Int32] = [3, 9, 27, 11, 40, 2, 8, 1, 66, 5, 12]
        try prompt.withUnsafeBufferPointer { try model.forward(tokens: $0, batchSize: 1, sequenceLength: prompt.count) }
        let reference = model.logits()
        let stepwise = try InferenceModel(model: model, slots: 1, rowsPerPass: 1, kvCache: .f16)
        XCTAssertEqual(stepwise.kvCacheFormat, .f16)
        var last: [Float] = []
        for t in 0..<prompt.count {
            last = try stepwise.forward([SequenceInput(slot: 0, tokens: [prompt[t]], start: t)])
            let row = Array(reference[(t * 70)..<(t * 70 + 70)])
            let scale = row.map(abs).max()!
            for v in 0..<70 { XCTAssertEqual(last[v], row[v], accuracy: 5e-3 * scale, "position \(t) token \(v)") }
            XCTAssertEqual(last.indices.max { last[$0] < last[$1] }, row.indices.max { row[$0] < row[$1] })
        }
        // Prefill reads the same kind of stored values; fp32 rounding differences upstream can only
        // move a stored value across an f16 rounding boundary (one f16 step, ~5e-4 relative).
        let whole = try InferenceModel(model: model, slots: 1, kvCache: .f16)
        let once = try whole.forward([SequenceInput(slot: 0, tokens: prompt, start: 0)])
        let scale = last.map(abs).max()!
        for v in 0..<70 { XCTAssertEqual(once[v], last[v], accuracy: 1e-3 * scale) }

        let prompts: [[Int32]] = [[1, 2, 3], [10, 20, 30, 40, 50, 60, 7], [69], [4, 4, 4, 4]]
        let single = Engine(model: try InferenceModel(model: model, slots: 1, kvCache: .f16))
        var expected: [[Int32]] = []
        for p in prompts {
            expected.append(try single.complete([GenerationRequest(prompt: p, maxTokens: 12, sampling: .greedy)])[0].ids)
        }
        let batched = Engine(model: try InferenceModel(model: model, slots: 4, rowsPerPass: 5, kvCache: .f16))
        XCTAssertEqual(try batched.complete(prompts.map { GenerationRequest(prompt: $0, maxTokens: 12, sampling: .greedy) }).map(\.ids), expected)
        let params = SamplingParameters(temperature: 1.5, topP: 0.95, seed: 42)
        let samples = try batched.complete([GenerationRequest(prompt: [1, 2, 3], maxTokens: 15, sampling: params, samples: 3)]).map(\.ids)
        let alone = try single.complete([GenerationRequest(prompt: [1, 2, 3], maxTokens: 15, sampling: params)])[0].ids
        XCTAssertEqual(samples[0], alone)
    }

    func testBatchOfDifferentPromptsEqualsSeparateRuns() throws {
        let model = try makeModel()
        let prompts: [[Int32]] = [[1, 2, 3], [10, 20, 30, 40, 50, 60, 7], [69], [4, 4, 4, 4]]
        let single = Engine(model: try InferenceModel(model: model, slots: 1))
        var expected: [[Int32]] = []
        for p in prompts {
            expected.append(try single.complete([GenerationRequest(prompt: p, maxTokens: 12, sampling: .greedy)])[0].ids)
        }
        let batched = Engine(model: try InferenceModel(model: model, slots: 4, rowsPerPass: 5))
        let got = try batched.complete(prompts.map { GenerationRequest(prompt: $0, maxTokens: 12, sampling: .greedy) })
        XCTAssertEqual(got.map(\.ids), expected)
    }

    func testPackedDecodeMatchesTheRowLayout() throws {
        // Several slots keep a packed copy of the matrices for decoding; its logits must equal the
        // row-layout kernels' up to float rounding, at every batch size the engine decodes.
        let model = try makeModel()
        let packed = try InferenceModel(model: model, slots: 8, rowsPerPass: 16)
        let plain = try InferenceModel(model: model, slots: 8, rowsPerPass: 16, packedDecode: false)
        var prompts: [[Int32]] = []
        for s in 0..<8 {
            var p: [Int32] = []
            for i in 0..<(3 + s) { p.append(Int32((i * 7 + s * 5) % 60 + 1)) }
            prompts.append(p)
        }
        for (slot, p) in prompts.enumerated() {
            let input = [SequenceInput(slot: slot, tokens: p, start: 0)]
            let a = try packed.forward(input), b = try plain.forward(input)
            for i in a.indices { XCTAssertEqual(a[i], b[i], accuracy: 1e-4 * max(1, abs(b[i]))) }
        }
        for active in [2, 3, 5, 8] {
            let step = (0..<active).map { SequenceInput(slot: $0, tokens: [Int32(10 + $0)], start: prompts[$0].count) }
            let a = try packed.forward(step), b = try plain.forward(step)
            XCTAssertEqual(a.count, b.count)
            for i in a.indices { XCTAssertEqual(a[i], b[i], accuracy: 1e-4 * max(1, abs(b[i])), "\(active) sequences, logit \(i)") }
        }
    }

    func testSeededSamplingIsReproducibleAndSamplesDiffer() throws {
        let model = try makeModel()
        let engine = Engine(model: try InferenceModel(model: model, slots: 4))
        var params = SamplingParameters(temperature: 1.5, topP: 0.95, seed: 42)
        let request = GenerationRequest(prompt: [1, 2, 3], maxTokens: 15, sampling: params, samples: 3)
        let a = try engine.complete([request]).map(\.ids)
        let b = try engine.complete([request]).map(\.ids)
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.count, 3)
        XCTAssertFalse(a[0] == a[1] && a[1] == a[2], "three samples should not all be identical")
        // Sample i of n equals a single request with the same seed for i = 0.
        let alone = try engine.complete([GenerationRequest(prompt: [1, 2, 3], maxTokens: 15, sampling: params)])
        XCTAssertEqual(alone[0].ids, a[0])
        params.seed = 43
        let c = try engine.complete([GenerationRequest(prompt: [1, 2, 3], maxTokens: 15, sampling: params)])
        XCTAssertNotEqual(c[0].ids, a[0])
    }

    func testPrefixReuseGivesSameResultAsFreshCache() throws {
        let model = try makeModel()
        let engine = Engine(model: try InferenceModel(model: model, slots: 1))
        let first = try engine.complete([GenerationRequest(prompt: [5, 6, 7], maxTokens: 6, sampling: .greedy)])[0].ids
        // A second turn that extends the first conversation reuses the cached prefix.
        let followUp: [Int32] = [5, 6, 7] + first + [9, 9]
        let reused = try engine.complete([GenerationRequest(prompt: followUp, maxTokens: 8, sampling: .greedy)])[0].ids
        let fresh = try Engine(model: InferenceModel(model: model, slots: 1))
            .complete([GenerationRequest(prompt: followUp, maxTokens: 8, sampling: .greedy)])[0].ids
        XCTAssertEqual(reused, fresh)
    }

    func testStopTokensAndContextLimit() throws {
        let model = try makeModel()
        let engine = Engine(model: try InferenceModel(model: model, slots: 1))
        let free = try engine.complete([GenerationRequest(prompt: [1, 2], maxTokens: 10, sampling: .greedy)])[0].ids
        let stopAt = free[4]
        let firstIndex = free.firstIndex(of: stopAt)!
        let stopped = try engine.complete([GenerationRequest(prompt: [1, 2], maxTokens: 10, sampling: .greedy, stopTokens: [stopAt])])[0]
        XCTAssertEqual(stopped.reason, .stop)
        XCTAssertEqual(stopped.ids, Array(free.prefix(firstIndex)))
        // The context (48) ends generation with `length` even when maxTokens asks for more.
        let long = try engine.complete([GenerationRequest(prompt: Array(repeating: 3, count: 40), maxTokens: 100, sampling: .greedy)])[0]
        XCTAssertEqual(long.reason, .length)
        XCTAssertEqual(long.ids.count, 8)
    }

    func testBadRequestsAreRejectedClearly() throws {
        let model = try makeModel()
        let engine = Engine(model: try InferenceModel(model: model, slots: 2))
        XCTAssertThrowsError(try engine.start([GenerationRequest(prompt: [], maxTokens: 5)])) {
            XCTAssertEqual($0 as? EngineError, .emptyPrompt)
        }
        XCTAssertThrowsError(try engine.start([GenerationRequest(prompt: Array(repeating: 1, count: 48), maxTokens: 5)])) {
            XCTAssertEqual($0 as? EngineError, .promptTooLong(tokens: 48, capacity: 48))
        }
        XCTAssertThrowsError(try engine.start([GenerationRequest(prompt: [1], maxTokens: 5, samples: 3)])) {
            XCTAssertEqual($0 as? EngineError, .tooManySequences(requested: 3, slots: 2))
        }
        XCTAssertThrowsError(try engine.start([GenerationRequest(prompt: [1, 70], maxTokens: 5)])) {
            XCTAssertEqual($0 as? EngineError, .invalidToken(70, vocabularySize: 70))
        }
        for bad in [SamplingParameters(temperature: -1), SamplingParameters(topP: 0), SamplingParameters(topP: 1.5),
                    SamplingParameters(minP: 2), SamplingParameters(topK: -1), SamplingParameters(repetitionPenalty: 0),
                    SamplingParameters(logitBias: [99: 1])] {
            XCTAssertThrowsError(try engine.start([GenerationRequest(prompt: [1], maxTokens: 5, sampling: bad)])) {
                XCTAssertTrue("\($0)".contains("invalid sampling setting"), "\($0)")
            }
        }
        // The engine is usable after rejected requests.
        XCTAssertEqual(try engine.complete([GenerationRequest(prompt: [1], maxTokens: 3, sampling: .greedy)])[0].ids.count, 3)
    }

    func testInt8KernelsEqualFloat32OnInt8RepresentableWeights() throws {
        // Round every matrix to its int8 grid first: then the int8 engine must reproduce the fp32
        // engine up to float rounding, which checks the quantised kernels (prefill and decode) exactly.
        let model = try makeModel()
        let be = model.backend
        let names = ["wte.weight"] + (0..<config.layers).flatMap { l in
            ["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"].map { "h.\(l).\($0)" }
        }
        for name in names {
            let w = model.parameters[name]!
            let i = model.parameters.position(of: name)!
            let rows = model.parameters.entries[i].shape[0], cols = model.parameters.entries[i].shape[1]
            let q = try be.allocateInt8(rows * cols), s = try be.allocate(rows)
            be.quantizeRows(weight: w, into: q, scales: s, rows: rows, C: cols)
            for r in 0..<rows { for c in 0..<cols { w.pointer[r * cols + c] = Float(q.pointer[r * cols + c]) * s.pointer[r] } }
            be.deallocateInt8(q)
            be.deallocate(s)
        }
        let prompt: [Int32] = [3, 9, 27, 11, 40, 2, 8, 1, 50, 33]
        let fp = try InferenceModel(model: model, slots: 2, rowsPerPass: 4)
        let q = try InferenceModel(model: model, slots: 2, rowsPerPass: 4, weightFormat: .int8)
        // Prefill over several passes (dequantised blocks through BLAS), then decode (int8 kernel).
        let inputs = [SequenceInput(slot: 0, tokens: prompt, start: 0), SequenceInput(slot: 1, tokens: [7, 7, 7], start: 0)]
        let a = try fp.forward(inputs), b = try q.forward(inputs)
        let step = [SequenceInput(slot: 0, tokens: [5], start: prompt.count), SequenceInput(slot: 1, tokens: [6], start: 3)]
        let c = try fp.forward(step), d = try q.forward(step)
        for (x, y) in [(a, b), (c, d)] {
            for i in x.indices { XCTAssertEqual(x[i], y[i], accuracy: 1e-3 * max(1, abs(x[i]))) }
        }
        XCTAssertLessThan(q.weightBytesPerStep * 3, fp.weightBytesPerStep)
    }

    func testStreamYieldsTheSameTokensAndCanBeCancelled() async throws {
        let model = try makeModel()
        let engine = Engine(model: try InferenceModel(model: model, slots: 1))
        let request = GenerationRequest(prompt: [1, 2, 3], maxTokens: 10, sampling: .greedy)
        let expected = try engine.complete([request])[0].ids
        var got: [Int32] = []
        var reason: FinishReason?
        for try await event in engine.stream([request]) {
            switch event {
            case .token(let t): got.append(t.id)
            case .finished(_, let r): reason = r
            }
        }
        XCTAssertEqual(got, expected)
        XCTAssertEqual(reason, .length)
        // Breaking out of the loop cancels; the engine is free again afterwards.
        var count = 0
        for try await event in engine.stream([GenerationRequest(prompt: [1], maxTokens: 40, sampling: .greedy)]) {
            if case .token = event { count += 1 }
            if count == 2 { break }
        }
        var freed = false
        for _ in 0..<200 {
            if (try? engine.start([request])) != nil { freed = true; break }
            try await Task.sleep(nanoseconds: 5_000_000)
        }
        XCTAssertTrue(freed, "the engine should be released after a cancelled stream")
    }

    func testTopLogprobsAreNormalisedAndIncludeTheGreedyToken() throws {
        let model = try makeModel()
        let engine = Engine(model: try InferenceModel(model: model, slots: 1))
        var events: [GeneratedToken] = []
        try engine.generate([GenerationRequest(prompt: [1, 2], maxTokens: 4, sampling: .greedy, topLogprobs: 70)]) { e in
            if case .token(let t) = e { events.append(t) }
            return true
        }
        for t in events {
            XCTAssertEqual(t.topLogprobs.count, 70)
            XCTAssertEqual(t.topLogprobs[0].id, t.id)
            XCTAssertEqual(t.topLogprobs[0].logprob, t.logprob, accuracy: 1e-6)
            let total = t.topLogprobs.reduce(0.0) { $0 + exp(Double($1.logprob)) }
            XCTAssertEqual(total, 1, accuracy: 1e-4)
        }
    }

    func testNegativeLogLikelihoodMatchesTheTrainingForward() throws {
        let model = try makeModel()
        let ids: [Int32] = (0..<30).map { Int32(($0 * 7 + 3) % 70) }
        let inputs = Array(ids.dropLast()), targets = Array(ids.dropFirst())
        let mean = try inputs.withUnsafeBufferPointer { i in
            try targets.withUnsafeBufferPointer { t in try model.forward(tokens: i, targets: t, batchSize: 1, sequenceLength: 29) }
        }
        for format in [WeightFormat.float32] {
            let inference = try InferenceModel(model: model, slots: 1, rowsPerPass: 8, weightFormat: format)
            let (nll, count) = try inference.negativeLogLikelihood(ids)
            XCTAssertEqual(count, 29)
            XCTAssertEqual(nll / Double(count), Double(mean), accuracy: 1e-4)
        }
        // Longer than the context (48): scored in fresh windows of 48 inputs.
        let long: [Int32] = (0..<100).map { Int32(($0 * 11 + 5) % 70) }
        let inference = try InferenceModel(model: model, slots: 1, rowsPerPass: 16)
        let (nll, count) = try inference.negativeLogLikelihood(long)
        XCTAssertEqual(count, 99)
        var expected: Double = 0
        for (a, b) in [(0, 48), (48, 96), (96, 99)] {
            let i = Array(long[a..<b]), t = Array(long[(a + 1)...b])
            let m = try i.withUnsafeBufferPointer { i in
                try t.withUnsafeBufferPointer { t in try model.forward(tokens: i, targets: t, batchSize: 1, sequenceLength: b - a) }
            }
            expected += Double(m) * Double(b - a)
        }
        XCTAssertEqual(nll, expected, accuracy: 1e-2)
        // Generation after scoring does not reuse the overwritten cache.
        let engine = Engine(model: inference)
        let before = try engine.complete([GenerationRequest(prompt: [1, 2, 3], maxTokens: 5, sampling: .greedy)])[0].ids
        _ = try inference.negativeLogLikelihood(long)
        let after = try engine.complete([GenerationRequest(prompt: [1, 2, 3], maxTokens: 5, sampling: .greedy)])[0].ids
        XCTAssertEqual(before, after)
    }
}
