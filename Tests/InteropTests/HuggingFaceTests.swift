// Hugging Face models in and out, against transformers (fixtures from
// Tools/reference/hf_interop_fixture.py): a random LlamaForCausalLM with grouped-query attention,
// rotary positions, RMSNorm, SwiGLU and an untied head, and a random GPT2LMHeadModel. Logits,
// loss, every Llama gradient and greedy generation (through the KV cache) must match transformers;
// bf16 and sharded fp16 copies load; the round trip to HF keeps every tensor identical.

import Compute
import Engine
import Foundation
@testable import Interop
import Model
import Training
import XCTest

let fixtures: String = {
    let here = #filePath
    return String(here[..<here.lastIndex(of: "/")!]) + "/Fixtures/hf"
}()

func temporaryDirectory(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "swiftgpt-interop-\(name)-\(UInt32.random(in: 0...UInt32.max))"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

func assertClose(_ actual: [Float], _ expected: [Float], atol: Float, rtol: Float = 0, _ label: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    guard actual.count == expected.count else {
        return XCTFail("\(label): \(actual.count) values, expected \(expected.count)", file: file, line: line)
    }
    var worst: Float = 0, worstIndex = 0
    for i in 0..<actual.count {
        let d = abs(actual[i] - expected[i]) - rtol * abs(expected[i])
        if !(d <= worst) { worst = d; worstIndex = i }
    }
    XCTAssert(worst <= atol, "\(label): max excess difference \(worst) at \(worstIndex) (\(actual[worstIndex]) vs \(expected[worstIndex]))",
              file: file, line: line)
}

final class HuggingFaceTests: XCTestCase {
    let B = 2, T = 16
    static let reference = try! SafetensorsFile(path: fixtures + "/reference.safetensors")

    /// Converts a fixture directory and loads the result.
    func convert(_ name: String) throws -> (GPT, TextCodec, ConversionReport) {
        let out = temporaryDirectory(name)
        let report = try HuggingFaceConverter.importModel(from: fixtures + "/" + name, to: out)
        let loaded = try Checkpoint.load(out, backend: CPUBackend())
        return (loaded.model, loaded.codec, report)
    }

    func logits(_ model: GPT) throws -> [Float] {
        let inputs = try Self.reference.int32s("inputs")
        try inputs.withUnsafeBufferPointer { try model.forward(tokens: $0, batchSize: B, sequenceLength: T) }
        return model.logits()
    }

    func greedy(_ model: GPT, count: Int) throws -> [Int32] {
        let prompt = Array(try Self.reference.int32s("inputs")[0..<8])
        let engine = Engine(model: try InferenceModel(model: model, slots: 1))
        return try engine.complete([GenerationRequest(prompt: prompt, maxTokens: count, sampling: .greedy)])[0].ids
    }

    func testLlamaConfigurationIsRead() throws {
        let (model, codec, report) = try convert("llama")
        let c = model.config
        XCTAssertEqual(report.modelType, "llama")
        XCTAssertEqual([c.vocabSize, c.width, c.layers, c.heads, c.kvHeads, c.hiddenWidth, c.contextLength], [300, 64, 2, 4, 2, 96, 32])
        XCTAssertEqual(c.positionEncoding, .rope)
        XCTAssertEqual(c.norm, .rmsnorm)
        XCTAssertEqual(c.feedForward, .swiglu)
        XCTAssertFalse(c.bias)
        XCTAssertFalse(c.tiedEmbeddings)
        XCTAssertEqual(c.normEpsilon, 1e-6)
        XCTAssertEqual(c.architectureName, "llama")
        XCTAssertEqual(codec.vocabularySize, 300)
    }

    func testLlamaLogitsLossAndGradientsMatchTransformers() throws {
        let (model, _, _) = try convert("llama")
        assertClose(try logits(model), try Self.reference.floats("llama.logits"), atol: 1e-4, "llama logits")
        // Loss and every gradient (our fused tensors split back into HF's).
        let inputs = try Self.reference.int32s("inputs"), targets = try Self.reference.int32s("targets")
        let weights = [Float](repeating: 1 / Float(B * T), count: B * T)
        try model.zeroGradients()
        let loss = try inputs.withUnsafeBufferPointer { i in
            try targets.withUnsafeBufferPointer { t in
                try weights.withUnsafeBufferPointer { w in try model.forward(tokens: i, targets: t, weights: w, batchSize: B, sequenceLength: T) }
            }
        }
        try model.backward()
        assertClose([loss], try Self.reference.floats("llama.loss"), atol: 1e-5, "llama loss")
        var checked = 0
        for mapping in HuggingFaceFormat.mappings(model.config, modelType: "llama", prefix: "") {
            let gradient = model.gradient(mapping.ours)!
            let entry = model.parameters.entries.first { $0.name == mapping.ours }!
            let columns = entry.shape.count == 2 ? entry.shape[1] : 1
            let rowCounts = HuggingFaceFormat.partRows(mapping, model.config) ?? [mapping.vocabularyTable ? 300 : entry.shape[0]]
            var start = 0
            for (part, rows) in zip(mapping.parts, rowCounts) {
                let ours = Array(gradient[(start * columns)..<((start + rows) * columns)])
                assertClose(ours, try Self.reference.floats("llama.grad." + part), atol: 2e-6, rtol: 1e-3, "grad \(part)")
                start += rows
                checked += 1
            }
        }
        XCTAssertEqual(checked, 21)  // every tensor of the HF model
    }

    func testLlamaGreedyGenerationMatchesTransformers() throws {
        let (model, _, _) = try convert("llama")
        XCTAssertEqual(try greedy(model, count: 12), try Self.reference.int32s("llama.greedy"))
    }

    func testGPT2LogitsAndGreedyGenerationMatchTransformers() throws {
        let (model, _, report) = try convert("gpt2")
        XCTAssertEqual(report.modelType, "gpt2")
        XCTAssertEqual(model.config.architectureName, "gpt2")
        assertClose(try logits(model), try Self.reference.floats("gpt2.logits"), atol: 1e-4, "gpt2 logits")
        XCTAssertEqual(try greedy(model, count: 12), try Self.reference.int32s("gpt2.greedy"))
    }

    func testBFloat16WeightsLoadAsTheirFloat32Values() throws {
        let (model, _, report) = try convert("llama_bf16")
        XCTAssertEqual(report.sourceDtypes, ["BF16"])
        assertClose(try logits(model), try Self.reference.floats("llama_bf16.logits"), atol: 1e-4, "bf16 llama logits")
    }

    func testShardedFloat16CheckpointLoads() throws {
        let (model, _, report) = try convert("llama_sharded_f16")
        XCTAssertEqual(report.sourceDtypes, ["F16"])
        // fp16 rounding moves the logits a little, not the greedy choices of this fixture.
        assertClose(try logits(model), try Self.reference.floats("llama.logits"), atol: 2e-2, "f16 llama logits")
        XCTAssertEqual(try greedy(model, count: 12), try Self.reference.int32s("llama.greedy"))
    }

    func testRoundTripToHuggingFaceKeepsEveryTensor() throws {
        for name in ["llama", "gpt2"] {
            let (model, codec, _) = try convert(name)
            let exported = temporaryDirectory("export-\(name)")
            try HuggingFaceConverter.exportModel(model, codec: codec, to: exported)
            // The exported tensors are exactly transformers' originals.
            let original = try SafetensorsFile(path: fixtures + "/\(name)/model.safetensors")
            let written = try SafetensorsFile(path: exported + "/model.safetensors")
            XCTAssertEqual(Set(written.tensors.keys), Set(original.tensors.keys), name)
            for tensor in original.tensors.keys {
                XCTAssertEqual(written.tensors[tensor]?.shape, original.tensors[tensor]?.shape, tensor)
                XCTAssertEqual(try written.floats(tensor), try original.floats(tensor), tensor)
            }
            // And converting the export back gives the same model.
            let again = temporaryDirectory("again-\(name)")
            try HuggingFaceConverter.importModel(from: exported, to: again)
            let reloaded = try Checkpoint.load(again, backend: CPUBackend()).model
            XCTAssertEqual(reloaded.config, model.config)
            for entry in model.parameters.entries {
                XCTAssertEqual(reloaded.parameter(entry.name), model.parameter(entry.name), entry.name)
            }
        }
    }

    func testContextCanBeCapped() throws {
        let out = temporaryDirectory("capped")
        let report = try HuggingFaceConverter.importModel(from: fixtures + "/gpt2", to: out, maxContext: 16)
        XCTAssertEqual(report.config.contextLength, 16)
        XCTAssertFalse(report.notes.isEmpty)
        let model = try Checkpoint.load(out, backend: CPUBackend()).model
        assertClose(try logits(model), try Self.reference.floats("gpt2.logits"), atol: 1e-4, "capped gpt2 logits")
    }
}
