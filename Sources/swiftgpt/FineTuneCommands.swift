import ArgumentParser
import Compute
import Evaluation
import Foundation
import Model
import Tokenizer
import Training

/// Flags shared by sft and dpo.
struct FineTuneOptions: ParsableArguments {
    @Option(help: "Passes over the training data (ignored when --iterations is set).") var epochs: Double = 1
    @Option(help: "Steps (overrides --epochs).") var iterations: Int = 0
    @Option(help: "Examples per step (DPO: pairs per step).") var batchSize: Int = 16
    @Option(help: "Peak learning rate.") var lr: Float?
    @Option(help: "Final learning rate of the cosine decay.") var minLr: Float?
    @Option(help: "Warm-up steps.") var warmup: Int = 10
    @Option(help: "AdamW weight decay.") var weightDecay: Float = 0
    @Option(help: "Gradient clipping (global norm; 0: off).") var gradClip: Float = 1
    @Option(help: "Seed for the shuffle and the held-out split.") var seed: UInt64 = 1337
    @Option(help: "Evaluate on the held-out examples every N steps.") var evalEvery: Int = 50
    @Option(help: "Held-out fraction of the data.") var valFraction: Double = 0.05
    @Option(help: "Longest example in tokens (default and maximum: the model's context + 1).") var maxLength: Int?
    @Option(help: "Stop after this many seconds (0: no limit).") var maxSeconds: Double = 0
    @Option(help: "SFT: dropout probability during training (default: the model's, as pre-trained).") var dropout: Float?
    @Option(help: "SFT: weight of an auxiliary next-token loss on the prompt tokens (system and user turns), added as this × their mean loss to the assistant tokens' mean (0: assistant tokens only).") var promptLossWeight: Float = 0
    @Flag(help: "Reject the whole file on a malformed JSONL line instead of skipping it.") var strict = false
    @Flag(help: "Also keep the weights at every evaluation as OUT/step-NNNNNN/ (e.g. to average them with merge).") var keepCheckpoints = false
    @OptionGroup var device: DeviceOptions

    func config(defaultLR: Float) -> FineTuneConfig {
        var c = FineTuneConfig()
        c.epochs = epochs
        c.iterations = iterations
        c.batchSize = batchSize
        c.lr = lr ?? defaultLR
        c.minLR = minLr ?? (lr ?? defaultLR) / 10
        c.warmup = warmup
        c.weightDecay = weightDecay
        c.gradClip = gradClip
        c.seed = seed
        c.evalEvery = evalEvery
        c.valFraction = valFraction
        c.maxLength = maxLength
        c.maxSeconds = maxSeconds
        c.dropout = dropout
        c.keepCheckpoints = keepCheckpoints
        c.promptLossWeight = promptLossWeight
        return c
    }
}

func printJSONLReport(_ report: JSONLReport, path: String, what: String) {
    if report.malformedCount > 0 {
        printError("\(report.malformedCount) malformed lines in \(path) were skipped:")
        for m in report.malformed { printError("  \(m)") }
        if report.malformedCount > report.malformed.count { printError("  … and \(report.malformedCount - report.malformed.count) more") }
    }
    if report.skipped > 0 { print("skipped \(report.skipped) \(what)") }
}

struct SFTCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sft",
        abstract: "Supervised fine-tuning on conversations: loss on the assistant's tokens only.",
        discussion: """
            --data is JSONL in the OpenAI messages format, one conversation per line: \
            {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}. Conversations \
            are rendered with the tokenizer's chat template; the loss covers assistant replies and \
            their end-of-turn token. Longer than the context: truncated (counted); without an \
            assistant turn: skipped (counted); malformed lines: reported with file:line and skipped \
            (or rejected with --strict). Writes OUT/best (lowest held-out loss, what chat uses), \
            OUT/last, metrics.jsonl and loss.svg. --task sentiment|translation: --data is a task TSV \
            (as for swiftgpt eval) and every row becomes a conversation with the task's prompt, so \
            that eval --task asks the fine-tuned model exactly what it learned.
            """
    )

    @Option(help: "The pre-trained run or checkpoint to start from.") var model: String
    @Option(help: "Conversations (JSONL), or a TSV with --task.") var data: String
    @Option(help: "Build the conversations from a task TSV: sentiment or translation.") var task: String?
    @Option(help: "sentiment: the label words, in label-index order.") var labels: String = "negative,positive"
    @Option(help: "The task's user turn, with {text} for the row's text; sentiment may use {labels}, translation {source} and {target} (default: the task's built-in question). Recorded in OUT/task.json for eval.")
    var promptTemplate: String?
    @Option(help: "Output run folder.") var out: String
    @OptionGroup var options: FineTuneOptions

    func validate() throws {
        if promptTemplate != nil && task == nil { throw ValidationError("--prompt-template needs --task sentiment or --task translation") }
    }

    func run() async throws {
        let loaded = try Checkpoint.load(model, backend: try options.device.backend())
        let conversations: [[ChatMessage]]
        if let task {
            let malformed: [String]
            let record: TaskRecord
            switch task {
            case "sentiment":
                let t = try SentimentTask(commaSeparated: labels, template: promptTemplate ?? SentimentTask.defaultTemplate)
                let loaded = try t.load(data)
                conversations = loaded.examples.map(t.conversation)
                malformed = loaded.malformed
                record = TaskRecord(task: task, labels: t.labels, template: t.template.text)
            case "translation":
                let loaded = try TranslationTask.load(data, template: promptTemplate ?? TranslationTask.defaultTemplate)
                conversations = loaded.pairs.map(loaded.task.conversation)
                malformed = loaded.malformed
                record = TaskRecord(task: task, template: loaded.task.template.text)
            default: throw ValidationError("unknown --task \(task); available: sentiment, translation")
            }
            printSkippedRows(malformed, of: data)
            try record.write(toRun: out)
            print("sft --task \(task): \(conversations.count) conversations from \(data)")
        } else {
            let (loaded, report) = try loadConversations(data, strict: options.strict)
            printJSONLReport(report, path: data, what: "conversations without an assistant turn")
            conversations = loaded
        }
        let summary = try SupervisedFineTuning.run(model: loaded.model, codec: loaded.codec, conversations: conversations,
                                                   config: options.config(defaultLR: 1e-4), directory: out)
        print("sft: \(summary.steps) steps in \(fmt(summary.seconds)) s; final train loss \(fmt(summary.finalTrainLoss, 4))"
              + (summary.valLoss.map { ", held-out loss \(fmt($0, 4))" } ?? "") + "; wrote \(out) — try: swiftgpt chat --model \(out)")
    }
}

