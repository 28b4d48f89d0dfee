// The whole GPT-2 model against PyTorch/transformers (fixture from Tools/reference/gpt2_fixture.py):
// logits, loss, every parameter gradient, a masked (weighted) loss, and 10 AdamW steps.

import Compute
import XCTest
@testable import Model

final class GPT2ReferenceTests: XCTestCase {
    static let fixturePath: String = {
        let here = #filePath
        let dir = here[..<here.lastIndex(of: "/")!]
        return dir + "/Fixtures/gpt2_tiny.safetensors"
    }()

    let B = 3, T = 16
    let config = GPTConfig(vocabSize: 97, contextLength: 16, layers: 2, heads: 4, width: 64)

    func loadModel() throws -> (GPT, SafetensorsFile) {
        let file = try SafetensorsFile(path: Self.fixturePath)
        let model = try GPT(config: config, backend: CPUBackend())
        try model.loadHuggingFaceGPT2(file)
        return (model, file)
    }

    /// Our gradient of `entry` in HF layout, for comparison with the fixture's `grad.*` tensors.
    func hfGradient(_ model: GPT, _ entry: ArenaEntry) -> [Float] {
        model.oursToHuggingFace(entry, model.gradient(entry.name)!).values
    }

    func testLogitsAndLossMatchPyTorch() throws {
        let (model, file) = try loadModel()
        let inputs = try file.int32s("inputs"), targets = try file.int32s("targets")
        try inputs.withUnsafeBufferPointer { try model.forward(tokens: $0, batchSize: B, sequenceLength: T) }
        assertClose(model.logits(), try file.floats("logits"), atol: 1e-5, rtol: 1e-4, "logits")
        let loss = try inputs.withUnsafeBufferPointer { i in
            try targets.withUnsafeBufferPointer { t in try model.forward(tokens: i, targets: t, batchSize: B, sequenceLength: T) }
        }
        assertClose([loss], try file.floats("loss"), atol: 1e-5, rtol: 1e-5, "loss")
    }

    func runBackward(_ model: GPT, _ file: SafetensorsFile, weights: [Float]) throws -> Float {
        let inputs = try file.int32s("inputs"), targets = try file.int32s("targets")
        try model.zeroGradients()
        let loss = try inputs.withUnsafeBufferPointer { i in
            try targets.withUnsafeBufferPointer { t in
                try weights.withUnsafeBufferPointer { w in
                    try model.forward(tokens: i, targets: t, weights: w, batchSize: B, sequenceLength: T)
                }
            }
        }
        try model.backward()
        return loss
    }

    func testEveryGradientMatchesPyTorch() throws {
        let (model, file) = try loadModel()
        let loss = try runBackward(model, file, weights: [Float](repeating: 1 / Float(B * T), count: B * T))
        assertClose([loss], try file.floats("loss"), atol: 1e-5, rtol: 1e-5, "loss")
        XCTAssertEqual(model.parameters.entries.count, 28)
        for entry in model.parameters.entries {
            let expected = try file.floats("grad.transformer." + entry.name)
            assertClose(hfGradient(model, entry), expected, atol: 2e-6, rtol: 1e-3, "grad \(entry.name)")
        }
    }

    func testWeightedLossAndGradientsMatchPyTorch() throws {
        let (model, file) = try loadModel()
        let loss = try runBackward(model, file, weights: try file.floats("weights"))
        assertClose([loss], try file.floats("loss_weighted"), atol: 1e-5, rtol: 1e-5, "weighted loss")
        for entry in model.parameters.entries {
            let expected = try file.floats("grad_weighted.transformer." + entry.name)
            assertClose(hfGradient(model, entry), expected, atol: 2e-6, rtol: 1e-3, "weighted grad \(entry.name)")
        }
    }

    func testTenAdamWStepsMatchPyTorch() throws {
        let (model, file) = try loadModel()
        let expectedLosses = try file.floats("adamw_losses"), expectedNorms = try file.floats("adamw_grad_norms")
        var losses: [Float] = [], norms: [Float] = []
        for step in 1...10 {
            losses.append(try runBackward(model, file, weights: [Float](repeating: 1 / Float(B * T), count: B * T)))
            norms.append(try model.update(learningRate: 1e-3, beta1: 0.9, beta2: 0.95, epsilon: 1e-8,
                                          weightDecay: 0.1, gradientClip: 1.0, step: step))
        }
        assertClose(losses, expectedLosses, atol: 1e-4, rtol: 1e-4, "loss per AdamW step")
        assertClose(norms, expectedNorms, atol: 1e-4, rtol: 1e-4, "grad norm per AdamW step")
        // Adam turns gradients that are zero in exact arithmetic (e.g. the key bias) into ±lr
        // steps driven by rounding noise, so single elements may drift by a few lr; each tensor as
        // a whole must agree to 1e-3 relative (L2).
        for entry in model.parameters.entries {
            let ours = model.oursToHuggingFace(entry, model.parameter(entry.name)!).values
            let expected = try file.floats("final.transformer." + entry.name)
            var diff = 0.0, norm = 0.0
            for i in 0..<ours.count {
                diff += Double(ours[i] - expected[i]) * Double(ours[i] - expected[i])
                norm += Double(expected[i]) * Double(expected[i])
            }
            XCTAssertLessThan((diff / norm).squareRoot(), 1e-3, "parameter \(entry.name) after 10 steps")
            assertClose(ours, expected, atol: 1e-2, rtol: 0, "parameter \(entry.name) after 10 steps")
        }
    }
}
