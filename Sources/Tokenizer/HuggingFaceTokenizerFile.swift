// Hugging Face tokenizer.json for byte-level BPE: write what `tokenizers` reproduces exactly (a
// Split regex followed by ByteLevel without its own regex), and read such files back, including
// GPT-2-style files whose ByteLevel pre-tokenizer applies the GPT-2 regex itself.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension BPE {
    /// The tokenizer.json text.
    public func huggingFaceJSON() throws -> Data {
        var vocab: [String: Int] = [:]
        var added: [AddedToken] = []
        let specialIDs = Set(specialTokens.values)
        for (id, bytes) in tokenBytes.enumerated() {
            if specialIDs.contains(Int32(id)) { continue }
            vocab[ByteLevelAlphabet.encode(bytes)] = id
        }
        for (text, id) in specialTokens.sorted(by: { $0.value < $1.value }) {
            added.append(AddedToken(id: Int(id), content: text))
        }
        let file = HFTokenizerFile(
            version: "1.0",
            addedTokens: added,
            preTokenizer: HFPreTokenizer(type: "Sequence", pretokenizers: [
                HFPreTokenizer(type: "Split", pattern: HFPattern(regex: pattern.huggingFaceRegex), behavior: "Isolated", invert: false),
                HFPreTokenizer(type: "ByteLevel", addPrefixSpace: false, trimOffsets: true, useRegex: false),
            ]),
            decoder: HFDecoder(type: "ByteLevel", addPrefixSpace: true, trimOffsets: true, useRegex: true),
            model: HFModel(type: "BPE", vocab: vocab,
                           merges: merges.map { [ByteLevelAlphabet.encode(tokenBytes[Int($0.left)]),
                                                 ByteLevelAlphabet.encode(tokenBytes[Int($0.right)])] },
                           fuseUnk: false, byteFallback: false, ignoreMerges: false))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(file)
    }

    /// Writes tokenizer.json atomically (temporary file, then rename).
    public func saveHuggingFace(to path: String) throws {
        let data = try huggingFaceJSON()
        do { try data.write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw TokenizerError.unreadableFile(path: path, reason: "could not write it (\(error))")
        }
    }

    /// Reads a byte-level BPE tokenizer.json.
    public static func loadHuggingFace(path: String) throws -> BPE {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw TokenizerError.unreadableFile(path: path, reason: "the file could not be opened")
        }
        return try loadHuggingFace(data: data, path: path)
    }

    public static func loadHuggingFace(data: Data, path: String = "<memory>") throws -> BPE {
        let file: HFTokenizerFile
        do { file = try JSONDecoder().decode(HFTokenizerFile.self, from: data) } catch {
            throw TokenizerError.malformedFile(path: path, reason: "its JSON does not have the tokenizer.json structure (\(error))")
        }
        guard file.model.type == nil || file.model.type == "BPE" else {
            throw TokenizerError.unsupportedFormat(path: path, reason: "model type \(file.model.type ?? "?"), only BPE is supported")
        }
        guard file.model.byteFallback != true else {
            throw TokenizerError.unsupportedFormat(path: path, reason: "byte_fallback BPE (SentencePiece style) is not byte-level BPE")
        }
        guard file.model.ignoreMerges != true else {
            throw TokenizerError.unsupportedFormat(path: path, reason: "ignore_merges BPE (whole words looked up before merging) is not supported yet")
        }
        let pattern = try detectPattern(file.preTokenizer, path: path)
        guard let vocab = file.model.vocab, !vocab.isEmpty else {
            throw TokenizerError.malformedFile(path: path, reason: "model.vocab is missing or empty")
        }
        let size = max(vocab.values.max() ?? 0, file.addedTokens?.map(\.id).max() ?? 0) + 1
        guard size <= 10_000_000 else { throw TokenizerError.malformedFile(path: path, reason: "token id \(size - 1) is implausibly large") }
        var tokenBytes = [[UInt8]?](repeating: nil, count: size)
        for (text, id) in vocab {
            guard id >= 0 else { throw TokenizerError.malformedFile(path: path, reason: "negative id for token \(text.debugDescription)") }
            guard let bytes = ByteLevelAlphabet.decode(text) else {
                throw TokenizerError.unsupportedFormat(path: path, reason: "token \(text.debugDescription) is not in the byte-level alphabet")
            }
            tokenBytes[id] = bytes
        }
        var specials: [String: Int32] = [:]
        for token in file.addedTokens ?? [] {
            guard token.id >= 0 else { throw TokenizerError.malformedFile(path: path, reason: "negative id for added token \(token.content)") }
            if specials[token.content] != nil { throw TokenizerError.duplicateSpecialToken(token.content) }
            specials[token.content] = Int32(token.id)
            tokenBytes[token.id] = Array(token.content.utf8)
        }
        if let missing = tokenBytes.firstIndex(where: { $0 == nil }) {
            throw TokenizerError.malformedFile(path: path, reason: "token id \(missing) has no token (ids must be contiguous)")
        }
        return try build()

        func build() throws -> BPE {
            let bytes = tokenBytes.map { $0! }
            var lookup: [String: Int32] = [:]
            for (text, id) in vocab { lookup[text] = Int32(id) }
            var merges: [(left: Int32, right: Int32, result: Int32)] = []
            merges.reserveCapacity(file.model.merges?.count ?? 0)
            for (r, pair) in (file.model.merges ?? []).enumerated() {
                guard pair.count == 2, let l = lookup[pair[0]], let rr = lookup[pair[1]], let z = lookup[pair[0] + pair[1]] else {
                    throw TokenizerError.malformedFile(path: path, reason: "merge \(r) \(pair) refers to tokens missing from the vocabulary")
                }
                merges.append((l, rr, z))
            }
            return try BPE(tokenBytes: bytes, merges: merges, specialTokens: specials, pattern: pattern, source: path)
        }
    }

    static func detectPattern(_ pre: HFPreTokenizer?, path: String) throws -> SplitPattern {
        guard let pre else { throw TokenizerError.unsupportedFormat(path: path, reason: "no pre_tokenizer (byte-level BPE needs one)") }
        func fromRegex(_ regex: String) throws -> SplitPattern {
            if let p = SplitPattern.allCases.first(where: { $0.equivalentRegexes.contains(regex) }) { return p }
            throw TokenizerError.unsupportedFormat(path: path, reason: "split regex \(regex.debugDescription) is not one SwiftGPT reproduces (gpt2, gpt4)")
        }
        switch pre.type {
        case "ByteLevel":
            if pre.useRegex == false { throw TokenizerError.unsupportedFormat(path: path, reason: "ByteLevel without a split regex") }
            return .gpt2
        case "Sequence":
            let parts = pre.pretokenizers ?? []
            guard parts.count == 2, parts[0].type == "Split", let regex = parts[0].pattern?.regex, parts[1].type == "ByteLevel",
                  parts[1].useRegex == false, parts[1].addPrefixSpace != true
            else { throw TokenizerError.unsupportedFormat(path: path, reason: "pre_tokenizer must be Split(regex) then ByteLevel(use_regex: false)") }
            return try fromRegex(regex)
        default:
            throw TokenizerError.unsupportedFormat(path: path, reason: "pre_tokenizer type \(pre.type)")
        }
    }
}

