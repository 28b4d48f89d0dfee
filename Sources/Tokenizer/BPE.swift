// Byte-level BPE: the vocabulary, merges, encoding and decoding.
//
// Token ids: every token is a byte string. Merge r joins tokens (left, right) into its result;
// a lower rank merges first. Encoding a piece starts from its bytes' tokens and repeatedly applies
// the lowest-ranked adjacent merge (the same result as tiktoken's lowest-rank-first and Hugging
// Face's merge-order BPE when ranks follow merge order).

import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

func systemCoreCount() -> Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

public struct BPE: Sendable {
    /// Bytes of every token, by id (special tokens included, as their UTF-8 text).
    public private(set) var tokenBytes: [[UInt8]]
    /// Token id of each single byte.
    public let byteTokens: [Int32]
    /// Merges in rank order: (left, right) -> result.
    public private(set) var merges: [(left: Int32, right: Int32, result: Int32)]
    /// (left, right) -> (rank, result), for encoding.
    private let table: MergeTable
    /// Special tokens: text -> id.
    public private(set) var specialTokens: [String: Int32]
    public let pattern: SplitPattern

    public var vocabularySize: Int { tokenBytes.count }

    /// Builds a tokenizer from byte strings and merges. `tokenBytes` must contain all 256 single
    /// bytes; each merge's result must be the concatenation of its parts.
    /// `ranks` gives each merge's priority (lower first; equal ranks go to the leftmost pair, as in
    /// tiktoken); by default a merge's rank is its position in `merges`.
    public init(tokenBytes: [[UInt8]], merges: [(left: Int32, right: Int32, result: Int32)], ranks: [Int32]? = nil,
                specialTokens: [String: Int32], pattern: SplitPattern, source: String = "<memory>") throws {
        var byteTokens = [Int32](repeating: -1, count: 256)
        for (id, bytes) in tokenBytes.enumerated() where bytes.count == 1 && !specialTokens.values.contains(Int32(id)) {
            if byteTokens[Int(bytes[0])] < 0 { byteTokens[Int(bytes[0])] = Int32(id) }
        }
        if let missing = byteTokens.firstIndex(of: -1) {
            throw TokenizerError.malformedFile(path: source, reason: "byte 0x\(String(missing, radix: 16)) has no token; byte-level BPE needs all 256")
        }
        for (r, m) in merges.enumerated() {
            let n = Int32(tokenBytes.count)
            guard m.left >= 0, m.left < n, m.right >= 0, m.right < n, m.result >= 0, m.result < n,
                  tokenBytes[Int(m.left)] + tokenBytes[Int(m.right)] == tokenBytes[Int(m.result)]
            else { throw TokenizerError.malformedFile(path: source, reason: "merge \(r) (\(m.left), \(m.right)) -> \(m.result) is inconsistent with the vocabulary") }
        }
        self.tokenBytes = tokenBytes
        self.byteTokens = byteTokens
        self.merges = merges
        self.table = MergeTable(merges, ranks: ranks, byteTokens: byteTokens)
        self.specialTokens = specialTokens
        self.pattern = pattern
    }

    // MARK: Encoding

    /// Appends the tokens of one pre-tokenized piece.
    @inline(__always)
    public func encodePiece(_ piece: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        table.encodePiece(piece, into: &out)
    }

    /// Encodes bytes: pre-tokenizes, then BPE per piece. Special tokens are plain text here.
    public func encodeOrdinary(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        let table = self.table
        PreTokenizer(pattern: pattern).forEachPiece(bytes) { range in
            table.encodePiece(UnsafeBufferPointer(rebasing: bytes[range]), into: &out)
        }
    }

    /// Encodes text. Special tokens in `allowedSpecial` are recognised and emitted as their ids;
    /// any other special token text is an error when `disallowOtherSpecial`, else plain text.
    public func encode(_ text: String, allowedSpecial: Set<String> = [], disallowOtherSpecial: Bool = false) throws -> [Int32] {
        var out: [Int32] = []
        let bytes = Array(text.utf8)
        out.reserveCapacity(bytes.count / 3)
        try bytes.withUnsafeBufferPointer { buffer in
            if specialTokens.isEmpty || (allowedSpecial.isEmpty && !disallowOtherSpecial) {
                encodeOrdinary(buffer, into: &out)
                return
            }
            var start = 0
            while let (at, token) = nextSpecial(in: buffer, from: start) {
                if !allowedSpecial.contains(token) {
                    if disallowOtherSpecial { throw TokenizerError.disallowedSpecialToken(token) }
                    // Treat as ordinary text: continue searching after its first byte.
                    let stop = at + 1
                    encodeOrdinary(UnsafeBufferPointer(rebasing: buffer[start..<stop]), into: &out)
                    start = stop
                    continue
                }
                encodeOrdinary(UnsafeBufferPointer(rebasing: buffer[start..<at]), into: &out)
                out.append(specialTokens[token]!)
                start = at + token.utf8.count
            }
            encodeOrdinary(UnsafeBufferPointer(rebasing: buffer[start...]), into: &out)
        }
        return out
    }

    /// Encodes many texts on all cores (each text on one thread; results in input order).
    public func encodeBatch(_ texts: [String], allowedSpecial: Set<String> = [], threads: Int? = nil) throws -> [[Int32]] {
        let results = UnsafeMutablePointer<Result<[Int32], any Error>>.allocate(capacity: texts.count)
        results.initialize(repeating: .success([]), count: texts.count)
        defer { results.deinitialize(count: texts.count); results.deallocate() }
        let box = UnsafeSendable(pointer: results)
        let workers = max(1, min(threads ?? systemCoreCount(), texts.count))
        let me = self
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            var i = w
            while i < texts.count {
                box.pointer[i] = Result { try me.encode(texts[i], allowedSpecial: allowedSpecial) }
                i += workers
            }
        }
        return try (0..<texts.count).map { try results[$0].get() }
    }

    /// Earliest special token occurrence at or after `from` (longest token on ties).
    private func nextSpecial(in b: UnsafeBufferPointer<UInt8>, from: Int) -> (Int, String)? {
        var best: (Int, String)? = nil
        for token in specialTokens.keys {
            let t = Array(token.utf8)
            guard !t.isEmpty, b.count >= t.count else { continue }
            var i = from
            let limit = best.map { $0.0 } ?? (b.count - t.count)
            while i <= min(limit, b.count - t.count) {
                if b[i] == t[0] {
                    var k = 1
                    while k < t.count && b[i + k] == t[k] { k += 1 }
                    if k == t.count {
                        if best == nil || i < best!.0 || (i == best!.0 && t.count > best!.1.utf8.count) { best = (i, token) }
                        break
                    }
                }
                i += 1
            }
        }
        return best
    }

    // MARK: Decoding

    /// Bytes of a token sequence (special tokens as their text).
    public func decodeBytes(_ ids: [Int32]) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        for id in ids {
            guard id >= 0, Int(id) < tokenBytes.count else { throw TokenizerError.invalidTokenID(Int(id), vocabularySize: tokenBytes.count) }
            out += tokenBytes[Int(id)]
        }
        return out
    }

    /// Text of a token sequence; invalid UTF-8 (a character cut between tokens) becomes U+FFFD.
    public func decode(_ ids: [Int32]) throws -> String {
        String(decoding: try decodeBytes(ids), as: UTF8.self)
    }
}
