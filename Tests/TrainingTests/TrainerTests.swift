import Foundation
import Model
import TestSupport
import XCTest
@testable import Training

final class TrainerTests: XCTestCase {
    func prepared() throws -> String {
        let dir = scratchRoot + "/trainer-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let text = String(repeating: "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer.\n", count: 40)
        try text.write(toFile: dir + "/t.txt", atomically: true, encoding: .utf8)
        _ = try DataPreparation(inputs: [dir + "/t.txt"], outputDirectory: dir + "/data", tokenizerPath: nil).run()
        return dir
    }

    func tinyConfig() -> TrainConfig {
        var c = TrainConfig()
        c.layers = 2; c.heads = 2; c.width = 32; c.context = 16; c.batchSize = 4
        c.iterations = 8; c.warmup = 2; c.evalEvery = 4; c.evalBatches = 2; c.sampleTokens = 8
        c.lr = 3e-3; c.minLR = 3e-4; c.dropout = 0.1
        return c
    }

    func losses(_ run: String) throws -> [Double] {
        let text = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)
        return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(MetricRecord.self, from: Data($0.utf8)).trainLoss }
    }

    func testResumeIsBitForBit() throws {
        let dir = try prepared()
        let straight = Trainer(config: tinyConfig(), dataDirectory: dir + "/data", runDirectory: dir + "/a")
        straight.log = { _ in }
        _ = try straight.run()

        let first = Trainer(config: tinyConfig(), dataDirectory: dir + "/data", runDirectory: dir + "/b")
        first.log = { _ in }
        first.stopAfter = 4  // "interrupted" right after the step-4 checkpoint
        _ = try first.run()
        let second = Trainer(config: tinyConfig(), dataDirectory: dir + "/data", runDirectory: dir + "/b")
        second.log = { _ in }
        second.resume = true
        _ = try second.run()

        XCTAssertEqual(try losses(dir + "/a").count, 8)
        XCTAssertEqual(try losses(dir + "/b"), try losses(dir + "/a"), "same loss trajectory, bit for bit")
        let a = try Checkpoint.load(dir + "/a", backend: CPUBackendFactory.make(), prefer: ["last"])
        let b = try Checkpoint.load(dir + "/b", backend: CPUBackendFactory.make(), prefer: ["last"])
        XCTAssertEqual(a.model.parameter("h.1.mlp.c_fc.weight"), b.model.parameter("h.1.mlp.c_fc.weight"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/a/loss.svg"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/a/best/model.safetensors"))
    }

    func testInterruptedCheckpointSwapLeavesALoadableCheckpoint() throws {
        let dir = try prepared()
        let t = Trainer(config: tinyConfig(), dataDirectory: dir + "/data", runDirectory: dir + "/r")
        t.log = { _ in }
        _ = try t.run()
        let fm = FileManager.default
        // A crash half-way through writing: a partial .tmp folder is ignored.
        try fm.createDirectory(atPath: dir + "/r/last.tmp", withIntermediateDirectories: true)
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: dir + "/r/last.tmp/model.safetensors"))
        XCTAssertEqual(try Checkpoint.resolve(dir + "/r", prefer: ["last"]), dir + "/r/last")
        // A crash between the two renames: only last.old exists.
        try fm.moveItem(atPath: dir + "/r/last", toPath: dir + "/r/last.old")
        let loaded = try Checkpoint.load(dir + "/r", backend: CPUBackendFactory.make(), prefer: ["last"])
        XCTAssertEqual(loaded.directory, dir + "/r/last.old")
    }

    /// A full disk while checkpointing: the run stops with the path and "No space left on device
    /// (disk full?)", the previous checkpoint is untouched and still resumes, and the partial new
    /// one is removed; once there is space again the run continues from it.
    func testDiskFullWhileCheckpointingKeepsThePreviousCheckpoint() throws {
        let dir = try prepared()
        let fm = FileManager.default
        let first = Trainer(config: tinyConfig(), dataDirectory: dir + "/data", runDirectory: dir + "/r")
        first.log = { _ in }
        _ = try first.run()
        let before = try Checkpoint.load(dir + "/r", backend: CPUBackendFactory.make(), prefer: ["last"], loadOptimizer: true)
        XCTAssertEqual(before.state?.step, 8)

        var longer = tinyConfig()
        longer.iterations = 12
        AtomicFile.injectedFailure = ("optimizer.safetensors", ENOSPC)
        defer { AtomicFile.injectedFailure = nil }
        let full = Trainer(config: longer, dataDirectory: dir + "/data", runDirectory: dir + "/r")
        full.log = { _ in }
        full.resume = true
        XCTAssertThrowsError(try full.run()) {
            let message = "\($0)"
            XCTAssertTrue(message.contains("No space left on device") && message.contains("disk full?"), message)
            XCTAssertTrue(message.contains(dir + "/r/"), message)
        }
        let after = try Checkpoint.load(dir + "/r", backend: CPUBackendFactory.make(), prefer: ["last"], loadOptimizer: true)
        XCTAssertEqual(after.directory, dir + "/r/last")
        XCTAssertEqual(after.state?.step, 8)
        for e in before.model.parameters.entries { XCTAssertEqual(after.model.parameter(e.name), before.model.parameter(e.name), e.name) }
        let leftovers = try fm.contentsOfDirectory(atPath: dir + "/r").filter { $0.contains(".tmp") || $0.hasSuffix(".old") }
        XCTAssertEqual(leftovers, [])

        AtomicFile.injectedFailure = nil
        let again = Trainer(config: longer, dataDirectory: dir + "/data", runDirectory: dir + "/r")
        again.log = { _ in }
        again.resume = true
        XCTAssertEqual(try again.run().steps, 12)
    }

    /// --keep-checkpoints leaves the weights of every checkpoint as step-NNNNNN/, and they average.
    func testKeptCheckpointsAreSnapshotsOfTheRun() throws {
        let dir = try prepared()
        var c = tinyConfig()
        c.keepCheckpoints = true
        c.checkpointEvery = 2
        let t = Trainer(config: c, dataDirectory: dir + "/data", runDirectory: dir + "/r")
        t.log = { _ in }
        _ = try t.run()
        let kept = try FileManager.default.contentsOfDirectory(atPath: dir + "/r").filter { $0.hasPrefix("step-") }.sorted()
        XCTAssertEqual(kept, ["step-000002", "step-000004", "step-000006", "step-000008"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/r/step-000004/optimizer.safetensors"))
        let last = try Checkpoint.load(dir + "/r", backend: CPUBackendFactory.make(), prefer: ["last"]).model
        let final = try Checkpoint.load(dir + "/r/step-000008", backend: CPUBackendFactory.make()).model
        let earlier = try Checkpoint.load(dir + "/r/step-000006", backend: CPUBackendFactory.make()).model
        for e in last.parameters.entries { XCTAssertEqual(final.parameter(e.name), last.parameter(e.name), e.name) }
        XCTAssertNotEqual(earlier.parameter("wte.weight"), final.parameter("wte.weight"))
        _ = try ModelMerge.average([dir + "/r/step-000006", dir + "/r/step-000008"], to: dir + "/avg")
        let avg = try Checkpoint.load(dir + "/avg", backend: CPUBackendFactory.make()).model
        let a = earlier.parameter("wte.weight")!, b = final.parameter("wte.weight")!, m = avg.parameter("wte.weight")!
        for i in a.indices { XCTAssertEqual(m[i], Float((Double(a[i]) + Double(b[i])) / 2), accuracy: 1e-6) }
    }

    func testBadSettingsAndExistingRunsAreRejected() throws {
        let dir = try prepared()
        var c = tinyConfig()
        c.lr = -1
        XCTAssertThrowsError(try Trainer(config: c, dataDirectory: dir + "/data", runDirectory: dir + "/x").run())
        c = tinyConfig()
        c.heads = 3
        XCTAssertThrowsError(try Trainer(config: c, dataDirectory: dir + "/data", runDirectory: dir + "/x").run()) {
            XCTAssertTrue("\($0)".contains("divisible"))
        }
        let t = Trainer(config: tinyConfig(), dataDirectory: dir + "/data", runDirectory: dir + "/r")
        t.log = { _ in }
        _ = try t.run()
        XCTAssertThrowsError(try Trainer(config: tinyConfig(), dataDirectory: dir + "/data", runDirectory: dir + "/r").run()) {
            XCTAssertTrue("\($0)".contains("--resume"))
        }
        var other = tinyConfig()
        other.width = 64
        let resumeOther = Trainer(config: other, dataDirectory: dir + "/data", runDirectory: dir + "/r")
        resumeOther.resume = true
        XCTAssertThrowsError(try resumeOther.run()) { XCTAssertTrue("\($0)".contains("does not match")) }
        XCTAssertThrowsError(try Trainer(config: tinyConfig(), dataDirectory: dir + "/nodata", runDirectory: dir + "/y").run()) {
            XCTAssertTrue("\($0)".contains("prepare"))
        }
    }

    func testNonFiniteLossStopsWithTheStepAndKeepsTheCheckpoint() throws {
        let dir = try prepared()
        var c = tinyConfig()
        c.dropout = 0
        let good = Trainer(config: c, dataDirectory: dir + "/data", runDirectory: dir + "/good")
        good.log = { _ in }
        _ = try good.run()
        // Poison one weight of the finished run, then resume it for more steps.
        let path = dir + "/good/last/model.safetensors"
        let file = try SafetensorsFile(path: path)
        var tensors: [(name: String, shape: [Int], values: [Float])] = []
        for name in file.tensors.keys.sorted() {
            var values = try file.floats(name)
            if name == "h.0.mlp.c_fc.weight" { values[3] = .nan }
            tensors.append((name, file.tensors[name]!.shape, values))
        }
        try SafetensorsFile.encode(tensors).write(to: URL(fileURLWithPath: path))
        c.iterations = 12
        let resumed = Trainer(config: c, dataDirectory: dir + "/data", runDirectory: dir + "/good")
        resumed.log = { _ in }
        resumed.resume = true
        XCTAssertThrowsError(try resumed.run()) { error in
            guard case TrainingError.nonFiniteLoss(let step, let last) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(step, 8)
            XCTAssertEqual(last, dir + "/good/last")
            XCTAssertTrue("\(error)".contains("step 8"))
        }
        XCTAssertNoThrow(try Checkpoint.load(dir + "/good", backend: CPUBackendFactory.make(), prefer: ["last"]))
    }

    func testLearningRateSchedule() {
        var c = TrainConfig()
        c.lr = 1e-3; c.minLR = 1e-4; c.warmup = 100; c.iterations = 2000
        XCTAssertEqual(c.learningRate(at: 0), 1e-3 / 101, accuracy: 1e-9)
        XCTAssertEqual(c.learningRate(at: 100), 1e-3, accuracy: 1e-7)
        XCTAssertEqual(c.learningRate(at: 2000), 1e-4, accuracy: 1e-7)
        XCTAssertEqual(c.learningRate(at: 1050), 5.5e-4, accuracy: 1e-6)
        c.decay = "linear"
        XCTAssertEqual(c.learningRate(at: 1050), 5.5e-4, accuracy: 1e-6)
    }
}

import Compute
enum CPUBackendFactory { static func make() -> CPUBackend { CPUBackend() } }
