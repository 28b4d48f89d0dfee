import ArgumentParser
import Compute

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the hot paths: matrix products, training steps, generation and the tokenizer.",
        discussion: """
            Benchmarks report; tests assert. Each prints a human-readable summary, or with --json \
            exactly one JSON object on the last line of stdout. Compare with the PyTorch peer scripts \
            in Tools/reference/ run on the same machine.
            """,
        subcommands: [BenchMatmulCommand.self, BenchTrainCommand.self, BenchGenerateCommand.self, BenchTokenizerCommand.self]
    )
}
