import ArgumentParser
import CSupport
import Compute

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
enum Entry {
    static func main() async {
        sgpt_line_buffer_stdout()  // progress lines appear as they are printed, also in a pipe or file
        #if arch(x86_64) && !DEBUG
        // Release builds are compiled for AVX2 + FMA (see Package.swift).
        if !CPUFeatures.current.avx2 {
            printError("error: this build of swiftgpt needs a CPU with AVX2 and FMA (\(CPUFeatures.current)).\n"
                       + "HINT: build in debug mode (swift build) or remove the -target-cpu flag in Package.swift.")
            exit(1)
        }
        #endif
        await SwiftGPTCommand.main()
    }
}

struct SwiftGPTCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftgpt",
        abstract: "Train your own GPT from raw text and talk to it — all in Swift.",
        version: "0.1.0",
        subcommands: [TokenizerCommand.self, PrepareCommand.self, TrainCommand.self, QuickstartCommand.self, GenerateCommand.self, ChatCommand.self, SFTCommand.self, DPOCommand.self, EvalCommand.self, ServeCommand.self, ConvertCommand.self, MergeCommand.self, BenchCommand.self]
    )
}
