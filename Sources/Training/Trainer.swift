// The pre-training loop: batches from token shards, warm-up + decay schedule, gradient
// accumulation, AdamW with clipping, periodic evaluation with a text sample, metrics.jsonl,
// loss.svg, and checkpoints (last + best) that resume bit for bit.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Compute
import Model

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct TrainSummary: Sendable {
    public var steps: Int
    public var finalTrainLoss: Double
    public var finalValLoss: Double?
    public var bestValLoss: Double?
    public var seconds: Double
    public var tokensPerSecond: Double
}

public final class Trainer {
    public let config: TrainConfig
    public let dataDirectory: String
    public let runDirectory: String
    public var resume = false
    public var initFrom: String? = nil
    /// Where the model runs (the CPU unless a command picked `--device cuda`).
    public var backend: any Backend = CPUBackend()
    public var log: (String) -> Void = { print($0) }
    /// Stop after this many steps of this process (tests use it to interrupt a run).
    public var stopAfter: Int? = nil

    public init(config: TrainConfig, dataDirectory: String, runDirectory: String) {
        self.config = config
        self.dataDirectory = dataDirectory
        self.runDirectory = runDirectory
    }

    public func run() throws -> TrainSummary {
        try config.validate()
        let meta = try DataPreparation.loadMeta(dataDirectory)
        let codec = try TextCodec.load(path: dataDirectory + "/" + meta.tokenizer)
        guard codec.vocabularySize == meta.vocabularySize else {
            throw TrainingError.badData(path: dataDirectory, reason: "tokenizer.json has \(codec.vocabularySize) tokens but meta.json says \(meta.vocabularySize)")
        }
        let train = try TokenShard.read(dataDirectory + "/train.bin")
        let val = try TokenShard.read(dataDirectory + "/val.bin")
        let B = config.batchSize, T = config.context
        guard train.count > T + 1 else {
            throw TrainingError.badData(path: dataDirectory, reason: "train.bin has \(train.count) tokens, fewer than one sequence of \(T + 1)")
        }
        if let bad = train.first(where: { $0 < 0 || Int($0) >= codec.vocabularySize }) {
            throw TrainingError.badData(path: dataDirectory, reason: "token id \(bad) is outside the tokenizer's \(codec.vocabularySize); the data was prepared with another tokenizer")
        }
        let backend = self.backend
        let gptConfig = try config.modelConfig(vocabSize: codec.vocabularySize)
        let fm = FileManager.default
        do { try fm.createDirectory(atPath: runDirectory, withIntermediateDirectories: true) } catch {
            throw TrainingError.ioFailure(path: runDirectory, reason: "could not create the run folder")
        }

        var model: GPT
        var state: TrainState
        if resume {
            let loaded = try Checkpoint.load(runDirectory, backend: backend, prefer: ["last"], loadOptimizer: true)
            guard let saved = loaded.state else { throw TrainingError.badCheckpoint(path: loaded.directory, reason: "no state.json to resume from") }
            guard loaded.model.config == gptConfig else {
                throw TrainingError.configMismatch("checkpoint model \(describe(loaded.model.config)), flags \(describe(gptConfig))")
            }
            guard sameVocabulary(loaded.codec, codec) else {
                throw TrainingError.configMismatch("the data in \(dataDirectory) was tokenized with another tokenizer than the checkpoint's")
            }
            model = loaded.model
            state = saved
            state.config = config
            log("resuming \(loaded.directory) at step \(state.step)")
        } else {
            if fm.fileExists(atPath: runDirectory + "/last") || fm.fileExists(atPath: runDirectory + "/metrics.jsonl") {
                throw TrainingError.invalidSetting("\(runDirectory) already holds a run; pass --resume to continue it or choose another --out")
            }
            model = try GPT(config: gptConfig, backend: backend)
            model.initialize(seed: config.seed)
            if let initFrom {
                let source = try Checkpoint.load(initFrom, backend: backend)
                // Same architecture and sizes; the context may be shorter (learned positions keep their first rows).
                var comparable = source.model.config
                comparable.dropout = gptConfig.dropout
                comparable.contextLength = gptConfig.contextLength
                guard comparable == gptConfig, gptConfig.contextLength <= source.model.config.contextLength
                else { throw TrainingError.configMismatch("--init-from \(initFrom) is \(describe(source.model.config)), this run \(describe(gptConfig))") }
                guard sameVocabulary(source.codec, codec) else {
                    throw TrainingError.configMismatch("--init-from \(initFrom) uses another tokenizer than the data in \(dataDirectory)")
                }
                let positions = gptConfig.contextLength * gptConfig.width
                try model.loadTensors(into: model.parameters) { name in
                    let values = source.model.parameter(name)!
                    return name == "wpe.weight" ? Array(values.prefix(positions)) : values
                }
                log("initialised from \(source.directory)")
            }
            state = TrainState(step: 0, rng: SeededRandom(seed: config.seed), bestValLoss: nil, tokensSeen: 0,
                               config: config, dataDirectory: dataDirectory)
        }
        try model.prepareForTraining(batchSize: B, sequenceLength: T)

        // Metrics: keep what was logged before the checkpoint we start from.
        let metricsPath = runDirectory + "/metrics.jsonl"
        var trainHistory: [(Int, Double)] = [], valHistory: [(Int, Double)] = []
        var kept = ""
        if let old = try? String(decoding: Data(contentsOf: URL(fileURLWithPath: metricsPath)), as: UTF8.self) {
            for line in old.split(separator: "\n") {
                guard let record = try? JSONDecoder().decode(MetricRecord.self, from: Data(line.utf8)), record.step <= state.step else { continue }
                kept += line + "\n"
                if let l = record.trainLoss { trainHistory.append((record.step, l)) }
                if let l = record.valLoss { valHistory.append((record.step, l)) }
            }
        }
        try AtomicFile.write(Data(kept.utf8), to: metricsPath)
        guard let metrics = fopen(metricsPath, "a") else { throw TrainingError.ioFailure(path: metricsPath, reason: "cannot append") }
        defer { fclose(metrics) }
        func record(_ r: MetricRecord) {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            if let data = try? encoder.encode(r) {
                let line = String(decoding: data, as: UTF8.self) + "\n"
                fputs(line, metrics)
                fflush(metrics)
            }
        }

        let weights = [Float](repeating: 1 / Float(B * T * config.gradAccum), count: B * T)
        var inputs = [Int32](repeating: 0, count: B * T), targets = inputs
        func fillBatch(_ data: [Int32], _ rng: inout SeededRandom) {
            let span = UInt64(data.count - T - 1)
            for b in 0..<B {
                let offset = Int(rng.next() % (span + 1))
                for t in 0..<T {
                    inputs[b * T + t] = data[offset + t]
                    targets[b * T + t] = data[offset + t + 1]
                }
            }
        }
        let flopsPerToken = GPTLayout.trainingFlopsPerToken(gptConfig, T: T)
        var peak = Self.matmulPeak(backend)
        let start = MonotonicClock.now()
        var lastPeakMeasure = start, peakInterval = 5.0
        var lastLog = 0.0
        var lastLoss = Double.nan, lastVal: Double? = nil
        var stepsThisRun = 0
        var tokensThisRun = 0
        var sampler: GPT? = nil
        var lastCheckpoint: String? = fm.fileExists(atPath: runDirectory + "/last") ? runDirectory + "/last" : nil

        func evaluate(_ data: [Int32]) throws -> Double? {
            guard data.count > T + 1, config.evalBatches > 0 else { return nil }
            var rng = SeededRandom(seed: config.seed ^ 0xE7A1)
            var total = 0.0
            for _ in 0..<config.evalBatches {
                fillBatch(data, &rng)
                let loss = try inputs.withUnsafeBufferPointer { i in
                    try targets.withUnsafeBufferPointer { t in try model.forward(tokens: i, targets: t, batchSize: B, sequenceLength: T) }
                }
                total += Double(loss)
            }
            return total / Double(config.evalBatches)
        }

        func checkpoint(_ name: String) throws {
            try Checkpoint.save(model: model, codec: codec, state: state, to: runDirectory + "/" + name)
            guard name == "last" else { return }
            lastCheckpoint = runDirectory + "/last"
            if config.keepCheckpoints {
                // Weights only (no optimizer state): snapshots to average or evaluate, not to resume.
                try Checkpoint.saveSnapshot(model: model, codec: codec, step: state.step, in: runDirectory)
            }
        }

        while state.step < config.iterations {
            if let stopAfter, stepsThisRun >= stopAfter { break }
            let stepStart = MonotonicClock.now()
            let lr = config.learningRate(at: state.step)
            try model.zeroGradients()
            var loss = 0.0
            for micro in 0..<config.gradAccum {
                fillBatch(train, &state.rng)
                let dropoutSeed: UInt64? = config.dropout > 0 ? mix64(config.seed ^ (UInt64(state.step) << 8) ^ UInt64(micro)) : nil
                let l = try inputs.withUnsafeBufferPointer { i in
                    try targets.withUnsafeBufferPointer { t in
                        try weights.withUnsafeBufferPointer { w in
                            try model.forward(tokens: i, targets: t, weights: w, batchSize: B, sequenceLength: T, dropoutSeed: dropoutSeed)
                        }
                    }
                }
                loss += Double(l)
                try model.backward()
            }
            guard loss.isFinite else { throw TrainingError.nonFiniteLoss(step: state.step, lastCheckpoint: lastCheckpoint) }
            let norm = try model.update(learningRate: lr, beta1: config.beta1, beta2: config.beta2, epsilon: 1e-8,
                                        weightDecay: config.weightDecay, gradientClip: config.gradClip, step: state.step + 1)
            state.step += 1
            stepsThisRun += 1
            let tokens = B * T * config.gradAccum
            state.tokensSeen += tokens
            tokensThisRun += tokens
            lastLoss = loss
            let now = MonotonicClock.now()
            let stepSeconds = now - stepStart
            let tokensPerSecond = Double(tokens) / stepSeconds
            var mfu = flopsPerToken * tokensPerSecond / 1e9 / peak
            if mfu > 1 && now - lastPeakMeasure > peakInterval {
                // The peak was probably measured while other work held the cores: measure it again
                // and keep the better figure (waiting twice as long before each further try, so a
                // run whose kernels really beat the 1024³ product pays almost nothing).
                peak = max(peak, Self.matmulPeak(backend))
                lastPeakMeasure = MonotonicClock.now()
                peakInterval *= 2
                mfu = flopsPerToken * tokensPerSecond / 1e9 / peak
            }
            trainHistory.append((state.step, loss))
            record(MetricRecord(step: state.step, trainLoss: loss, valLoss: nil, lr: Double(lr), gradNorm: Double(norm),
                                tokensPerSec: tokensPerSecond, mfu: mfu, elapsed: now - start))
            if now - lastLog > 1 || state.step == config.iterations || state.step == 1 {
                lastLog = now
                let rate = Double(tokensThisRun) / (now - start)
                let eta = Double((config.iterations - state.step) * tokens) / max(rate, 1)
                log("step \(state.step)/\(config.iterations) | loss \(f4(loss)) | lr \(sci(lr)) | \(Int(tokensPerSecond)) tok/s | MFU \(Int(mfu * 100))% | ETA \(duration(eta))")
            }
            let outOfTime = config.maxSeconds > 0 && now - start >= config.maxSeconds
            let atEval = config.evalEvery > 0 && (state.step % config.evalEvery == 0 || state.step == config.iterations || outOfTime)
            if atEval {
                let trainEval = try evaluate(train)
                let valLoss = try evaluate(val)
                lastVal = valLoss
                record(MetricRecord(step: state.step, trainLoss: nil, valLoss: valLoss, trainEvalLoss: trainEval, lr: Double(lr),
                                    elapsed: MonotonicClock.now() - start))
                if let valLoss { valHistory.append((state.step, valLoss)) }
                var sampleText = ""
                if config.sampleTokens > 0 {
                    // A one-row copy of the model samples, so the training buffers stay as they are.
                    if sampler == nil { sampler = try GPT(config: gptConfig, backend: backend) }
                    try sampler!.loadTensors(into: sampler!.parameters) { model.parameter($0)! }
                    let prompt: [Int32] = codec.endOfText.map { [$0] } ?? [(try? codec.encode("\n"))?.first ?? 0]
                    let ids = try SimpleSampler(temperature: 1, topK: 0, seed: config.seed).generate(
                        model: sampler!, prompt: prompt, maxTokens: min(config.sampleTokens, T), batchSize: 1, stop: codec.endOfText)
                    sampleText = (try? codec.decode(ids)) ?? ""
                }
                log("eval step \(state.step): train \(trainEval.map(f4) ?? "-") | val \(valLoss.map(f4) ?? "-")"
                    + (sampleText.isEmpty ? "" : "\n  sample: \(sampleText.debugDescription)"))
                try? AtomicFile.write(Data(LossPlot.svg(train: trainHistory, val: valHistory, title: "SwiftGPT — \(runDirectory)").utf8),
                                      to: runDirectory + "/loss.svg")
                if let valLoss, valLoss < (state.bestValLoss ?? .infinity) {
                    state.bestValLoss = valLoss
                    try checkpoint("best")
                }
                try checkpoint("last")
            } else if config.checkpointEvery > 0 && state.step % config.checkpointEvery == 0 {
                try checkpoint("last")
            }
            if outOfTime {
                log("time budget of \(Int(config.maxSeconds)) s reached at step \(state.step)")
                break
            }
        }
        if lastCheckpoint == nil || stepsThisRun > 0 { try checkpoint("last") }
        try? AtomicFile.write(Data(LossPlot.svg(train: trainHistory, val: valHistory, title: "SwiftGPT — \(runDirectory)").utf8),
                              to: runDirectory + "/loss.svg")
        let seconds = MonotonicClock.now() - start
        return TrainSummary(steps: state.step, finalTrainLoss: lastLoss, finalValLoss: lastVal, bestValLoss: state.bestValLoss,
                            seconds: seconds, tokensPerSecond: Double(tokensThisRun) / max(seconds, 1e-9))
    }

