// Model-level properties: bad input is rejected clearly, results do not depend on the core count,
// padding is never predicted, dropout is seeded and off at inference, files round-trip.

import Compute
import XCTest
@testable import Model

final class GPTBehaviourTests: XCTestCase {
    let small = GPTConfig(vocabSize: 70, contextLength: 80, layers: 2, heads: 2, width: 32)

    func testInvalidConfigurationsAreRejectedBeforeAllocation() {
        let cases: [(GPTConfig, String)] = [
            (GPTConfig(vocabSize: 70, contextLength: 16, layers: 2, heads: 3, width: 32), "not divisible by heads"),
            (GPTConfig(vocabSize: 0, contextLength: 16, layers: 2, heads: 2, width: 32), "vocab_size"),
            (GPTConfig(vocabSize: 70, contextLength: 0, layers: 2, heads: 2, width: 32), "context"),
            (GPTConfig(vocabSize: 70, contextLength: 16, layers: 0, heads: 2, width: 32), "layers"),
            (GPTConfig(vocabSize: 70, contextLength: 16, layers: 2, heads: 0, width: 32), "heads"),
            (GPTConfig(vocabSize: 70, contextLength: 16, layers: 2, heads: 2, width: 32, dropout: 1), "dropout"),
        ]
        for (config, fragment) in cases {
            XCTAssertThrowsError(try GPT(config: config, backend: CPUBackend())) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains(fragment), "message '\(text)' should mention '\(fragment)'")
                XCTAssertTrue(text.contains("HINT"), "message should say how to fix it")
            }
        }
    }

    func testBadTokensAndLengthsAreReportedNotRead() throws {
        let model = try GPT(config: small, backend: CPUBackend())
        model.initialize(seed: 1)
        let bad: [Int32] = [1, 2, 70, 3]
        XCTAssertThrowsError(try bad.withUnsafeBufferPointer { try model.forward(tokens: $0, batchSize: 1, sequenceLength: 4) }) {
            XCTAssertEqual($0 as? ModelError, .tokenOutOfRange(index: 2, value: 70, vocabSize: 70))
        }
        let negative: [Int32] = [-1]
        XCTAssertThrowsError(try negative.withUnsafeBufferPointer { try model.forward(tokens: $0, batchSize: 1, sequenceLength: 1) })
        let long = [Int32](repeating: 1, count: 81)
        XCTAssertThrowsError(try long.withUnsafeBufferPointer { try model.forward(tokens: $0, batchSize: 1, sequenceLength: 81) }) {
            XCTAssertEqual($0 as? ModelError, .sequenceTooLong(length: 81, contextLength: 80))
        }
        let ok: [Int32] = [1, 2, 3, 4]
        let badTargets: [Int32] = [1, 2, 3, 99]
        XCTAssertThrowsError(try ok.withUnsafeBufferPointer { i in
            try badTargets.withUnsafeBufferPointer { t in try model.forward(tokens: i, targets: t, batchSize: 1, sequenceLength: 4) }
        })
    }

    /// Runs one training forward/backward and returns all gradients.
    func gradients(threads: Int, dropout: Float = 0, seed: UInt64? = nil) throws -> [Float] {
        let saved = Parallel.threadCount
        Parallel.threadCount = threads
        defer { Parallel.threadCount = saved }
        var config = small
        config.dropout = dropout
        let model = try GPT(config: config, backend: CPUBackend())
        model.initialize(seed: 7)
        let B = 3, T = 70  // T spans two attention blocks
        var rng = SeededRandom(seed: 3)
        let tokens = (0..<(B * T)).map { _ in Int32(rng.next() % 70) }
        let targets = (0..<(B * T)).map { _ in Int32(rng.next() % 70) }
        let weights = [Float](repeating: 1 / Float(B * T), count: B * T)
        try model.zeroGradients()
        try tokens.withUnsafeBufferPointer { i in
            try targets.withUnsafeBufferPointer { t in
                try weights.withUnsafeBufferPointer { w in
                    _ = try model.forward(tokens: i, targets: t, weights: w, batchSize: B, sequenceLength: T, dropoutSeed: seed)
                }
            }
        }
        try model.backward()
        var out = [Float](repeating: 0, count: model.gradients!.storage.count)
        out.withUnsafeMutableBufferPointer { model.backend.download(model.gradients!.storage, into: $0) }
        return out
    }

    /// Names of the tensors whose gradients differ in any bit.
    func differingTensors(_ a: [Float], _ b: [Float]) -> [String] {
        let arena = try! Arena(backend: CPUBackend(), entries: GPTLayout.parameterEntries(small))
        return arena.entries.enumerated().compactMap { i, e in
            let o = arena.offsets[i]
            return a[o..<(o + e.count)] == b[o..<(o + e.count)] ? nil : e.name
        }
    }

    func testGradientsAreBitIdenticalOnAnyCoreCount() throws {
        let one = try gradients(threads: 1)
        XCTAssertEqual(differingTensors(try gradients(threads: 2), one), [])
        XCTAssertEqual(differingTensors(try gradients(threads: 3), one), [])
        XCTAssertEqual(differingTensors(try gradients(threads: 3, dropout: 0.2, seed: 9),
                                        try gradients(threads: 1, dropout: 0.2, seed: 9)), [])
    }

    func testDropoutIsSeededAndOnlyActiveWhenTraining() throws {
        let a = try gradients(threads: 2, dropout: 0.2, seed: 9)
        XCTAssertTrue(a == (try gradients(threads: 2, dropout: 0.2, seed: 9)), "same seed, same masks")
        XCTAssertFalse(a == (try gradients(threads: 2, dropout: 0.2, seed: 10)), "another seed, other masks")
        XCTAssertTrue(try gradients(threads: 2, dropout: 0.2, seed: nil) == (try gradients(threads: 2, dropout: 0, seed: nil)),
                      "no dropout seed means inference: dropout off")
    }

    func testPaddedVocabularyIsNeverPredictedOrTrained() throws {
        let model = try GPT(config: small, backend: CPUBackend())
        model.initialize(seed: 2)
        XCTAssertEqual(small.paddedVocabSize, 128)
        let wte = model.parameter("wte.weight")!
        XCTAssertTrue(wte[(70 * 32)...].allSatisfy { $0 == 0 })
        let tokens: [Int32] = [5, 6, 7], targets: [Int32] = [6, 7, 8], w: [Float] = [1, 1, 1]
        try model.zeroGradients()
        try tokens.withUnsafeBufferPointer { i in
            try targets.withUnsafeBufferPointer { t in
                try w.withUnsafeBufferPointer { try model.forward(tokens: i, targets: t, weights: $0, batchSize: 1, sequenceLength: 3) }
            }
        }
        try model.backward()
        XCTAssertTrue(model.gradient("wte.weight")![(70 * 32)...].allSatisfy { $0 == 0 })
        try model.update(learningRate: 0.1, step: 1)
        XCTAssertTrue(model.parameter("wte.weight")![(70 * 32)...].allSatisfy { $0 == 0 })
        try tokens.withUnsafeBufferPointer { try model.forward(tokens: $0, batchSize: 1, sequenceLength: 3) }
        XCTAssertEqual(model.logits().count, 3 * 70, "logits cover the real vocabulary only")
    }

    func testInitialisationFollowsGPT2() throws {
        let config = GPTConfig(vocabSize: 64, contextLength: 64, layers: 4, heads: 4, width: 128)
        let model = try GPT(config: config, backend: CPUBackend())
        model.initialize(seed: 5)
        func std(_ x: [Float]) -> Double {
            let m = x.reduce(0.0) { $0 + Double($1) } / Double(x.count)
            return (x.reduce(0.0) { $0 + (Double($1) - m) * (Double($1) - m) } / Double(x.count)).squareRoot()
        }
        XCTAssertEqual(std(model.parameter("h.0.mlp.c_fc.weight")!), 0.02, accuracy: 0.001)
        XCTAssertEqual(std(model.parameter("h.0.mlp.c_proj.weight")!), 0.02 / (8.0).squareRoot(), accuracy: 0.0005)
        XCTAssertEqual(std(model.parameter("h.3.attn.c_proj.weight")!), 0.02 / (8.0).squareRoot(), accuracy: 0.0005)
        XCTAssertTrue(model.parameter("h.1.ln_1.weight")!.allSatisfy { $0 == 1 })
        XCTAssertTrue(model.parameter("h.1.attn.c_attn.bias")!.allSatisfy { $0 == 0 })
        let again = try GPT(config: config, backend: CPUBackend())
        again.initialize(seed: 5)
        XCTAssertEqual(again.parameter("wpe.weight"), model.parameter("wpe.weight"), "seeded")
    }

    func testSafetensorsRoundTripAndCorruptFiles() throws {
        let data = try SafetensorsFile.encode([("a", [2, 3], [1, 2, 3, 4, 5, 6]), ("b", [1], [7])], metadata: ["k": "v"])
        let file = try SafetensorsFile(data: data)
        XCTAssertEqual(try file.floats("a"), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(file.tensors["a"]?.shape, [2, 3])
        XCTAssertEqual(file.metadata["k"], "v")
        XCTAssertThrowsError(try file.floats("missing"))
        XCTAssertThrowsError(try SafetensorsFile(data: data.prefix(5)))
        XCTAssertThrowsError(try SafetensorsFile(data: data.prefix(data.count - 3)))  // truncated payload
        var garbage = data
        garbage[8] = 0x78  // the header's opening brace becomes "x": not JSON
        XCTAssertThrowsError(try SafetensorsFile(data: garbage))
        XCTAssertThrowsError(try SafetensorsFile(path: "/nonexistent/model.safetensors")) {
            XCTAssertTrue("\($0)".contains("/nonexistent/model.safetensors"))
        }
    }
}
