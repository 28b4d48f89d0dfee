// Turning a stream of token ids into text without ever emitting a broken UTF-8 character: bytes of
// a character split across tokens are held back until the character is complete.

public struct StreamingDecoder: Sendable {
    private let bpe: BPE
    private var text = UTF8Stream()

    public init(_ bpe: BPE) {
        self.bpe = bpe
    }

    /// Adds one token; returns the text that is now complete (possibly empty).
    public mutating func push(_ id: Int32) throws -> String {
        guard id >= 0, Int(id) < bpe.vocabularySize else {
            throw TokenizerError.invalidTokenID(Int(id), vocabularySize: bpe.vocabularySize)
        }
        return text.push(bpe.tokenBytes[Int(id)])
    }

    /// Flushes what is left (an incomplete character becomes U+FFFD).
    public mutating func finish() -> String { text.finish() }
}

/// Bytes in, complete UTF-8 text out: the bytes of a character that is not finished yet are held
/// back until it is. The core of every streaming decoder (BPE ids here, any codec in Chat).
public struct UTF8Stream: Sendable {
    private var pending: [UInt8] = []

    public init() {}

    /// Appends bytes; returns the text that is now complete (possibly empty).
    public mutating func push(_ bytes: [UInt8]) -> String {
        pending += bytes
        let cut = completePrefixLength(pending)
        if cut == 0 { return "" }
        let text = String(decoding: pending[0..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return text
    }

    /// What is left (an unfinished character becomes U+FFFD).
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return pending.isEmpty ? "" : String(decoding: pending, as: UTF8.self)
    }
}

/// Length of the longest prefix that does not end inside a character that may still complete.
/// Invalid bytes count as complete (they decode to U+FFFD now; waiting cannot fix them).
func completePrefixLength(_ b: [UInt8]) -> Int {
    let n = b.count
    // Look at the last up-to-3 bytes for the start of an unfinished sequence.
    var i = max(0, n - 3)
    while i < n {
        let lead = b[i]
        let need: Int
        switch lead {
        case 0xC2...0xDF: need = 2
        case 0xE0...0xEF: need = 3
        case 0xF0...0xF4: need = 4
        default: i += 1; continue
        }
        if i + need > n {
            // Unfinished if every byte present so far is a continuation byte.
            var ok = true
            for k in (i + 1)..<n where b[k] & 0xC0 != 0x80 { ok = false }
            if ok { return i }
        }
        i += 1
    }
    return n
}
