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
import TestSupport
import XCTest

let fixtures: String = {
    let here = #filePath
    return String(here[..<here.lastIndex(of: "/")!]) + "/Fixtures/hf"
}()

func temporaryDirectory(_ name: String) -> String {
    let dir = scratchRoot + "/interop-\(name)-\(UInt32.random(in: 0...UInt32.max))"
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
        for mapping in HuggingFaceLayout.mappings(model.config, modelType: "llama", prefix: "") {
            let entry = model.parameters.entries.first { $0.name == mapping.ours }!
            for part in HuggingFaceLayout.toHuggingFace(mapping, entry: entry, config: model.config, values: model.gradient(mapping.ours)!) {
                assertClose(part.values, try Self.reference.floats("llama.grad." + part.name), atol: 2e-6, rtol: 1e-3, "grad \(part.name)")
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

/// Broken Hugging Face directories give errors that name the problem, never a crash.
final class HuggingFaceBadInputTests: XCTestCase {
    /// A writable copy of a fixture directory.
    func copy(_ name: String) throws -> String {
        let dir = temporaryDirectory("bad-\(name)") + "/model"
        try FileManager.default.copyItem(atPath: fixtures + "/" + name, toPath: dir)
        return dir
    }

    func editConfig(_ dir: String, _ edit: (inout [String: Any]) -> Void) throws {
        let path = dir + "/config.json"
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
    }

    func assertFails(_ dir: String, mentioning text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try HuggingFaceConverter.importModel(from: dir, to: temporaryDirectory("out")), file: file, line: line) { error in
            XCTAssert("\(error)".contains(text), "\"\(error)\" does not mention \"\(text)\"", file: file, line: line)
        }
    }

    func testUnsupportedModelTypeAndOptions() throws {
        let dir = try copy("llama")
        try editConfig(dir) { $0["model_type"] = "mamba" }
        assertFails(dir, mentioning: "model_type \"mamba\"")
        try editConfig(dir) { $0["model_type"] = "llama"; $0["rope_parameters"] = ["rope_type": "yarn", "rope_theta": 10000.0] }
        assertFails(dir, mentioning: "rope scaling \"yarn\"")
        try editConfig(dir) { $0["rope_parameters"] = ["rope_type": "default", "rope_theta": 10000.0]; $0["hidden_act"] = "gelu" }
        assertFails(dir, mentioning: "activation gelu")
        assertFails(temporaryDirectory("empty"), mentioning: "no config.json")
    }

    func testShapesThatDisagreeWithTheConfiguration() throws {
        let dir = try copy("llama")
        try editConfig(dir) { $0["intermediate_size"] = 128 }
        assertFails(dir, mentioning: "gate_proj")
        try editConfig(dir) { $0["intermediate_size"] = 96; $0["vocab_size"] = 301 }
        assertFails(dir, mentioning: "301")
    }

    func testMissingShardAndLyingIndex() throws {
        let dir = try copy("llama_sharded_f16")
        try FileManager.default.removeItem(atPath: dir + "/model-00002-of-00002.safetensors")
        assertFails(dir, mentioning: "model-00002-of-00002.safetensors, which is missing")
        let dir2 = try copy("llama_sharded_f16")
        let indexPath = dir2 + "/model.safetensors.index.json"
        var index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: indexPath))) as! [String: Any]
        var map = index["weight_map"] as! [String: String]
        map["model.norm.weight"] = map["model.norm.weight"] == "model-00001-of-00002.safetensors"
            ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors"
        index["weight_map"] = map
        try JSONSerialization.data(withJSONObject: index).write(to: URL(fileURLWithPath: indexPath))
        assertFails(dir2, mentioning: "the index says it holds model.norm.weight")
        map["model.norm.weight"] = "../escape.safetensors"
        index["weight_map"] = map
        try JSONSerialization.data(withJSONObject: index).write(to: URL(fileURLWithPath: indexPath))
        assertFails(dir2, mentioning: "points outside the directory")
    }

    func testTruncatedAndLyingSafetensors() throws {
        let dir = try copy("llama")
        let path = dir + "/model.safetensors"
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count - 1000).write(to: URL(fileURLWithPath: path))
        assertFails(dir, mentioning: "outside the")
        try data.prefix(5).write(to: URL(fileURLWithPath: path))
        assertFails(dir, mentioning: "too short")
        // A header whose offsets claim more bytes than the shape needs.
        let lying = try SafetensorsFile.encode([("model.norm.weight", [64], [Float](repeating: 1, count: 64))])
        var text = String(decoding: lying, as: UTF8.self)
        text = text.replacingOccurrences(of: "\"shape\":[64]", with: "\"shape\":[65]")
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        assertFails(dir, mentioning: "does not match")
    }

    func testUnsupportedDtypeAndPickles() throws {
        let dir = try copy("llama")
        try editConfig(dir) { $0["tie_word_embeddings"] = true }  // so the embedding is the first tensor read
        let path = dir + "/model.safetensors"
        let header = #"{"model.embed_tokens.weight":{"dtype":"I8","shape":[300,64],"data_offsets":[0,19200]}}"#
        var bytes = [UInt8](repeating: 0, count: 8)
        let h = Array(header.utf8)
        for i in 0..<8 { bytes[i] = UInt8((h.count >> (8 * i)) & 0xFF) }
        try Data(bytes + h + [UInt8](repeating: 0, count: 19200)).write(to: URL(fileURLWithPath: path))
        assertFails(dir, mentioning: "dtype I8")
        try FileManager.default.removeItem(atPath: path)
        try Data([0]).write(to: URL(fileURLWithPath: dir + "/pytorch_model.bin"))
        assertFails(dir, mentioning: "pytorch_model.bin")
    }

    func testExportRejectsWhatOtherToolsCannotRun() throws {
        var config = GPTConfig(vocabSize: 300, contextLength: 16, layers: 1, heads: 2, width: 16)
        config.norm = .rmsnorm  // learned positions with RMSNorm: neither GPT-2 nor Llama
        XCTAssertThrowsError(try HuggingFaceFormat.modelType(for: config)) { XCTAssert("\($0)".contains("mix of options")) }
        config = GPTConfig(vocabSize: 300, contextLength: 16, layers: 1, heads: 2, width: 16, kvHeads: 1)
        XCTAssertThrowsError(try HuggingFaceFormat.modelType(for: config)) { XCTAssert("\($0)".contains("grouped-query")) }
    }
}
