import ArgumentParser
import Evaluation
import Compute
import Training

struct MergeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Average the weights of several models of one architecture (model soup, checkpoint averaging).",
        discussion: """
            Writes θ = Σ wᵢ θᵢ / Σ wᵢ as a new checkpoint folder that every other command uses. The models \
            must share the architecture and the tokenizer: several fine-tunes of one pre-trained model \
            (e.g. `sft` with different --seed), or checkpoints along one run (`train --keep-checkpoints`). \
            Each --models entry is a run or checkpoint folder (a run resolves to best/, then last/). \
            The tensors are averaged one at a time from the files (memory: one model plus one tensor). \
            OUT/merge.json records the sources and the normalised weights.
            """
    )

    @Option(parsing: .upToNextOption, help: "Two or more run or checkpoint folders.") var models: [String]
    @Option(help: "Where to write the averaged checkpoint (a new folder).") var out: String
    @Option(parsing: .upToNextOption, help: "One weight per model (default: equal); normalised to sum to 1.")
    var weights: [Double] = []

    func validate() throws {
        guard models.count >= 2 else { throw ValidationError("--models needs at least two folders, got \(models.count)") }
        guard weights.isEmpty || weights.count == models.count else {
            throw ValidationError("--weights has \(weights.count) values for \(models.count) models; give one per model or none")
        }
    }

    func run() async throws {
        let start = Clock.now()
        let report = try ModelMerge.average(models, weights: weights.isEmpty ? nil : weights, to: out)
        for (source, w) in zip(report.sources, report.weights) { print("  \(fmt(w, 4)) × \(source)") }
        // Fine-tunes of one task keep their prompt: the soup is asked what its members learned.
        let records = try report.sources.map { try TaskRecord.find(near: $0)?.record }
        if let first = records.first ?? nil, records.allSatisfy({ $0 == first }) {
            try first.write(toRun: out)
            print("kept the \(first.task) prompt its models were fine-tuned with (\(out)/\(TaskRecord.fileName))")
        }
        let c = report.config
        print("merged \(report.sources.count) models (\(fmt(Double(report.parameterCount) / 1e6, 2))M parameters: "
              + "\(c.layers) layers, \(c.heads) heads, width \(c.width)) into \(out) in \(fmt(Clock.now() - start, 1)) s")
        print("next: swiftgpt eval --model \(out) --task perplexity --data FILE")
    }
}
