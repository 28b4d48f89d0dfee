import ArgumentParser
import Training

struct PrepareCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare",
        abstract: "Clean and tokenize text into train/val token shards for `swiftgpt train`.",
        discussion: """
            Reads .txt files (one document each) and .jsonl files (a "text" field per line, one document \
            each), and folders of them, as a stream. Cleans the text (newlines normalised, control \
            characters other than tab/newline removed, invalid UTF-8 dropped and counted), separates \
            documents with <|endoftext|> when the tokenizer has it, and writes DIR/train.bin, \
            DIR/val.bin (the last --val-fraction of the tokens), DIR/tokenizer.json and DIR/meta.json. \
            With --char the vocabulary is the set of characters in the data (nanoGPT's shakespeare_char).
            """
    )

    @Option(name: .long, parsing: .upToNextOption, help: "Text files or folders (.txt, .jsonl).") var input: [String]
    @Option(name: .long, help: "Output folder.") var output: String
    @Option(name: .long, help: "A tokenizer.json (from `swiftgpt tokenizer train`).") var tokenizer: String?
    @Flag(name: .long, help: "Character-level vocabulary built from the data.") var char = false
    @Option(name: .long, help: "Fraction of the tokens held out for validation (the end of the stream).") var valFraction: Double = 0.1
    @Flag(name: .long, help: "Skip exact duplicate documents.") var dedupe = false

    func run() async throws {
        guard !input.isEmpty else { throw ValidationError("give at least one --input file or folder") }
        guard (tokenizer != nil) != char else { throw ValidationError("give exactly one of --tokenizer FILE or --char") }
        var job = DataPreparation(inputs: input, outputDirectory: output, tokenizerPath: tokenizer)
        job.valFraction = valFraction
        job.deduplicate = dedupe
        let start = Clock.now()
        let progress = ProgressLine()
        let meta = try job.run { consumed, total in
            let elapsed = Clock.now() - start
            let rate = Double(consumed) / max(elapsed, 1e-9)
            progress.show("reading \(consumed >> 20)/\(total >> 20) MB, \(fmt(rate / 1e6)) MB/s, ETA \(fmt(Double(total - consumed) / max(rate, 1), 0)) s")
        }
        progress.finish()
        print("prepared \(meta.documents) documents: \(meta.trainTokens) train + \(meta.valTokens) val tokens, "
              + "vocabulary \(meta.vocabularySize) (\(meta.tokenizerKind)) in \(fmt(Clock.now() - start)) s; "
              + "dropped \(meta.invalidBytesDropped) invalid bytes, \(meta.controlCharactersRemoved) control characters, "
              + "\(meta.duplicateDocumentsSkipped) duplicate documents; wrote \(output)")
        if let first = meta.valFirstDocument {
            // The split is by position: say which documents training will not (fully) see.
            print("validation split: the last \(meta.valTokens) tokens, from document \(first) of \(meta.documents) (input order) "
                  + "to the end; training does not see them — list text meant for training first, or change --val-fraction")
        }
    }
}