struct DPOCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dpo",
        abstract: "Direct preference optimisation on chosen/rejected pairs against a frozen reference.",
        discussion: """
            --data is JSONL with "prompt" (text, or messages ending with a user turn; "prompt_messages" \
            is used when present), "chosen" and "rejected" (assistant replies). The reference is the \
            starting checkpoint (or --reference, which must have the same configuration); its \
            log-probabilities are computed once. Loss: −log σ(β·(Δ chosen − Δ rejected)) on summed \
            log-probabilities of the reply tokens (--label-smoothing: conservative DPO; --loss ipo or \
            hinge: IPO or SLiC). Logs loss, reward accuracy and margins on held-out \
            pairs; writes OUT/best, OUT/last, metrics.jsonl and loss.svg.
            """
    )

    @Option(help: "The SFT run or checkpoint to start from (the policy).") var model: String
    @Option(help: "Preference pairs (JSONL).") var data: String
    @Option(help: "Output run folder.") var out: String
    @Option(help: "DPO β: how far the policy may move from the reference.") var beta: Float = 0.1
    @Option(help: "Reference model (default: the starting checkpoint).") var reference: String?
    @Option(help: "Weight of an added NLL loss on the chosen replies (RPO; 0: plain DPO). Keeps DPO from lowering the chosen replies' likelihood.")
    var nllWeight: Float = 0
    @Option(help: "Held-out pairs (JSONL) to evaluate on, instead of --val-fraction of --data.") var valData: String?
    @Option(help: "The preference loss: sigmoid (DPO), ipo ((h − 1/(2β))², IPO) or hinge (max(0, 1 − β·h), SLiC), where h is the chosen reply's log-ratio to the reference minus the rejected one's.")
    var loss: PreferenceLoss = .sigmoid
    @Option(help: "sigmoid loss: the assumed chance ε that a label is wrong (conservative DPO; 0: plain DPO).") var labelSmoothing: Float = 0
    @Flag(help: "Skip pairs longer than the context instead of cutting them (end of the prompt, start of the replies).") var skipLongPairs = false
    @OptionGroup var options: FineTuneOptions

    func validate() throws {
        if labelSmoothing != 0 && loss != .sigmoid {
            throw ValidationError("--label-smoothing applies to the sigmoid loss only; drop it or use --loss sigmoid")
        }
        if !(labelSmoothing >= 0 && labelSmoothing < 0.5) {
            throw ValidationError("--label-smoothing is the chance that a label is wrong: give a value in [0, 0.5), not \(labelSmoothing)")
        }
        if options.promptLossWeight != 0 {
            throw ValidationError("--prompt-loss-weight is for sft (DPO's loss covers the replies only); drop it or use --nll-weight")
        }
    }

    func run() async throws {
        let backend = try options.device.backend()
        let loaded = try Checkpoint.load(model, backend: backend)
        let ref = try reference.map { try Checkpoint.load($0, backend: backend).model }
        let (pairs, report) = try loadPreferencePairs(data, strict: options.strict)
        printJSONLReport(report, path: data, what: "pairs with an empty or identical reply")
        var heldOut: [PreferencePair]? = nil
        if let valData {
            let (held, heldReport) = try loadPreferencePairs(valData, strict: options.strict)
            printJSONLReport(heldReport, path: valData, what: "pairs with an empty or identical reply")
            heldOut = held
        }
        var config = options.config(defaultLR: 5e-6)
        config.beta = beta
        config.nllWeight = nllWeight
        config.preferenceLoss = loss
        config.labelSmoothing = labelSmoothing
        config.truncatePrompts = !skipLongPairs
        let summary = try PreferenceOptimization.run(model: loaded.model, reference: ref, codec: loaded.codec, pairs: pairs,
                                                     validation: heldOut, config: config, directory: out)
        print("dpo: \(summary.steps) steps in \(fmt(summary.seconds)) s; final loss \(fmt(summary.finalTrainLoss, 4))"
              + (summary.rewardAccuracy.map { acc in
                  let n = summary.validationExamples
                  let k = Int((acc * Double(n)).rounded())
                  return ", held-out reward accuracy \(fmt(100 * acc))% of \(n) pairs (\(BinomialStatistics.describeInterval(successes: k, total: n)))"
              } ?? "")
              + (summary.rewardMargin.map { ", margin \(fmt($0, 3))" } ?? "")
              + "; wrote \(out)")
    }
}

extension PreferenceLoss: ExpressibleByArgument {}
