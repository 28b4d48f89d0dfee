// Reading the other byte-level BPE formats: tiktoken rank files and GPT-2's encoder.json +
// vocab.bpe.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension BPE {
    /// Reads a `.tiktoken` rank file ("base64-token rank" per line). tiktoken merges any adjacent
    /// pair whose concatenation is a token, lowest rank first; the merge table is built to do
    /// exactly that: every split of every token into two tokens is a merge at the token's rank.
    public static func loadTiktoken(path: String, pattern: SplitPattern = .gpt4,
                                    specialTokens: [String: Int32] = [:]) throws -> BPE {
        let text: String
        do { text = try String(decoding: Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self) } catch {
            throw TokenizerError.unreadableFile(path: path, reason: "the file could not be opened")
        }
        var byRank: [Int: [UInt8]] = [:]
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let rank = Int(parts[1]), rank >= 0, let bytes = Data(base64Encoded: String(parts[0])) else {
                throw TokenizerError.malformedFile(path: path, reason: "line \(number + 1) is not 'base64-token rank'")
            }
            if byRank[rank] != nil { throw TokenizerError.malformedFile(path: path, reason: "rank \(rank) appears twice") }
            byRank[rank] = Array(bytes)
        }
        let size = max((byRank.keys.max() ?? -1) + 1, (specialTokens.values.max().map { Int($0) } ?? -1) + 1)
        var tokenBytes: [[UInt8]] = []
        tokenBytes.reserveCapacity(size)
        for id in 0..<size {
            if let bytes = byRank[id] {
                tokenBytes.append(bytes)
            } else if let special = specialTokens.first(where: { $0.value == Int32(id) }) {
                tokenBytes.append(Array(special.key.utf8))
            } else {
                throw TokenizerError.malformedFile(path: path, reason: "rank \(id) is missing (ranks must be contiguous)")
            }
        }
        var idOf: [[UInt8]: Int32] = [:]
        for (id, bytes) in tokenBytes.enumerated() where !specialTokens.values.contains(Int32(id)) { idOf[bytes] = Int32(id) }
        var merges: [(left: Int32, right: Int32, result: Int32)] = []
        var ranks: [Int32] = []
        for (id, bytes) in tokenBytes.enumerated() where bytes.count >= 2 && !specialTokens.values.contains(Int32(id)) {
            for cut in 1..<bytes.count {
                if let l = idOf[Array(bytes[0..<cut])], let r = idOf[Array(bytes[cut...])], l < Int32(id), r < Int32(id) {
                    merges.append((l, r, Int32(id)))
                    ranks.append(Int32(id))
                }
            }
        }
        return try BPE(tokenBytes: tokenBytes, merges: merges, ranks: ranks, specialTokens: specialTokens,
                       pattern: pattern, source: path)
    }

    /// Reads GPT-2's `encoder.json` (token -> id, byte-level alphabet) and `vocab.bpe` (merges, one
    /// "a b" per line after a "#version" header). `<|endoftext|>` becomes a special token.
    public static func loadGPT2(encoderPath: String, mergesPath: String) throws -> BPE {
        let encoder: [String: Int]
        do { encoder = try JSONDecoder().decode([String: Int].self, from: Data(contentsOf: URL(fileURLWithPath: encoderPath))) } catch {
            throw TokenizerError.malformedFile(path: encoderPath, reason: "expected a JSON object of token -> id (\(error))")
        }
        let mergesText: String
        do { mergesText = String(decoding: try Data(contentsOf: URL(fileURLWithPath: mergesPath)), as: UTF8.self) } catch {
            throw TokenizerError.unreadableFile(path: mergesPath, reason: "the file could not be opened")
        }
        var lines = mergesText.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        if let first = lines.first, first.hasPrefix("#version") { lines.removeFirst() }
        let pairs = try lines.enumerated().map { number, line -> [String] in
            let parts = line.split(separator: " ").map(String.init)
            guard parts.count == 2 else {
                throw TokenizerError.malformedFile(path: mergesPath, reason: "line \(number + 2) is not two tokens")
            }
            return parts
        }
        var vocab = encoder
        var added: [AddedToken] = []
        if let eot = vocab.removeValue(forKey: "<|endoftext|>") { added.append(AddedToken(id: eot, content: "<|endoftext|>")) }
        let file = HFTokenizerFile(
            version: "1.0", addedTokens: added,
            preTokenizer: HFPreTokenizer(type: "ByteLevel", addPrefixSpace: false, trimOffsets: true, useRegex: true),
            decoder: HFDecoder(type: "ByteLevel"),
            model: HFModel(type: "BPE", vocab: vocab, merges: pairs, fuseUnk: false, byteFallback: false, ignoreMerges: false))
        let encoded = try JSONEncoder().encode(file)
        return try loadHuggingFace(data: encoded, path: encoderPath)
    }
}