// MARK: tokenizer.json structure (the parts SwiftGPT reads and writes)

struct AddedToken: Codable {
    var id: Int
    var content: String
    var singleWord = false, lstrip = false, rstrip = false, normalized = false, special = true

    init(id: Int, content: String) {
        self.id = id
        self.content = content
    }

    enum CodingKeys: String, CodingKey {
        case id, content, lstrip, rstrip, normalized, special
        case singleWord = "single_word"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(Int.self, forKey: .id)
        content = try c.decode(String.self, forKey: .content)
        special = try c.decodeIfPresent(Bool.self, forKey: .special) ?? true
    }
}

struct HFPattern: Codable {
    var regex: String?
    var string: String?
    init(regex: String) { self.regex = regex }
    enum CodingKeys: String, CodingKey {
        case regex = "Regex"
        case string = "String"
    }
}

final class HFPreTokenizer: Codable {
    var type: String
    var pretokenizers: [HFPreTokenizer]?
    var pattern: HFPattern?
    var behavior: String?
    var invert: Bool?
    var addPrefixSpace: Bool?
    var trimOffsets: Bool?
    var useRegex: Bool?

    init(type: String, pretokenizers: [HFPreTokenizer]? = nil, pattern: HFPattern? = nil, behavior: String? = nil,
         invert: Bool? = nil, addPrefixSpace: Bool? = nil, trimOffsets: Bool? = nil, useRegex: Bool? = nil) {
        self.type = type
        self.pretokenizers = pretokenizers
        self.pattern = pattern
        self.behavior = behavior
        self.invert = invert
        self.addPrefixSpace = addPrefixSpace
        self.trimOffsets = trimOffsets
        self.useRegex = useRegex
    }

    enum CodingKeys: String, CodingKey {
        case type, pretokenizers, pattern, behavior, invert
        case addPrefixSpace = "add_prefix_space"
        case trimOffsets = "trim_offsets"
        case useRegex = "use_regex"
    }
}

