// Text on top of the token engine: a streaming detokenizer that never splits a UTF-8 character, and
// stop strings that are caught even when they span several tokens.

import Tokenizer
import Training

/// Token ids in, complete text out. Bytes of a character split across tokens wait for the rest.
public struct TextStream {
    public let codec: TextCodec
    private var text = UTF8Stream()

    public init(codec: TextCodec) { self.codec = codec }

    /// Adds one token; returns the text that is now complete (possibly empty).
    public mutating func push(_ id: Int32) throws -> String { text.push(try codec.bytes(of: id)) }

    /// What is left (an unfinished character becomes U+FFFD).
    public mutating func finish() -> String { text.finish() }
}

/// Finds stop strings in streamed text. Text that might be the start of a stop string is held back
/// until it is clear; text before a stop string is released, the stop string and anything after it
/// never are.
public struct StopMatcher {
    public let stops: [[UInt8]]
    private var held: [UInt8] = []
    public private(set) var matched: String? = nil

    public init(_ stops: [String]) {
        self.stops = stops.filter { !$0.isEmpty }.map { Array($0.utf8) }
    }

    /// Feeds complete text; returns what can be shown now. After a match, `matched` is set and
    /// everything further is swallowed.
    public mutating func push(_ text: String) -> String {
        if matched != nil { return "" }
        if stops.isEmpty { return text }
        held += Array(text.utf8)
        // Earliest occurrence of any stop string.
        var first: (at: Int, stop: [UInt8])? = nil
        for stop in stops {
            if let at = find(stop, in: held), first == nil || at < first!.at { first = (at, stop) }
        }
        if let first {
            matched = String(decoding: first.stop, as: UTF8.self)
            let out = String(decoding: held[0..<first.at], as: UTF8.self)
            held.removeAll()
            return out
        }
        // Hold back the longest tail that is a proper prefix of some stop string.
        var keep = 0
        for stop in stops {
            var k = min(stop.count - 1, held.count)
            while k > keep {
                if held[(held.count - k)...].elementsEqual(stop[0..<k]) { keep = k; break }
                k -= 1
            }
        }
        let cut = held.count - keep
        let out = String(decoding: held[0..<cut], as: UTF8.self)
        held.removeFirst(cut)
        return out
    }

    /// Releases held text at the end of generation (it did not become a stop string).
    public mutating func finish() -> String {
        defer { held.removeAll() }
        return matched == nil ? String(decoding: held, as: UTF8.self) : ""
    }

    private func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard needle.count <= hay.count else { return nil }
        outer: for i in 0...(hay.count - needle.count) {
            for j in 0..<needle.count where hay[i + j] != needle[j] { continue outer }
            return i
        }
        return nil
    }
}
