// Each sampling control against Hugging Face transformers' logits processors on fixed logits
// (Tools/reference/sampling_fixture.py), and the draw itself.

import Foundation
import XCTest
@testable import Engine

final class SamplerTests: XCTestCase {
    struct Fixture: Decodable {
        struct Case: Decodable {
            let settings: [String: Setting]
            let logits: [Float]
            let prompt: [Int32]
            let generated: [Int32]
            let probs: [Float]
        }
        let vocab_size: Int
        let cases: [Case]
    }

    enum Setting: Decodable {
        case number(Float)
        case bias([String: Float])
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let v = try? c.decode(Float.self) { self = .number(v) } else { self = .bias(try c.decode([String: Float].self)) }
        }
        var number: Float { if case .number(let v) = self { return v }; return .nan }
    }

    func loadFixture() throws -> Fixture {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/sampling.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    func testDistributionsMatchHuggingFaceProcessors() throws {
        let fixture = try loadFixture()
        XCTAssertEqual(fixture.cases.count, 13)
        for (n, c) in fixture.cases.enumerated() {
            var p = SamplingParameters()
            p.temperature = c.settings["temperature"]?.number ?? 1
            if let k = c.settings["top_k"] { p.topK = Int(k.number) }
            if let v = c.settings["top_p"] { p.topP = v.number }
            if let v = c.settings["min_p"] { p.minP = v.number }
            if let v = c.settings["repetition_penalty"] { p.repetitionPenalty = v.number }
            if let v = c.settings["presence_penalty"] { p.presencePenalty = v.number }
            if let v = c.settings["frequency_penalty"] { p.frequencyPenalty = v.number }
            if case .bias(let b)? = c.settings["logit_bias"] {
                for (k, v) in b { p.logitBias[Int32(k)!] = v }
            }
            var sampler = Sampler(parameters: p, prompt: c.prompt)
            for g in c.generated { sampler.accept(g) }
            let dist = c.logits.withUnsafeBufferPointer { sampler.distribution(logits: $0) }
            var dense = [Float](repeating: 0, count: fixture.vocab_size)
            for t in dist { dense[Int(t.id)] = t.probability }
            for v in 0..<fixture.vocab_size {
                XCTAssertEqual(dense[v], c.probs[v], accuracy: 2e-5, "case \(n) \(c.settings.keys.sorted()) token \(v)")
            }
            // Most likely first.
            for i in 1..<max(1, dist.count) { XCTAssertGreaterThanOrEqual(dist[i - 1].probability, dist[i].probability) }
        }
    }

    func testDrawsFollowTheDistribution() {
        // Three tokens with probabilities 0.5, 0.3, 0.2 (logits are their logs).
        let logits: [Float] = [log(0.5), log(0.3), log(0.2)]
        var sampler = Sampler(parameters: SamplingParameters(temperature: 1, seed: 9))
        var counts = [0, 0, 0]
        for _ in 0..<20_000 { counts[Int(logits.withUnsafeBufferPointer { sampler.sample(logits: $0) })] += 1 }
        XCTAssertEqual(Double(counts[0]) / 20_000, 0.5, accuracy: 0.015)
        XCTAssertEqual(Double(counts[1]) / 20_000, 0.3, accuracy: 0.015)
        XCTAssertEqual(Double(counts[2]) / 20_000, 0.2, accuracy: 0.015)
    }

    func testSameSeedSameDraws() {
        let logits = (0..<100).map { Float(sin(Double($0))) * 3 }
        func draws(_ seed: UInt64, stream: UInt64 = 0) -> [Int32] {
            var s = Sampler(parameters: SamplingParameters(temperature: 0.9, topK: 50, topP: 0.9, seed: seed), stream: stream)
            return (0..<50).map { _ in logits.withUnsafeBufferPointer { s.sample(logits: $0) } }
        }
        XCTAssertEqual(draws(1), draws(1))
        XCTAssertNotEqual(draws(1), draws(2))
        XCTAssertNotEqual(draws(1), draws(1, stream: 1))
    }

    func testNucleusOnALargeFlatVocabulary() {
        // 50,000 equal logits: the prefilter must fall back to the full set and keep p·V tokens.
        let logits = [Float](repeating: 0, count: 50_000)
        var s = Sampler(parameters: SamplingParameters(temperature: 1, topP: 0.5))
        let dist = logits.withUnsafeBufferPointer { s.distribution(logits: $0) }
        XCTAssertEqual(dist.count, 25_000, accuracy: 10)  // float32 cumulative sums, as in transformers
        XCTAssertEqual(dist.reduce(0) { $0 + Double($1.probability) }, 1, accuracy: 1e-4)
    }
}