struct HFDecoder: Codable {
    var type: String
    var addPrefixSpace: Bool?
    var trimOffsets: Bool?
    var useRegex: Bool?
    enum CodingKeys: String, CodingKey {
        case type
        case addPrefixSpace = "add_prefix_space"
        case trimOffsets = "trim_offsets"
        case useRegex = "use_regex"
    }
}

struct HFModel: Codable {
    var type: String?
    var vocab: [String: Int]?
    var merges: [[String]]?
    var fuseUnk: Bool?
    var byteFallback: Bool?
    var ignoreMerges: Bool?

    init(type: String, vocab: [String: Int], merges: [[String]], fuseUnk: Bool, byteFallback: Bool, ignoreMerges: Bool) {
        self.type = type
        self.vocab = vocab
        self.merges = merges
        self.fuseUnk = fuseUnk
        self.byteFallback = byteFallback
        self.ignoreMerges = ignoreMerges
    }

    enum CodingKeys: String, CodingKey {
        case type, vocab, merges, dropout
        case fuseUnk = "fuse_unk"
        case byteFallback = "byte_fallback"
        case ignoreMerges = "ignore_merges"
        case unkToken = "unk_token"
        case continuingSubwordPrefix = "continuing_subword_prefix"
        case endOfWordSuffix = "end_of_word_suffix"
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(type ?? "BPE", forKey: .type)
        try c.encodeNil(forKey: .dropout)
        try c.encodeNil(forKey: .unkToken)
        try c.encodeNil(forKey: .continuingSubwordPrefix)
        try c.encodeNil(forKey: .endOfWordSuffix)
        try c.encode(fuseUnk ?? false, forKey: .fuseUnk)
        try c.encode(byteFallback ?? false, forKey: .byteFallback)
        try c.encode(ignoreMerges ?? false, forKey: .ignoreMerges)
        try c.encode(vocab ?? [:], forKey: .vocab)
        try c.encode(merges ?? [], forKey: .merges)
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        type = try c.decodeIfPresent(String.self, forKey: .type)
        vocab = try c.decodeIfPresent([String: Int].self, forKey: .vocab)
        fuseUnk = try c.decodeIfPresent(Bool.self, forKey: .fuseUnk)
        byteFallback = try c.decodeIfPresent(Bool.self, forKey: .byteFallback)
        ignoreMerges = try c.decodeIfPresent(Bool.self, forKey: .ignoreMerges)
        // Merges are ["a", "b"] pairs in current files and "a b" strings in older ones.
        if let pairs = try? c.decodeIfPresent([[String]].self, forKey: .merges) {
            merges = pairs
        } else if let lines = try c.decodeIfPresent([String].self, forKey: .merges) {
            merges = try lines.map { line in
                let parts = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                guard parts.count == 2 else {
                    throw DecodingError.dataCorruptedError(forKey: .merges, in: c, debugDescription: "merge \(line.debugDescription) is not two tokens")
                }
                return parts
            }
        }
    }
}

struct HFTokenizerFile: Codable {
    var version: String?
    var addedTokens: [AddedToken]?
    var preTokenizer: HFPreTokenizer?
    var decoder: HFDecoder?
    var model: HFModel
    enum CodingKeys: String, CodingKey {
        case version, decoder, model, truncation, padding, normalizer
        case addedTokens = "added_tokens"
        case preTokenizer = "pre_tokenizer"
        case postProcessor = "post_processor"
    }

    init(version: String?, addedTokens: [AddedToken]?, preTokenizer: HFPreTokenizer?, decoder: HFDecoder?, model: HFModel) {
        self.version = version
        self.addedTokens = addedTokens
        self.preTokenizer = preTokenizer
        self.decoder = decoder
        self.model = model
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decodeIfPresent(String.self, forKey: .version)
        addedTokens = try c.decodeIfPresent([AddedToken].self, forKey: .addedTokens)
        preTokenizer = try c.decodeIfPresent(HFPreTokenizer.self, forKey: .preTokenizer)
        self.decoder = try c.decodeIfPresent(HFDecoder.self, forKey: .decoder)
        model = try c.decode(HFModel.self, forKey: .model)
    }

    /// Hugging Face writes every top-level key, null when unused; so do we.
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(version ?? "1.0", forKey: .version)
        try c.encodeNil(forKey: .truncation)
        try c.encodeNil(forKey: .padding)
        try c.encode(addedTokens ?? [], forKey: .addedTokens)
        try c.encodeNil(forKey: .normalizer)
        try c.encode(preTokenizer, forKey: .preTokenizer)
        try c.encodeNil(forKey: .postProcessor)
        try c.encode(decoder, forKey: .decoder)
        try c.encode(model, forKey: .model)
    }
}