    /// This machine's fp32 matrix-product rate (GFLOP/s, best of 4 products of 1024³), the
    /// denominator of MFU.
    static func matmulPeak(_ backend: any Backend) -> Double {
        let n = 1024
        guard let a = try? backend.allocate(n * n), let c = try? backend.allocate(n * n) else { return 1 }
        defer { backend.deallocate(a); backend.deallocate(c) }
        // A warm-up product wakes the BLAS threads; the best of eight timed ones is the peak (a
        // short burst of noise from other work on the machine must not lower it, or MFU reads > 100%).
        backend.matmulForward(out: c, input: a, weight: a, bias: nil, N: n, C: n, OC: n)
        backend.synchronize()
        var best = 0.0
        for _ in 0..<8 {
            let t0 = MonotonicClock.now()
            backend.matmulForward(out: c, input: a, weight: a, bias: nil, N: n, C: n, OC: n)
            backend.synchronize()
            best = max(best, 2 * Double(n * n * n) / (MonotonicClock.now() - t0) / 1e9)
        }
        return best
    }
}

/// Whether two codecs map ids to the same text.
func sameVocabulary(_ a: TextCodec, _ b: TextCodec) -> Bool {
    switch (a, b) {
    case (.bpe(let x), .bpe(let y)): return x.tokenBytes == y.tokenBytes && x.pattern == y.pattern
    case (.characters(let x, _), .characters(let y, _)): return x == y
    default: return false
    }
}

