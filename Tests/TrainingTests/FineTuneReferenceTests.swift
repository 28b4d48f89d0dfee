// SFT (masked loss) and DPO (loss, log-probabilities, gradients) against PyTorch on a tiny GPT-2
// (Tools/reference/finetune_fixture.py).

import Compute
import Foundation
import Model
import XCTest
@testable import Training

final class FineTuneReferenceTests: XCTestCase {
    let config = GPTConfig(vocabSize: 97, contextLength: 16, layers: 2, heads: 4, width: 64)

    func fixture() throws -> SafetensorsFile {
        try SafetensorsFile(path: URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/finetune_tiny.safetensors").path)
    }

    func load(_ file: SafetensorsFile, prefix: String) throws -> GPT {
        let model = try GPT(config: config, backend: CPUBackend())
        try model.loadHuggingFaceGPT2(file, prefix: prefix)
        return model
    }

    func pairs(_ file: SafetensorsFile) throws -> [EncodedPair] {
        let chosen = try file.floats("chosen").map { Int32($0) }, rejected = try file.floats("rejected").map { Int32($0) }
        let starts = try file.floats("reply_start").map { Int($0) }
        return (0..<3).map { i in
            EncodedPair(chosen: Array(chosen[(i * 17)..<((i + 1) * 17)]), rejected: Array(rejected[(i * 17)..<((i + 1) * 17)]),
                        chosenStart: starts[i], rejectedStart: starts[i])
        }
    }

    func assertGradients(_ model: GPT, _ file: SafetensorsFile, _ kind: String, file f: StaticString = #filePath, line: UInt = #line) throws {
        for entry in model.parameters.entries {
            let ours = model.oursToHuggingFace(entry, model.gradient(entry.name)!).values
            let theirs = try file.floats("grad.\(kind).transformer." + entry.name)
            var scale: Float = 1e-6
            for v in theirs { scale = max(scale, abs(v)) }
            for i in theirs.indices {
                XCTAssertEqual(ours[i], theirs[i], accuracy: 2e-4 * scale, "\(kind) gradient of \(entry.name)[\(i)]", file: f, line: line)
                if abs(ours[i] - theirs[i]) > 2e-4 * scale { return }
            }
        }
    }

    func testMaskedSFTLossAndGradientsMatchPyTorch() throws {
        let file = try fixture()
        let model = try load(file, prefix: "transformer.")
        let encoded = try pairs(file)
        var rows = PaddedRows(rows: 3, T: 16)
        var count: Float = 0
        for (k, p) in encoded.enumerated() {
            let mask = replyMask(p.chosen.count, p.chosenStart)
            rows.set(row: k, T: 16, ids: p.chosen, mask: mask, pad: 0)
            count += mask.dropFirst().reduce(0, +)
        }
        for j in rows.weights.indices { rows.weights[j] /= count }
        try model.zeroGradients()
        let loss = try rows.tokens.withUnsafeBufferPointer { tk in
            try rows.targets.withUnsafeBufferPointer { tg in
                try rows.weights.withUnsafeBufferPointer { w in try model.forward(tokens: tk, targets: tg, weights: w, batchSize: 3, sequenceLength: 16) }
            }
        }
        try model.backward()
        XCTAssertEqual(loss, try file.floats("sft_loss")[0], accuracy: 1e-4)
        try assertGradients(model, file, "sft")
    }

    /// `sft --prompt-loss-weight λ`: the weights make Σ w·loss = mean(reply tokens) + λ·mean(the
    /// other real tokens), padding rows and positions weigh nothing, and λ = 0 is the masked loss
    /// checked against PyTorch above.
    func testPromptLossWeightAddsTheMeanPromptLoss() throws {
        let file = try fixture()
        let model = try load(file, prefix: "transformer.")
        let encoded = try pairs(file)
        let lengths = encoded.enumerated().map { $1.chosen.count - ($0 == 1 ? 2 : 0) }  // the second row ends early
        func maskedRows() -> PaddedRows {
            var rows = PaddedRows(rows: 4, T: 16)
            for r in 0..<4 {
                let p = encoded[min(r, 2)], ids = Array(p.chosen.prefix(lengths[min(r, 2)]))
                rows.set(row: r, T: 16, ids: ids, mask: r < 3 ? replyMask(ids.count, p.chosenStart) : [Float](repeating: 0, count: ids.count), pad: 0)
            }
            return rows
        }
        let plain = maskedRows()
        _ = try plain.tokens.withUnsafeBufferPointer { tk in
            try plain.targets.withUnsafeBufferPointer { tg in try model.forward(tokens: tk, targets: tg, batchSize: 4, sequenceLength: 16) }
        }
        let losses = model.tokenLosses()
        var replySum = 0.0, replyCount = 0.0, promptSum = 0.0, promptCount = 0.0
        for r in 0..<3 {
            for t in 0..<min(16, lengths[r] - 1) {
                let j = r * 16 + t
                if plain.weights[j] > 0 { replySum += Double(losses[j]); replyCount += 1 } else { promptSum += Double(losses[j]); promptCount += 1 }
            }
        }
        XCTAssertGreaterThan(promptCount, 0)
        for lambda: Float in [0, 0.5, 2] {
            var rows = maskedRows()
            sftLossWeights(&rows, T: 16, lengths: lengths, promptLossWeight: lambda)
            for j in (3 * 16)..<(4 * 16) { XCTAssertEqual(rows.weights[j], 0, "the padding row weighs nothing") }
            for t in (lengths[1] - 1)..<16 { XCTAssertEqual(rows.weights[16 + t], 0, "positions past the short row's end weigh nothing") }
            try model.zeroGradients()
            let loss = try rows.tokens.withUnsafeBufferPointer { tk in
                try rows.targets.withUnsafeBufferPointer { tg in
                    try rows.weights.withUnsafeBufferPointer { w in try model.forward(tokens: tk, targets: tg, weights: w, batchSize: 4, sequenceLength: 16) }
                }
            }
            XCTAssertEqual(Double(loss), replySum / replyCount + Double(lambda) * promptSum / promptCount, accuracy: 1e-4, "λ = \(lambda)")
        }
    }

    func testDPOLossLogProbabilitiesAndGradientsMatchPyTorch() throws {
        let file = try fixture()
        let policy = try load(file, prefix: "transformer."), reference = try load(file, prefix: "ref.transformer.")
        let encoded = try pairs(file)
        let ref = try replyLogProbabilities(model: reference, pairs: encoded, rowsPerBatch: 3, T: 16, pad: 0)
        let refChosen = try file.floats("reference_chosen_logps"), refRejected = try file.floats("reference_rejected_logps")
        for k in 0..<3 {
            XCTAssertEqual(ref[k].0, Double(refChosen[k]), accuracy: 1e-3)
            XCTAssertEqual(ref[k].1, Double(refRejected[k]), accuracy: 1e-3)
        }
        let pol = try replyLogProbabilities(model: policy, pairs: encoded, rowsPerBatch: 3, T: 16, pad: 0)
        let polChosen = try file.floats("policy_chosen_logps")
        for k in 0..<3 { XCTAssertEqual(pol[k].0, Double(polChosen[k]), accuracy: 1e-3) }
        var rows = PaddedRows(rows: 6, T: 16)
        try policy.zeroGradients()
        let beta = Double(try file.floats("beta")[0])
        let (sum, _, _) = try PreferenceOptimization.accumulateGradients(model: policy, pairs: encoded, reference: ref, beta: beta,
                                                                        T: 16, pad: 0, rows: &rows)
        XCTAssertEqual(sum / 3, Double(try file.floats("dpo_loss")[0]), accuracy: 1e-4)
        try assertGradients(policy, file, "dpo")
    }

    /// DPO plus α × the chosen replies' NLL per token (RPO): loss and gradients as PyTorch's.
    func testDPOWithChosenNLLMatchesPyTorch() throws {
        let file = try fixture()
        let policy = try load(file, prefix: "transformer."), reference = try load(file, prefix: "ref.transformer.")
        let encoded = try pairs(file)
        let ref = try replyLogProbabilities(model: reference, pairs: encoded, rowsPerBatch: 3, T: 16, pad: 0)
        var rows = PaddedRows(rows: 6, T: 16)
        try policy.zeroGradients()
        let beta = Double(try file.floats("beta")[0]), alpha = Double(try file.floats("alpha")[0])
        let (sum, _, _) = try PreferenceOptimization.accumulateGradients(model: policy, pairs: encoded, reference: ref, beta: beta,
                                                                        nllWeight: alpha, T: 16, pad: 0, rows: &rows)
        XCTAssertEqual(sum / 3, Double(try file.floats("rpo_loss")[0]), accuracy: 1e-4)
        try assertGradients(policy, file, "rpo")
    }

    /// Label-smoothed DPO, IPO and the hinge loss: their values and their derivatives with respect to
    /// the summed reply log-probabilities as PyTorch's autograd gives them, and (label smoothing) the
    /// gradient that reaches a weight matrix through the model's backward.
    func testOtherPreferenceLossesMatchPyTorch() throws {
        let file = try fixture()
        let policy = try load(file, prefix: "transformer."), reference = try load(file, prefix: "ref.transformer.")
        let encoded = try pairs(file)
        let ref = try replyLogProbabilities(model: reference, pairs: encoded, rowsPerBatch: 3, T: 16, pad: 0)
        let pol = try replyLogProbabilities(model: policy, pairs: encoded, rowsPerBatch: 3, T: 16, pad: 0)
        let beta = Double(try file.floats("beta")[0]), epsilon = Double(try file.floats("label_smoothing")[0])
        for (kind, loss, smoothing) in [("cdpo", PreferenceLoss.sigmoid, epsilon), ("ipo", .ipo, 0), ("hinge", .hinge, 0)] {
            let dChosen = try file.floats("\(kind)_dchosen"), dRejected = try file.floats("\(kind)_drejected")
            var total = 0.0
            for k in 0..<3 {
                let h = (pol[k].0 - ref[k].0) - (pol[k].1 - ref[k].1)
                let (l, slope) = loss.evaluate(h: h, beta: beta, labelSmoothing: smoothing)
                total += l / 3
                XCTAssertEqual(slope / 3, Double(dChosen[k]), accuracy: 1e-4 * max(1, abs(Double(dChosen[k]))), "\(kind) dL/dlogπ(chosen) of pair \(k)")
                XCTAssertEqual(-slope / 3, Double(dRejected[k]), accuracy: 1e-4 * max(1, abs(Double(dRejected[k]))), "\(kind) dL/dlogπ(rejected) of pair \(k)")
            }
            XCTAssertEqual(total, Double(try file.floats("\(kind)_loss")[0]), accuracy: 1e-4 * max(1, total), kind)
            var rows = PaddedRows(rows: 6, T: 16)
            try policy.zeroGradients()
            let (sum, _, _) = try PreferenceOptimization.accumulateGradients(model: policy, pairs: encoded, reference: ref, beta: beta, loss: loss,
                                                                            labelSmoothing: smoothing, T: 16, pad: 0, rows: &rows)
            XCTAssertEqual(sum / 3, total, accuracy: 1e-6 * max(1, total), "\(kind): the training step reports the same loss")
            if kind == "cdpo" {
                let entry = try XCTUnwrap(policy.parameters.entries.first { $0.name == "h.1.mlp.c_proj.weight" })
                let ours = policy.oursToHuggingFace(entry, policy.gradient(entry.name)!).values
                let theirs = try file.floats("grad.cdpo.transformer.h.1.mlp.c_proj.weight")
                var scale: Float = 1e-6
                for v in theirs { scale = max(scale, abs(v)) }
                XCTAssertEqual(ours.count, theirs.count)
                for i in theirs.indices where abs(ours[i] - theirs[i]) > 2e-4 * scale {
                    XCTFail("label-smoothed DPO gradient of h.1.mlp.c_proj.weight[\(i)]: \(ours[i]) against \(theirs[i])"); break
                }
            }
        }
        var config = FineTuneConfig()
        config.labelSmoothing = 0.5
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".contains("[0, 0.5)"), "\($0)") }
        config.labelSmoothing = 0.1
        config.preferenceLoss = .ipo
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".contains("sigmoid"), "\($0)") }
    }

    func testPreferenceFilesReportBadLinesWithTheirNumbers() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swiftgpt-pref-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("p.jsonl").path
        try """
        {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}
        {"prompt": [{"role": "user", "content": "Hi"}], "chosen": "Hey", "rejected": "Hey"}
        not json
        {"prompt_messages": [{"role": "user", "content": "2+2?"}], "prompt": "ignored", "chosen": "4", "rejected": "5"}
        {"chosen": "x", "rejected": "y"}
        """.write(toFile: path, atomically: true, encoding: .utf8)
        let (pairs, report) = try loadPreferencePairs(path)
        XCTAssertEqual(pairs.count, 2)
        XCTAssertEqual(pairs[1].prompt, [ChatMessageLike.user("2+2?")])
        XCTAssertEqual(report.skipped, 1)  // identical replies
        XCTAssertEqual(report.malformedCount, 2)
        XCTAssertTrue(report.malformed[0].contains("p.jsonl:3"), report.malformed[0])
        XCTAssertTrue(report.malformed[1].contains("p.jsonl:5"), report.malformed[1])
        XCTAssertThrowsError(try loadPreferencePairs(path, strict: true)) { XCTAssertTrue("\($0)".contains("line 3")) }
        let convPath = dir.appendingPathComponent("c.jsonl").path
        try """
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
        {"messages": [{"role": "user", "content": "no reply"}]}
        {"messages": [{"role": "robot", "content": "?"}]}
        """.write(toFile: convPath, atomically: true, encoding: .utf8)
        let (conversations, r2) = try loadConversations(convPath)
        XCTAssertEqual(conversations.count, 1)
        XCTAssertEqual(r2.skipped, 1)
        XCTAssertEqual(r2.malformedCount, 1)
        XCTAssertTrue(r2.malformed[0].contains("robot"))
    }
}

import Tokenizer
enum ChatMessageLike {
    static func user(_ s: String) -> ChatMessage { ChatMessage(role: .user, content: s) }
}
