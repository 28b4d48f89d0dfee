import Compute
import Foundation
import Model
import TestSupport
import XCTest
@testable import Training

final class ModelMergeTests: XCTestCase {
    let characters = CharacterVocabulary(scalars: Set("abcdefgh .\n".unicodeScalars))

    /// A checkpoint of a tiny model with weights from `seed`.
    func checkpoint(_ dir: String, seed: UInt64, width: Int = 16, dropout: Float = 0,
                    codec: TextCodec? = nil) throws -> GPT {
        let codec = codec ?? .characters(characters)
        let config = GPTConfig(vocabSize: codec.vocabularySize, contextLength: 8, layers: 1, heads: 2, width: width, dropout: dropout)
        let model = try GPT(config: config, backend: CPUBackendFactory.make())
        model.initialize(seed: seed)
        try Checkpoint.save(model: model, codec: codec, state: nil, to: dir)
        return model
    }

    func scratch() throws -> String {
        let dir = scratchRoot + "/merge-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func testAverageIsTheWeightedMeanOfEveryTensor() throws {
        let dir = try scratch()
        let a = try checkpoint(dir + "/a", seed: 1), b = try checkpoint(dir + "/b", seed: 2, dropout: 0.1)
        let c = try checkpoint(dir + "/c", seed: 3)
        for (weights, expected) in [(nil, [1.0 / 3, 1.0 / 3, 1.0 / 3]), ([1.0, 3.0, 0.0], [0.25, 0.75, 0.0])] as [([Double]?, [Double])] {
            let out = dir + "/soup-\(weights == nil ? "equal" : "weighted")"
            let report = try ModelMerge.average([dir + "/a", dir + "/b", dir + "/c"], weights: weights, to: out)
            XCTAssertEqual(report.weights, expected)
            let merged = try Checkpoint.load(out, backend: CPUBackendFactory.make())
            XCTAssertEqual(merged.model.config, a.config)  // the first model's config, dropout included
            for entry in a.parameters.entries {
                let x = a.parameter(entry.name)!, y = b.parameter(entry.name)!, z = c.parameter(entry.name)!
                let m = merged.model.parameter(entry.name)!
                for i in x.indices {
                    let want = expected[0] * Double(x[i]) + expected[1] * Double(y[i]) + expected[2] * Double(z[i])
                    XCTAssertEqual(Double(m[i]), want, accuracy: 1e-6, "\(entry.name)[\(i)]")
                }
            }
            let provenance = try JSONDecoder().decode(ModelMerge.Provenance.self,
                                                      from: Data(contentsOf: URL(fileURLWithPath: out + "/merge.json")))
            XCTAssertEqual(provenance.weights, expected)
            XCTAssertEqual(provenance.sources, [dir + "/a", dir + "/b", dir + "/c"])
        }
    }

    func testMismatchedModelsAndBadWeightsAreRejected() throws {
        let dir = try scratch()
        _ = try checkpoint(dir + "/a", seed: 1)
        _ = try checkpoint(dir + "/wide", seed: 2, width: 32)
        _ = try checkpoint(dir + "/othertok", seed: 3, codec: .characters(CharacterVocabulary(scalars: Set("abcdefgX .\n".unicodeScalars))))
        _ = try checkpoint(dir + "/b", seed: 4)
        func rejects(_ paths: [String], weights: [Double]? = nil, out: String = "/soup", _ phrase: String,
                     file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try ModelMerge.average(paths.map { dir + $0 }, weights: weights, to: dir + out), file: file, line: line) {
                XCTAssertTrue("\($0)".contains(phrase), "\($0)", file: file, line: line)
            }
        }
        rejects(["/a"], "at least two")
        rejects(["/a", "/wide"], "another architecture")
        rejects(["/a", "/othertok"], "another tokenizer")
        rejects(["/a", "/b"], weights: [1], "one weight per model")
        rejects(["/a", "/b"], weights: [1, -1], "not negative")
        rejects(["/a", "/b"], weights: [0, 0], "sum to 0")
        rejects(["/a", "/missing"], "no model.safetensors")
        rejects(["/a", "/b"], out: "/b", "is or holds one of the models")
        rejects(["/a", "/b"], out: "", "is or holds one of the models")  // the folder holding both
        try FileManager.default.createDirectory(atPath: dir + "/run/best", withIntermediateDirectories: true)
        rejects(["/a", "/b"], out: "/run", "not a checkpoint folder")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/best"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/soup"))
        XCTAssertNoThrow(try Checkpoint.load(dir + "/b", backend: CPUBackendFactory.make()))
        // An earlier merge is replaced.
        XCTAssertNoThrow(try ModelMerge.average([dir + "/a", dir + "/b"], to: dir + "/again"))
        XCTAssertNoThrow(try ModelMerge.average([dir + "/a", dir + "/b"], weights: [1, 2], to: dir + "/again"))
        // … also when `merge` kept the models' task prompt there (task.json).
        try Data("{}".utf8).write(to: URL(fileURLWithPath: dir + "/again/task.json"))
        XCTAssertNoThrow(try ModelMerge.average([dir + "/a", dir + "/b"], to: dir + "/again"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/again/task.json"), "the replaced merge's task.json is gone")
    }
}
