// How a run turns text into ids: a byte-level BPE tokenizer, or a character vocabulary
// (nanoGPT's shakespeare_char style). Stored as tokenizer.json in data and checkpoint folders.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Tokenizer

/// Characters of a corpus, sorted by code point; id = position.
public struct CharacterVocabulary: Codable, Sendable, Equatable {
    public let characters: [String]  // one Unicode scalar each

    public init(scalars: Set<Unicode.Scalar>) {
        characters = scalars.sorted { $0.value < $1.value }.map { String($0) }
    }

    enum CodingKeys: String, CodingKey { case characters = "swiftgpt_character_vocabulary" }
}

public enum TextCodec: Sendable {
    case bpe(BPE)
    case characters(CharacterVocabulary, index: [UInt32: Int32])

    public static func characters(_ vocabulary: CharacterVocabulary) -> TextCodec {
        var index: [UInt32: Int32] = [:]
        for (i, c) in vocabulary.characters.enumerated() { index[c.unicodeScalars.first!.value] = Int32(i) }
        return .characters(vocabulary, index: index)
    }

    public var vocabularySize: Int {
        switch self {
        case .bpe(let b): return b.vocabularySize
        case .characters(let v, _): return v.characters.count
        }
    }

    /// The document separator token, when the codec has one.
    public var endOfText: Int32? {
        if case .bpe(let b) = self { return b.specialTokens[ChatTokens.endOfText] }
        return nil
    }

    public var kind: String {
        switch self {
        case .bpe: return "bpe"
        case .characters: return "char"
        }
    }

    /// Ids of a text. Characters outside a character vocabulary are an error naming them.
    public func encode(_ text: String) throws -> [Int32] {
        switch self {
        case .bpe(let b): return try b.encode(text)
        case .characters(_, let index):
            var out: [Int32] = []
            out.reserveCapacity(text.unicodeScalars.count)
            for s in text.unicodeScalars {
                guard let id = index[s.value] else {
                    throw TrainingError.invalidSetting("the character \(String(s).debugDescription) (U+\(String(s.value, radix: 16, uppercase: true))) is not in this model's character vocabulary")
                }
                out.append(id)
            }
            return out
        }
    }

    public func decode(_ ids: [Int32]) throws -> String {
        switch self {
        case .bpe(let b): return try b.decode(ids)
        case .characters(let v, _):
            var s = ""
            for id in ids {
                guard id >= 0, Int(id) < v.characters.count else {
                    throw TrainingError.invalidSetting("token id \(id) is outside the character vocabulary (0..<\(v.characters.count))")
                }
                s += v.characters[Int(id)]
            }
            return s
        }
    }

    /// The UTF-8 bytes one token stands for (a BPE token may hold part of a character).
    public func bytes(of id: Int32) throws -> [UInt8] {
        switch self {
        case .bpe(let b):
            guard id >= 0, Int(id) < b.vocabularySize else {
                throw TrainingError.invalidSetting("token id \(id) is outside the vocabulary (0..<\(b.vocabularySize))")
            }
            return b.tokenBytes[Int(id)]
        case .characters(let v, _):
            guard id >= 0, Int(id) < v.characters.count else {
                throw TrainingError.invalidSetting("token id \(id) is outside the character vocabulary (0..<\(v.characters.count))")
            }
            return Array(v.characters[Int(id)].utf8)
        }
    }

    public func save(to path: String) throws {
        switch self {
        case .bpe(let b): try AtomicFile.write(try b.huggingFaceJSON(), to: path)
        case .characters(let v, _):
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try AtomicFile.write(try encoder.encode(v), to: path)
        }
    }

    /// Reads either kind of tokenizer.json.
    public static func load(path: String) throws -> TextCodec {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw TrainingError.badData(path: path, reason: "the tokenizer file could not be opened")
        }
        if let v = try? JSONDecoder().decode(CharacterVocabulary.self, from: data) { return .characters(v) }
        return .bpe(try BPE.loadHuggingFace(data: data, path: path))
    }
}
