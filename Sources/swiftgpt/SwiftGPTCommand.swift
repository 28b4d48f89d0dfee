import ArgumentParser

@main
struct SwiftGPTCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftgpt",
        abstract: "Train your own GPT from raw text and talk to it — all in Swift.",
        version: "0.1.0",
        subcommands: [BenchCommand.self]
    )
}
