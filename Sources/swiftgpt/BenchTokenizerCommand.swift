import ArgumentParser
import Dispatch
import Compute
import Tokenizer

struct BenchTokenizerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Tokenizer speed: encode MB/s on one thread and on all cores, and training seconds.",
        discussion: """
            Trains a tokenizer on --input (vocabulary --vocab-size) unless --tokenizer is given, then \
            encodes the text split into documents at blank lines: one thread, then all cores (documents \
            spread over threads). Compare with Tools/reference/bench_tokenizers.py (tiktoken, HF tokenizers).
            """
    )

    @Option(help: "A tokenizer.json to use instead of training one.") var tokenizer: String?
    @Option(help: "Text file to train on and encode.") var input: String
    @Option(help: "Vocabulary size when training.") var vocabSize: Int = 4096
    @Option(help: "Split pattern when training: gpt2 or gpt4.") var pattern: String = "gpt4"
    @Option(help: "Timed repetitions (median reported).") var repeats: Int = 3
    @Option(name: .customLong("documents"), help: "Split the input into about this many documents at blank lines.")
    var documentCount: Int = 1000
    @Flag(help: "Print one JSON object on the last line.") var json = false

    func run() async throws {
        guard let split = SplitPattern(rawValue: pattern) else { throw ValidationError("--pattern must be gpt2 or gpt4") }
        let text = Array(try readTextFile(input).utf8)
        var trainSeconds: Double? = nil
        let bpe: BPE
        if let tokenizer {
            bpe = try BPE.loadHuggingFace(path: tokenizer)
        } else {
            let t0 = Clock.now()
            var counts = PieceCounts()
            text.withUnsafeBufferPointer { counts.count($0, pattern: split, threads: Parallel.threadCount) }
            bpe = try BPETrainer(vocabularySize: vocabSize, pattern: split, specialTokens: ChatTokens.all).train(counts)
            trainSeconds = Clock.now() - t0
        }
        // About --documents documents, each cut at a blank line (as the Python peer does).
        var documents: [Range<Int>] = []
        let target = max(1, text.count / max(1, documentCount))
        var start = 0
        var i = 0
        while i + 1 < text.count {
            if i - start >= target && text[i] == 0x0A && text[i + 1] == 0x0A {
                documents.append(start..<(i + 2))
                start = i + 2
                i += 2
            } else {
                i += 1
            }
        }
        if start < text.count { documents.append(start..<text.count) }
        let megabytes = Double(text.count) / 1e6  // MB (10^6 bytes), as the Python peer reports
        var tokenCount = 0
        func timeOne() -> Double {
            let t0 = Clock.now()
            var total = 0
            text.withUnsafeBufferPointer { all in
                var ids: [Int32] = []
                for d in documents {
                    ids.removeAll(keepingCapacity: true)
                    bpe.encodeOrdinary(UnsafeBufferPointer(rebasing: all[d]), into: &ids)
                    total += ids.count
                }
            }
            tokenCount = total
            return Clock.now() - t0
        }
        func timeAll() -> Double {
            let t0 = Clock.now()
            let threads = Parallel.threadCount
            let docs = documents
            text.withUnsafeBufferPointer { all in
                let source = SendableBytes(buffer: all)
                DispatchQueue.concurrentPerform(iterations: threads) { t in
                    var ids: [Int32] = []
                    var d = t
                    while d < docs.count {
                        ids.removeAll(keepingCapacity: true)
                        bpe.encodeOrdinary(UnsafeBufferPointer(rebasing: source.buffer[docs[d]]), into: &ids)
                        d += threads
                    }
                }
            }
            return Clock.now() - t0
        }
        _ = timeOne()
        let one = (0..<repeats).map { _ in timeOne() }.sorted()[repeats / 2]
        let all = (0..<repeats).map { _ in timeAll() }.sorted()[repeats / 2]
        let result = TokenizerBenchResult(
            encodeMBPerSec1t: megabytes / one, encodeMBPerSecAll: megabytes / all, trainSeconds: trainSeconds,
            inputMB: megabytes, vocabSize: bpe.vocabularySize, tokens: tokenCount, documents: documents.count,
            threads: Parallel.threadCount)
        if json {
            print(try jsonLine(result))
        } else {
            print("input \(fmt(megabytes)) MB, \(documents.count) documents, vocabulary \(bpe.vocabularySize), \(tokenCount) tokens "
                  + "(\(fmt(Double(text.count) / Double(max(tokenCount, 1)), 2)) bytes/token)")
            if let trainSeconds { print("training: \(fmt(trainSeconds, 2)) s") }
            print("encode: \(fmt(result.encodeMBPerSec1t)) MB/s on one thread, \(fmt(result.encodeMBPerSecAll)) MB/s on \(Parallel.threadCount) threads")
        }
    }
}

struct SendableBytes: @unchecked Sendable { let buffer: UnsafeBufferPointer<UInt8> }

struct TokenizerBenchResult: Codable {
    var encodeMBPerSec1t: Double
    var encodeMBPerSecAll: Double
    var trainSeconds: Double?
    var inputMB: Double
    var vocabSize: Int
    var tokens: Int
    var documents: Int
    var threads: Int

    enum CodingKeys: String, CodingKey {
        case encodeMBPerSec1t = "encode_mb_per_sec_1t"
        case encodeMBPerSecAll = "encode_mb_per_sec_all"
        case trainSeconds = "train_seconds"
        case inputMB = "input_mb"
        case vocabSize = "vocab_size"
        case tokens, documents, threads
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(encodeMBPerSec1t, forKey: .encodeMBPerSec1t)
        try c.encode(encodeMBPerSecAll, forKey: .encodeMBPerSecAll)
        if let trainSeconds { try c.encode(trainSeconds, forKey: .trainSeconds) } else { try c.encodeNil(forKey: .trainSeconds) }
        try c.encode(inputMB, forKey: .inputMB)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(tokens, forKey: .tokens)
        try c.encode(documents, forKey: .documents)
        try c.encode(threads, forKey: .threads)
    }
}