func describe(_ c: GPTConfig) -> String {
    "\(c.architectureName), vocab \(c.vocabSize), \(c.layers) layers, \(c.heads) heads"
        + (c.kvHeads != c.heads ? " (\(c.kvHeads) key/value)" : "") + ", width \(c.width), feed-forward \(c.hiddenWidth), context \(c.contextLength)"
}

func f4(_ x: Double) -> String { String(format4: x) }
func sci(_ x: Float) -> String {
    var e = 0
    var m = Double(x)
    while m != 0 && abs(m) < 1 { m *= 10; e -= 1 }
    while abs(m) >= 10 { m /= 10; e += 1 }
    return "\((m * 100).rounded() / 100)e\(e)"
}
func duration(_ s: Double) -> String {
    let t = Int(s.rounded())
    return t >= 3600 ? "\(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "\(t / 60)m\(t % 60)s" : "\(t)s"
}

extension String {
    init(format4 x: Double) {
        let r = (x * 10000).rounded() / 10000
        self = "\(r)"
    }
}

/// One line of metrics.jsonl.
public struct MetricRecord: Codable {
    public var step: Int
    public var trainLoss: Double?
    public var valLoss: Double?
    public var trainEvalLoss: Double?
    public var lr: Double?
    public var gradNorm: Double?
    public var tokensPerSec: Double?
    public var mfu: Double?
    public var elapsed: Double?

    init(step: Int, trainLoss: Double?, valLoss: Double?, trainEvalLoss: Double? = nil, lr: Double? = nil, gradNorm: Double? = nil,
         tokensPerSec: Double? = nil, mfu: Double? = nil, elapsed: Double? = nil) {
        self.step = step
        self.trainLoss = trainLoss
        self.valLoss = valLoss
        self.trainEvalLoss = trainEvalLoss
        self.lr = lr
        self.gradNorm = gradNorm
        self.tokensPerSec = tokensPerSec
        self.mfu = mfu
        self.elapsed = elapsed
    }

    enum CodingKeys: String, CodingKey {
        case step, lr, mfu, elapsed
        case trainLoss = "train_loss"
        case valLoss = "val_loss"
        case trainEvalLoss = "train_eval_loss"
        case gradNorm = "grad_norm"
        case tokensPerSec = "tokens_per_sec"
    }
}
