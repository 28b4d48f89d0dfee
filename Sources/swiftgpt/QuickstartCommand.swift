import ArgumentParser
import Chat
import Compute
import Engine
import Foundation
import Model
import Tokenizer
import Training

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct QuickstartCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quickstart",
        abstract: "The whole pipeline in a few minutes: data, tokenizer, pre-training, SFT, DPO, evaluation, chat.",
        discussion: """
            With no arguments SwiftGPT generates its own corpus — a small world of people, their \
            towns, favourite colours and pets, and single-digit sums — trains a BPE tokenizer on it, \
            pre-trains a small GPT, fine-tunes it on generated dialogues (SFT), measures how often it \
            answers held-out questions correctly before and after, runs DPO on correct-vs-wrong answer \
            pairs (preference accuracy on held-out pairs before and after), writes OUT/report.json and \
            opens a chat with the result. --data PATH adds your own text (.txt/.jsonl files or folders) \
            to the pre-training corpus. Everything is written under --out.
            """
    )

    @Option(help: "Your own text to pre-train on as well (files or folders).") var data: [String] = []
    @Option(help: "Output folder.") var out: String = "runs/quickstart"
    @Flag(help: "Do not open the chat at the end.") var noChat = false
    @Option(help: "Seconds of pre-training at most.") var pretrainSeconds: Double = 180
    @Option(help: "Pre-training steps at most: a machine fast enough to take them all within --pretrain-seconds gets the same model as any other; a slower one takes as many as fit.")
    var pretrainSteps: Int = 1000
    @Option(help: "Seed of the generated world and of training.") var seed: UInt64 = 7
    @Option(help: "Passes over the dialogues in SFT.") var sftEpochs: Double = 8
    @Option(help: "Peak learning rate of SFT.") var sftLr: Float = 5e-4
    @Option(help: "Passes over the preference pairs in DPO.") var dpoEpochs: Double = 2
    @Option(help: "Peak learning rate of DPO.") var dpoLr: Float = 1e-4
    @Option(help: "DPO β (a large β keeps the policy near the SFT model: at 0.1 DPO cost up to 30 points of task accuracy here, at 1 up to 18).")
    var dpoBeta: Float = 2
    @Option(help: "Weight of the NLL term on the chosen replies in DPO (RPO; 0: plain DPO).") var dpoNllWeight: Float = 1
    @Flag(help: "Keep OUT's data, tokenizer and pre-trained model from an earlier run and redo only fine-tuning and evaluation.")
    var reusePretraining = false

    func validate() throws {
        func positive(_ value: Double, _ flag: String) throws {
            guard value.isFinite, value > 0 else { throw ValidationError("\(flag) must be a positive number (got \(value))") }
        }
        try positive(pretrainSeconds, "--pretrain-seconds")
        guard pretrainSteps >= 1 else { throw ValidationError("--pretrain-steps must be at least 1 (got \(pretrainSteps))") }
        try positive(sftEpochs, "--sft-epochs")
        try positive(Double(sftLr), "--sft-lr")
        try positive(dpoEpochs, "--dpo-epochs")
        try positive(Double(dpoLr), "--dpo-lr")
        try positive(Double(dpoBeta), "--dpo-beta")
        guard dpoNllWeight.isFinite, dpoNllWeight >= 0 else {
            throw ValidationError("--dpo-nll-weight must be 0 or more (got \(dpoNllWeight))")
        }
    }

    func run() async throws {
        let start = MonotonicClock.now()
        let fm = FileManager.default
        let dataDir = out + "/data"
        try fm.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        func elapsed() -> String { "[\(Int(MonotonicClock.now() - start)) s]" }

        let world = SyntheticWorld(seed: seed)
        let dialogues = world.dialogues()
        let pretrainDir = out + "/pretrain"
        var pretrain: TrainSummary? = nil
        if reusePretraining {
            guard fm.fileExists(atPath: pretrainDir + "/last/model.safetensors") else {
                throw ValidationError("--reuse-pretraining: \(pretrainDir)/last holds no model; run once without the flag")
            }
            print("\(elapsed()) 1-3/6 reusing the data, tokenizer and pre-trained model in \(out)")
        } else {
            pretrain = try pretrainFromScratch(world: world, dialogues: dialogues, dataDir: dataDir, pretrainDir: pretrainDir,
                                               elapsed: elapsed)
        }

        // 4. SFT, with task accuracy before and after.
        let loaded = try Checkpoint.load(pretrainDir, backend: CPUBackend(), prefer: ["last"])
        let model = loaded.model, codec = loaded.codec
        let before = try taskAccuracy(model: model, codec: codec, questions: world.heldOutQuestions)
        var sft = FineTuneConfig()
        sft.epochs = sftEpochs; sft.batchSize = 32; sft.lr = sftLr; sft.minLR = sftLr / 10; sft.warmup = 10; sft.evalEvery = 40
        sft.valFraction = 0.05; sft.seed = seed
        print("\(elapsed()) 4/6 SFT on \(dialogues.count) dialogues (held-out task accuracy before: \(fmt(100 * before))%) → \(out)/sft")
        _ = try SupervisedFineTuning.run(model: model, codec: codec, conversations: dialogues, config: sft,
                                         directory: out + "/sft", log: { print("    " + $0) })
        let after = try taskAccuracy(model: model, codec: codec, questions: world.heldOutQuestions, record: out + "/sft/heldout_answers.jsonl")
        print("    held-out task accuracy after SFT: \(fmt(100 * after))%")

        // 5. DPO: for every question, the full correct answer against the wrong answer the SFT model
        //    finds most likely (correctness), and against the bare value when asked in a phrasing
        //    that fine-tuning answered with bare values (style). Preference accuracy before and after
        //    on held-out questions, and how often greedy replies to them are full sentences.
        let trainPairs = try hardestPairs(model: model, codec: codec, questions: world.trainQuestions)
        let heldOutPairs = try hardestPairs(model: model, codec: codec, questions: world.heldOutQuestions)
        for (pairs, name) in [(trainPairs.all, "dpo.jsonl"), (heldOutPairs.all, "dpo_heldout.jsonl")] {
            try writeJSONL(pairs.map { p -> [String: Any] in
                ["prompt": p.prompt.map { ["role": $0.role.rawValue, "content": $0.content] }, "chosen": p.chosen, "rejected": p.rejected]
            }, to: dataDir + "/" + name)
        }
        // [all pairs, correctness, style]: the two kinds are scored once and pooled for "all".
        func scores() throws -> [PreferenceScore] {
            let c = try PreferenceOptimization.score(model: model, codec: codec, pairs: heldOutPairs.correctness)
            let s = try PreferenceOptimization.score(model: model, codec: codec, pairs: heldOutPairs.style)
            let n = Double(c.pairs + s.pairs)
            let all = PreferenceScore(accuracy: (c.accuracy * Double(c.pairs) + s.accuracy * Double(s.pairs)) / n,
                                      margin: (c.margin * Double(c.pairs) + s.margin * Double(s.pairs)) / n,
                                      pairs: c.pairs + s.pairs, skipped: c.skipped + s.skipped, truncated: c.truncated + s.truncated)
            return [all, c, s]
        }
        let prefBefore = try scores()
        let styleBefore = try fullSentenceRate(model: model, codec: codec, questions: world.heldOutQuestions)
        var dpo = FineTuneConfig()
        dpo.epochs = dpoEpochs; dpo.batchSize = 16; dpo.lr = dpoLr; dpo.minLR = dpoLr / 10; dpo.warmup = 5; dpo.beta = dpoBeta; dpo.nllWeight = dpoNllWeight
        dpo.evalEvery = 20; dpo.valFraction = 0.05; dpo.seed = seed
        print("\(elapsed()) 5/6 DPO on \(trainPairs.all.count) pairs (held-out preference accuracy before: \(fmt(100 * prefBefore[0].accuracy))%: "
              + "correct over wrong \(fmt(100 * prefBefore[1].accuracy))%, full sentence over bare value \(fmt(100 * prefBefore[2].accuracy))%; "
              + "full-sentence replies \(fmt(100 * styleBefore))%) → \(out)/dpo")
        _ = try PreferenceOptimization.run(model: model, codec: codec, pairs: trainPairs.all, config: dpo,
                                           directory: out + "/dpo", log: { print("    " + $0) })
        let prefAfter = try scores()
        let styleAfter = try fullSentenceRate(model: model, codec: codec, questions: world.heldOutQuestions)
        let afterDPO = try taskAccuracy(model: model, codec: codec, questions: world.heldOutQuestions, record: out + "/dpo/heldout_answers.jsonl")
        print("    held-out preference accuracy after DPO: \(fmt(100 * prefAfter[0].accuracy))% (correct over wrong \(fmt(100 * prefAfter[1].accuracy))%, "
              + "full sentence over bare value \(fmt(100 * prefAfter[2].accuracy))%); full-sentence replies \(fmt(100 * styleAfter))%; "
              + "task accuracy \(fmt(100 * afterDPO))%")
        let modelDir = out + "/dpo"
        try Checkpoint.save(model: model, codec: codec, state: nil, to: modelDir + "/best")

        // 6. Report.
        let seconds = MonotonicClock.now() - start
        struct Report: Encodable {
            let seconds: Double
            let pretrain_val_loss: Double?
            let pretrain_steps: Int
            let task_accuracy_before_sft: Double
            let task_accuracy_after_sft: Double
            let task_accuracy_after_dpo: Double
            let preference_accuracy_before_dpo: Double
            let preference_accuracy_after_dpo: Double
            let preference_margin_before_dpo: Double
            let preference_margin_after_dpo: Double
            let preference_accuracy_correctness_before_dpo: Double
            let preference_accuracy_correctness_after_dpo: Double
            let preference_accuracy_style_before_dpo: Double
            let preference_accuracy_style_after_dpo: Double
            let full_sentence_replies_before_dpo: Double
            let full_sentence_replies_after_dpo: Double
            let held_out_questions: Int
            let held_out_pairs: Int
            let model_dir: String
        }
        let report = Report(seconds: seconds, pretrain_val_loss: pretrain.flatMap { $0.bestValLoss ?? $0.finalValLoss },
                            pretrain_steps: pretrain?.steps ?? 0,
                            task_accuracy_before_sft: before, task_accuracy_after_sft: after, task_accuracy_after_dpo: afterDPO,
                            preference_accuracy_before_dpo: prefBefore[0].accuracy, preference_accuracy_after_dpo: prefAfter[0].accuracy,
                            preference_margin_before_dpo: prefBefore[0].margin, preference_margin_after_dpo: prefAfter[0].margin,
                            preference_accuracy_correctness_before_dpo: prefBefore[1].accuracy,
                            preference_accuracy_correctness_after_dpo: prefAfter[1].accuracy,
                            preference_accuracy_style_before_dpo: prefBefore[2].accuracy, preference_accuracy_style_after_dpo: prefAfter[2].accuracy,
                            full_sentence_replies_before_dpo: styleBefore, full_sentence_replies_after_dpo: styleAfter,
                            held_out_questions: world.heldOutQuestions.count, held_out_pairs: prefAfter[0].pairs, model_dir: modelDir)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(report), to: out + "/report.json")
        print("""
            \(elapsed()) 6/6 done in \(Int(seconds)) s. Pre-training val loss \(report.pretrain_val_loss.map { fmt($0, 3) } ?? "(reused run)"); \
            held-out task accuracy \(fmt(100 * before))% → \(fmt(100 * after))% (SFT) → \(fmt(100 * afterDPO))% (DPO); \
            held-out preference accuracy \(fmt(100 * prefBefore[0].accuracy))% → \(fmt(100 * prefAfter[0].accuracy))% (DPO); \
            full-sentence replies \(fmt(100 * styleBefore))% → \(fmt(100 * styleAfter))%.
            Wrote \(out)/report.json; models in \(pretrainDir), \(out)/sft, \(modelDir); data in \(dataDir).
            Next:
              swiftgpt chat --model \(modelDir)
              swiftgpt generate --model \(pretrainDir) --prompt "Ada lives in" --temperature 0
              swiftgpt eval --model \(modelDir) --task preference --data \(dataDir)/dpo_heldout.jsonl
            """)
        if noChat { return }
        guard isatty(0) != 0 else {
            print("(standard input is not a terminal: skipping the chat; run the first command above)")
            return
        }
        print("Opening the chat (ask e.g. \"\(world.heldOutQuestions[0].question)\"; Ctrl-D leaves).")
        var chat = ChatCommand()
        chat.model = modelDir
        chat.maxTokens = 48
        chat.sampling = try SamplingOptions.parse(["--temperature", "0"])
        chat.device = try DeviceOptions.parse([])
        try await chat.run()
    }

    /// Steps 1-3: the generated corpus and dialogues, the tokenizer, pre-training.
    func pretrainFromScratch(world: SyntheticWorld, dialogues: [[ChatMessage]], dataDir: String, pretrainDir: String,
                             elapsed: () -> String) throws -> TrainSummary {
        // 1. Data.
        let corpusPath = dataDir + "/world.txt"
        try AtomicFile.write(Data(world.pretrainingText().utf8), to: corpusPath)
        try writeJSONL(dialogues.map { ["messages": $0.map { ["role": $0.role.rawValue, "content": $0.content] }] }, to: dataDir + "/sft.jsonl")
        print("\(elapsed()) 1/6 data: \(world.people.count) people and 100 sums → \(corpusPath); \(dialogues.count) dialogues; "
              + "\(world.heldOutQuestions.count) held-out questions")

        // 2. Tokenizer: BPE on the corpus and the dialogues (plus the user's text).
        let tokenizerPath = out + "/tokenizer.json"
        var counts = PieceCounts()
        let dialogueText = dialogues.flatMap { $0.map(\.content) }.joined(separator: "\n")
        for text in [try String(contentsOfFile: corpusPath, encoding: .utf8), dialogueText] {
            Array(text.utf8).withUnsafeBufferPointer { counts.count($0, pattern: .gpt4, threads: Parallel.threadCount) }
        }
        if !data.isEmpty {
            try CorpusReader(paths: data).forEachBlock { block, _ in counts.count(block, pattern: .gpt4, threads: Parallel.threadCount) }
        }
        let bpe = try BPETrainer(vocabularySize: 512, pattern: .gpt4, specialTokens: ChatTokens.all).train(counts)
        try bpe.saveHuggingFace(to: tokenizerPath)
        print("\(elapsed()) 2/6 tokenizer: \(bpe.vocabularySize) tokens → \(tokenizerPath)")

        // 3. Pre-training.
        var prep = DataPreparation(inputs: [corpusPath] + data, outputDirectory: dataDir + "/tokens", tokenizerPath: tokenizerPath)
        prep.valFraction = 0.05
        let meta = try prep.run()
        var config = TrainConfig()
        config.layers = 4; config.heads = 4; config.width = 128; config.context = 64
        config.batchSize = 32; config.iterations = 100_000; config.maxSeconds = pretrainSeconds
        config.lr = 2e-3; config.minLR = 2e-4; config.warmup = 50; config.weightDecay = 0.1
        config.evalEvery = 250; config.evalBatches = 10; config.sampleTokens = 0; config.seed = seed
        // Size the schedule to the time budget from this machine's measured step rate, so the cosine
        // decay finishes (a schedule cut off by the clock leaves the learning rate high).
        let modelConfig = GPTConfig(vocabSize: bpe.vocabularySize, contextLength: 64, layers: 4, heads: 4, width: 128)
        let probe = try TrainBenchmark.run(name: "probe", config: modelConfig, batchSize: config.batchSize, steps: 8, warmup: 2, log: nil)
        let fitting = max(100, Int(pretrainSeconds * 1000 / probe.stepMs * 0.9))
        config.iterations = min(pretrainSteps, fitting)
        let budget = fitting < pretrainSteps ? "\(config.iterations) steps (as many as fit in \(Int(pretrainSeconds)) s here)"
            : "\(config.iterations) steps"
        print("\(elapsed()) 3/6 pre-training 4 layers × 128 wide on \(meta.trainTokens) tokens, \(budget) → \(pretrainDir)")
        let trainer = Trainer(config: config, dataDirectory: dataDir + "/tokens", runDirectory: pretrainDir)
        var lastLine = MonotonicClock.now()
        trainer.log = { line in
            if line.hasPrefix("eval") || MonotonicClock.now() - lastLine > 15 { print("    " + line); lastLine = MonotonicClock.now() }
        }
        return try trainer.run()
    }

    /// For each question: its correct answer against the wrong answer the model rates most likely
    /// (correctness), and against the bare value when asked "Please tell me: …" or "I was
    /// wondering. …", the phrasings fine-tuning answered with bare values (style).
    func hardestPairs(model: GPT, codec: TextCodec, questions: [SyntheticWorld.Question]) throws
        -> (correctness: [PreferencePair], style: [PreferencePair], all: [PreferencePair]) {
        var candidates: [PreferencePair] = []
        var owner: [Int] = []
        for (i, q) in questions.enumerated() {
            for wrong in q.wrongAnswers {
                candidates.append(PreferencePair(prompt: [ChatMessage(role: .user, content: q.question)], chosen: q.answer, rejected: wrong))
                owner.append(i)
            }
        }
        let logps = try PreferenceOptimization.logProbabilities(model: model, codec: codec, pairs: candidates)
        var best = [Int?](repeating: nil, count: questions.count)
        for (k, lp) in logps.enumerated() {
            guard let lp else { continue }
            if let b = best[owner[k]], let other = logps[b], other.1 >= lp.1 { continue }
            best[owner[k]] = k
        }
        var correctness: [PreferencePair] = [], style: [PreferencePair] = [], all: [PreferencePair] = []
        for (i, q) in questions.enumerated() {
            if let b = best[i] { correctness.append(candidates[b]); all.append(candidates[b]) }
            let pair = PreferencePair(prompt: [ChatMessage(role: .user, content: SyntheticWorld.asked(q, Self.bareAskings[i % 2]))],
                                      chosen: q.answer, rejected: q.shortAnswer)
            style.append(pair)
            all.append(pair)
        }
        return (correctness, style, all)
    }

    /// The askings whose fine-tuning replies are bare values.
    static let bareAskings = [1, 3]

    /// Share of questions, asked in a phrasing that fine-tuning answered with bare values, that the
    /// model answers (greedy) with a full sentence.
    func fullSentenceRate(model: GPT, codec: TextCodec, questions: [SyntheticWorld.Question]) throws -> Double {
        let prompts = questions.enumerated().map { SyntheticWorld.asked($0.element, Self.bareAskings[$0.offset % 2]) }
        let full = try greedyReplies(model: model, codec: codec, prompts: prompts).filter(SyntheticWorld.isFullSentence).count
        return Double(full) / Double(max(1, questions.count))
    }

    /// Share of questions answered correctly with greedy decoding and the chat template.
    func taskAccuracy(model: GPT, codec: TextCodec, questions: [SyntheticWorld.Question], record: String? = nil) throws -> Double {
        let replies = try greedyReplies(model: model, codec: codec, prompts: questions.map(\.question))
        var correct = 0
        var lines: [[String: Any]] = []
        for (q, reply) in zip(questions, replies) {
            let ok = SyntheticWorld.isCorrect(reply, for: q)
            if ok { correct += 1 }
            lines.append(["question": q.question, "expected": q.answer, "reply": reply, "correct": ok])
        }
        if let record { try writeJSONL(lines, to: record) }
        return Double(correct) / Double(max(1, questions.count))
    }

    /// Greedy single-turn replies (chat template, at most 24 tokens), one fresh session a prompt.
    func greedyReplies(model: GPT, codec: TextCodec, prompts: [String]) throws -> [String] {
        let engine = Engine(model: try InferenceModel(model: model, slots: 1))
        return try prompts.map { prompt in
            try ChatSession(engine: engine, codec: codec, sampling: .greedy, maxReplyTokens: 24).send(prompt).text
        }
    }
}

func writeJSONL(_ records: [[String: Any]], to path: String) throws {
    var data = Data()
    for r in records {
        data += try JSONSerialization.data(withJSONObject: r, options: [.sortedKeys])
        data += Data("\n".utf8)
    }
    try AtomicFile.write(data, to: path)
}
