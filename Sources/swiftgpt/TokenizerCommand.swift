import ArgumentParser
import Tokenizer

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct TokenizerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Train, use and inspect byte-level BPE tokenizers (Hugging Face tokenizer.json).",
        subcommands: [TokenizerTrainCommand.self, TokenizerEncodeCommand.self, TokenizerDecodeCommand.self,
                      TokenizerInspectCommand.self]
    )
}

struct TokenizerOption: ParsableArguments {
    @Option(name: .long, help: "A tokenizer.json file.") var tokenizer: String

    func load() throws -> BPE { try BPE.loadHuggingFace(path: tokenizer) }
}

struct TokenizerTrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a byte-level BPE tokenizer on text files and save it as tokenizer.json.",
        discussion: """
            Reads .txt and .jsonl (a "text" field per line) files and folders as a stream, splits the \
            text with the GPT-2 or GPT-4 (cl100k) pattern, counts pieces on every core and learns \
            merges until the vocabulary has --vocab-size tokens: 256 bytes, the merges, then the special \
            tokens. Without --special, the chat format's tokens are added (\(ChatTokens.all.joined(separator: " "))).
            """
    )

    @Option(name: .long, parsing: .upToNextOption, help: "Text files or folders (.txt, .jsonl).") var input: [String]
    @Option(name: .long, help: "Vocabulary size including the 256 byte tokens and special tokens.") var vocabSize: Int
    @Option(name: .long, help: "Where to write tokenizer.json.") var output: String
    @Option(name: .long, help: "Split pattern: gpt2 or gpt4.") var pattern: String = "gpt4"
    @Option(name: .long, parsing: .upToNextOption, help: "Special tokens (default: the chat format's).") var special: [String] = []
    @Option(name: .long, help: "Threads for counting (default: all cores).") var threads: Int?

    func run() async throws {
        guard !input.isEmpty else { throw ValidationError("give at least one --input file or folder") }
        guard let split = SplitPattern(rawValue: pattern) else { throw ValidationError("--pattern must be gpt2 or gpt4") }
        let trainer = BPETrainer(vocabularySize: vocabSize, pattern: split, specialTokens: special.isEmpty ? ChatTokens.all : special)
        try trainer.validate()
        let reader = try CorpusReader(paths: input)
        let workers = threads ?? max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        var counts = PieceCounts()
        let start = Clock.now()
        let progress = ProgressLine()
        try reader.forEachBlock { block, consumed in
            counts.count(block, pattern: split, threads: workers)
            let elapsed = Clock.now() - start
            let rate = Double(consumed) / max(elapsed, 1e-9)
            let eta = Double(reader.totalBytes - consumed) / max(rate, 1)
            progress.show("counting \(consumed >> 20)/\(reader.totalBytes >> 20) MB, \(fmt(rate / 1_048_576)) MB/s, ETA \(fmt(eta, 0)) s")
        }
        let counted = Clock.now()
        progress.show("counted \(counts.distinctCount) distinct pieces in \(fmt(counted - start)) s; merging…")
        var lastShown = 0.0
        let bpe = try trainer.train(counts) { done, total in
            let now = Clock.now()
            if now - lastShown > 0.5 || done == total {
                lastShown = now
                progress.show("merges \(done)/\(total)")
            }
        }
        try bpe.saveHuggingFace(to: output)
        progress.finish()
        print("trained \(bpe.vocabularySize) tokens (\(bpe.merges.count) merges, \(bpe.specialTokens.count) special) "
              + "from \(fmt(Double(reader.totalBytes) / 1_048_576)) MB in \(fmt(Clock.now() - start)) s "
              + "(counting \(fmt(counted - start)) s); wrote \(output)")
    }
}

struct TokenizerEncodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode",
        abstract: "Turn text into token ids.",
        discussion: "Special-token text is encoded as ordinary text unless --allow-special is given."
    )
    @OptionGroup var tokenizer: TokenizerOption
    @Option(name: .long, help: "Text to encode.") var text: String?
    @Option(name: .long, help: "A file to encode instead of --text.") var input: String?
    @Flag(name: .long, help: "Recognise special tokens in the text.") var allowSpecial = false
    @Flag(name: .long, help: "Print {\"ids\":[...]}.") var json = false

    func run() async throws {
        let bpe = try tokenizer.load()
        let source: String
        switch (text, input) {
        case (let t?, nil): source = t
        case (nil, let path?): source = try readTextFile(path)
        default: throw ValidationError("give exactly one of --text or --input")
        }
        let ids = try bpe.encode(source, allowedSpecial: allowSpecial ? Set(bpe.specialTokens.keys) : [])
        if json {
            print(try jsonLine(["ids": ids]))
        } else {
            print(ids.map(String.init).joined(separator: ","))
        }
    }
}

struct TokenizerDecodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "decode", abstract: "Turn token ids back into text.")
    @OptionGroup var tokenizer: TokenizerOption
    @Option(name: .long, help: "Comma-separated token ids, e.g. 1,2,3.") var ids: String

    func run() async throws {
        let bpe = try tokenizer.load()
        var parsed: [Int32] = []
        for part in ids.split(separator: ",") {
            guard let id = Int32(part.filter { $0 != " " }) else {
                throw ValidationError("'\(part)' is not a token id; use comma-separated integers like 1,2,3")
            }
            parsed.append(id)
        }
        print(try bpe.decode(parsed))
    }
}

struct TokenizerInspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show how a text splits into tokens, and the compression ratio.",
        discussion: "In a terminal, tokens alternate colours; otherwise they are separated by '|'."
    )
    @OptionGroup var tokenizer: TokenizerOption
    @Option(name: .long, help: "Text to inspect.") var text: String

    func run() async throws {
        let bpe = try tokenizer.load()
        let ids = try bpe.encode(text, allowedSpecial: Set(bpe.specialTokens.keys))
        var decoder = StreamingDecoder(bpe)
        let colours = ["\u{1B}[30;46m", "\u{1B}[30;43m"]
        let tty = isatty(1) == 1
        var line = ""
        var shownCount = 0
        for id in ids {
            // A character split over several tokens is shown once, with the token that completes it.
            let piece = try decoder.push(id)
            if piece.isEmpty { continue }
            let shown = piece.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "↵\n")
            line += tty ? colours[shownCount % 2] + shown + "\u{1B}[0m" : (shownCount == 0 ? "" : "|") + shown
            shownCount += 1
        }
        line += decoder.finish()
        print(line)
        let bytes = text.utf8.count
        print("\(ids.count) tokens, \(bytes) bytes, \(fmt(Double(bytes) / Double(max(ids.count, 1)), 2)) bytes/token")
        print("ids: " + ids.map(String.init).joined(separator: " "))
    }
}

/// A whole UTF-8 text file (invalid bytes become U+FFFD).
func readTextFile(_ path: String) throws -> String {
    guard let file = fopen(path, "rb") else { throw ValidationError("cannot open \(path): \(String(cString: strerror(errno)))") }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, 1 << 16, file) }
        if n == 0 { break }
        bytes += chunk[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// A status line on standard error, rewritten in place when it is a terminal.
final class ProgressLine {
    private let tty = isatty(2) == 1
    private var last = 0.0

    func show(_ text: String) {
        let now = Clock.now()
        if !tty && now - last < 5 { return }
        last = now
        printErrorRaw(tty ? "\r\u{1B}[K" + text : text + "\n")
    }

    func finish() { if tty { printErrorRaw("\n") } }
}

func printErrorRaw(_ text: String) {
    _ = text.withCString { write(2, $0, strlen($0)) }
}
