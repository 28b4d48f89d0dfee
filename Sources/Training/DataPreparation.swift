// `swiftgpt prepare`: text files -> cleaned, tokenized train/val shards plus meta.json.
//
// Cleaning: \r\n and lone \r become \n; control characters other than tab and newline are removed;
// invalid UTF-8 bytes are dropped (and counted); optionally, exact duplicate documents are skipped.
// Documents are separated by <|endoftext|> when the tokenizer has it. The last --val-fraction of
// the token stream is the validation split (as nanoGPT splits shakespeare_char).

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Tokenizer

public struct DataMeta: Codable, Sendable, Equatable {
    public var tokenizer: String
    public var tokenizerKind: String
    public var vocabularySize: Int
    public var trainTokens: Int
    public var valTokens: Int
    public var documents: Int
    public var sources: [String]
    public var inputBytes: Int
    public var invalidBytesDropped: Int
    public var controlCharactersRemoved: Int
    public var duplicateDocumentsSkipped: Int
    public var valFraction: Double
    /// The document (1-based, in input order) in which the validation split begins: documents
    /// from there on are not trained on. nil in folders prepared before it was recorded.
    public var valFirstDocument: Int?

    enum CodingKeys: String, CodingKey {
        case tokenizer, documents, sources
        case tokenizerKind = "tokenizer_kind"
        case vocabularySize = "vocab_size"
        case trainTokens = "train_tokens"
        case valTokens = "val_tokens"
        case inputBytes = "input_bytes"
        case invalidBytesDropped = "invalid_bytes_dropped"
        case controlCharactersRemoved = "control_characters_removed"
        case duplicateDocumentsSkipped = "duplicate_documents_skipped"
        case valFraction = "val_fraction"
        case valFirstDocument = "val_first_document"
    }
}

public struct DataPreparation {
    public var inputs: [String]
    public var outputDirectory: String
    /// A tokenizer.json, or nil for a character vocabulary built from the data.
    public var tokenizerPath: String?
    public var valFraction: Double = 0.1
    public var deduplicate = false

    public init(inputs: [String], outputDirectory: String, tokenizerPath: String?) {
        self.inputs = inputs
        self.outputDirectory = outputDirectory
        self.tokenizerPath = tokenizerPath
    }

    /// Text cleaning state carried across the parts of a document.
    struct Cleaner {
        var invalidBytes = 0
        var controls = 0
        var previousWasCR = false

        mutating func clean(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
            var out = String.UnicodeScalarView()
            var parser = Unicode.UTF8.ForwardParser()
            var it = bytes.makeIterator()
            loop: while true {
                switch parser.parseScalar(from: &it) {
                case .valid(let encoded):
                    let s = Unicode.UTF8.decode(encoded)
                    let v = s.value
                    if v == 0x0D { out.append("\n"); previousWasCR = true; continue }
                    if v == 0x0A && previousWasCR { previousWasCR = false; continue }
                    previousWasCR = false
                    if v == 0x09 || v == 0x0A { out.append(s); continue }
                    if v < 0x20 || (v >= 0x7F && v < 0xA0) { controls += 1; continue }
                    out.append(s)
                case .error(let length):
                    invalidBytes += length
                case .emptyInput:
                    break loop
                }
            }
            return String(out)
        }
    }

    /// Runs the preparation; `progress(consumedBytes, totalBytes)` is called as input is read.
    public func run(progress: ((Int, Int) -> Void)? = nil) throws -> DataMeta {
        guard valFraction >= 0 && valFraction < 1 else { throw TrainingError.invalidSetting("--val-fraction must be in [0, 1)") }
        let reader = try CorpusReader(paths: inputs)
        guard reader.totalBytes > 0 else { throw TrainingError.badData(path: inputs.joined(separator: ", "), reason: "the inputs are empty") }
        do { try FileManager.default.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true) } catch {
            throw TrainingError.ioFailure(path: outputDirectory, reason: "could not create the folder")
        }
        var cleaner = Cleaner()
        var seen = Set<Int>()  // hashes of whole documents, for --dedupe
        var duplicates = 0
        var documents: [String] = []  // only kept for character vocabularies
        var current = ""
        var ids: [Int32] = []
        var documentStarts: [Int] = []  // token offset of each document's first token
        var documentCount = 0
        let codecFromFile: TextCodec? = try tokenizerPath.map { try TextCodec.load(path: $0) }

        func finish(_ text: String) throws {
            if deduplicate {
                var h = Hasher()
                h.combine(text)
                if !seen.insert(h.finalize()).inserted { duplicates += 1; return }
            }
            if text.isEmpty { return }
            documentCount += 1
            if let codec = codecFromFile {
                if let eot = codec.endOfText, !ids.isEmpty { ids.append(eot) }
                documentStarts.append(ids.count)
                ids += try codec.encode(text)
            } else {
                documents.append(text)
            }
        }

        try reader.forEachDocumentPart { part, ends, consumed in
            current += cleaner.clean(part)
            if ends {
                try finish(current)
                current = ""
                cleaner.previousWasCR = false
            }
            progress?(consumed, reader.totalBytes)
        }
        let codec: TextCodec
        if let codecFromFile {
            codec = codecFromFile
        } else {
            var scalars = Set<Unicode.Scalar>()
            for d in documents { for s in d.unicodeScalars { scalars.insert(s) } }
            codec = .characters(CharacterVocabulary(scalars: scalars))
            for d in documents { documentStarts.append(ids.count); ids += try codec.encode(d) }
        }
        guard ids.count >= 2 else { throw TrainingError.badData(path: inputs.joined(separator: ", "), reason: "fewer than 2 tokens after cleaning") }
        let valCount = Int((Double(ids.count) * valFraction).rounded())
        let trainIDs = Array(ids[0..<(ids.count - valCount)])
        let valIDs = Array(ids[(ids.count - valCount)...])
        // The last document starting at or before the split (a document may straddle it).
        let valFirstDocument = valCount == 0 ? nil : documentStarts.lastIndex(where: { $0 <= ids.count - valCount }).map { $0 + 1 }
        try TokenShard.write(trainIDs, vocabularySize: codec.vocabularySize, to: outputDirectory + "/train.bin")
        try TokenShard.write(valIDs, vocabularySize: codec.vocabularySize, to: outputDirectory + "/val.bin")
        try codec.save(to: outputDirectory + "/tokenizer.json")
        let meta = DataMeta(tokenizer: "tokenizer.json", tokenizerKind: codec.kind, vocabularySize: codec.vocabularySize,
                            trainTokens: trainIDs.count, valTokens: valIDs.count, documents: documentCount,
                            sources: reader.files, inputBytes: reader.totalBytes, invalidBytesDropped: cleaner.invalidBytes,
                            controlCharactersRemoved: cleaner.controls, duplicateDocumentsSkipped: duplicates,
                            valFraction: valFraction, valFirstDocument: valFirstDocument)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try AtomicFile.write(try encoder.encode(meta), to: outputDirectory + "/meta.json")
        return meta
    }

    /// Reads meta.json of a prepared data folder.
    public static func loadMeta(_ directory: String) throws -> DataMeta {
        let path = directory + "/meta.json"
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: path)) else {
            throw TrainingError.badData(path: directory, reason: "there is no meta.json; run `swiftgpt prepare` first")
        }
        do { return try JSONDecoder().decode(DataMeta.self, from: data) } catch {
            throw TrainingError.badData(path: path, reason: "meta.json is malformed (\(error))")
        }
    }
}
