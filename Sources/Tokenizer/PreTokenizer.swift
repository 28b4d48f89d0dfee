// Pre-tokenization: splitting text into the pieces that BPE then encodes independently.
//
// Two patterns are reproduced exactly, as hand-written scanners over Unicode scalars (Swift's
// Regex is far too slow for this):
//
//   gpt2  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   gpt4  '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+
//         |\s++$|\s*[\r\n]|\s+(?!\S)|\s                        (tiktoken 0.14's cl100k_base)
//
// Input is bytes. Invalid UTF-8 is not an error: each byte that is not part of a valid sequence is
// a unit of its own that is neither letter, number nor space (what Python's regex sees after
// decoding with surrogateescape), so every byte string splits, and pieces concatenate back to it.

/// Which split pattern a tokenizer uses.
public enum SplitPattern: String, Codable, Sendable, CaseIterable {
    case gpt2
    case gpt4

    /// Other spellings of the same split (older tiktoken, and the form Hugging Face's regex engine
    /// accepts); files using any of them load as this pattern.
    public var equivalentRegexes: [String] {
        switch self {
        case .gpt2: return [regex]
        case .gpt4:
            return [regex, huggingFaceRegex,
                    #"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s++$|\s*[\r\n]|\s+(?!\S)|\s+"#]
        }
    }

    /// The spelling written to tokenizer.json: Hugging Face's engine rejects the possessive
    /// `{1,3}+`, and the greedy `{1,3}` matches the same pieces here.
    public var huggingFaceRegex: String {
        switch self {
        case .gpt2: return regex
        case .gpt4:
            return #"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"#
        }
    }

    /// The regular expression this scanner reproduces (tiktoken's spelling).
    public var regex: String {
        switch self {
        case .gpt2:
            return #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
        case .gpt4:
            return #"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"#
        }
    }
}

/// Character classes the patterns distinguish.
@usableFromInline
enum UnitClass: UInt8, Sendable {
    case letter      // \p{L}
    case number      // \p{N}
    case space       // \s other than \r, \n
    case newline     // \r or \n (also \s)
    case other       // everything else, including invalid UTF-8 bytes
}

public struct PreTokenizer: Sendable {
    public let pattern: SplitPattern

    public init(pattern: SplitPattern) {
        self.pattern = pattern
    }

    /// Splits `bytes` and returns the byte ranges of the pieces, in order; they tile the input.
    public func split(_ bytes: UnsafeBufferPointer<UInt8>) -> [Range<Int>] {
        let units = DecodedUnits(bytes)
        var pieces: [Range<Int>] = []
        pieces.reserveCapacity(bytes.count / 4 + 1)
        var i = 0
        let n = units.count
        while i < n {
            let end = pattern == .gpt2 ? units.matchGPT2(at: i) : units.matchGPT4(at: i)
            pieces.append(units.offset(i)..<units.offset(end))
            i = end
        }
        return pieces
    }

    /// Splits `bytes` into byte arrays (convenience for tests and tools).
    public func split(_ bytes: [UInt8]) -> [[UInt8]] {
        bytes.withUnsafeBufferPointer { buffer in split(buffer).map { Array(buffer[$0]) } }
    }

    /// Splits a string into substrings (its UTF-8 is always valid).
    public func split(_ text: String) -> [String] {
        split(Array(text.utf8)).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// The input decoded into units (a Unicode scalar or one invalid byte), with their classes and
/// byte offsets.
@usableFromInline
struct DecodedUnits {
    var scalars: [UInt32] = []   // scalar value; invalid bytes are 0x110000 + byte
    var classes: [UnitClass] = []
    var offsets: [Int] = []      // byte offset of each unit, plus the total length at the end

    init(_ bytes: UnsafeBufferPointer<UInt8>) {
        scalars.reserveCapacity(bytes.count)
        classes.reserveCapacity(bytes.count)
        offsets.reserveCapacity(bytes.count + 1)
        var i = 0
        let n = bytes.count
        while i < n {
            let (value, length) = decodeUTF8(bytes, at: i)
            offsets.append(i)
            if let value {
                scalars.append(value)
                classes.append(classify(value))
            } else {
                scalars.append(0x11_0000 + UInt32(bytes[i]))
                classes.append(.other)
            }
            i += length
        }
        offsets.append(n)
    }

    var count: Int { scalars.count }

    @inline(__always) func offset(_ unit: Int) -> Int { offsets[unit] }

    @inline(__always) func isApostrophe(_ i: Int) -> Bool { scalars[i] == 0x27 }

    @inline(__always) func isSpaceChar(_ i: Int) -> Bool { scalars[i] == 0x20 }

    @inline(__always) func isWhitespace(_ i: Int) -> Bool {
        let c = classes[i]
        return c == .space || c == .newline
    }

    /// End of the run of units of class `c` starting at i.
    @inline(__always) func runEnd(_ i: Int, _ c: UnitClass) -> Int {
        var j = i
        while j < count && classes[j] == c { j += 1 }
        return j
    }

    @inline(__always) func whitespaceRunEnd(_ i: Int) -> Int {
        var j = i
        while j < count && isWhitespace(j) { j += 1 }
        return j
    }

    /// Contraction suffix after an apostrophe at i: returns the end, or nil.
    func contraction(at i: Int, caseInsensitive: Bool) -> Int? {
        guard isApostrophe(i), i + 1 < count else { return nil }
        func letter(_ k: Int) -> UInt32? {
            guard k < count else { return nil }
            var v = scalars[k]
            if caseInsensitive {
                if v >= 0x41 && v <= 0x5A { v += 0x20 }
                if v == 0x17F { v = 0x73 }  // ſ folds to s
                if v == 0x212A { v = 0x6B } // Kelvin sign folds to k
            }
            return v
        }
        let a = letter(i + 1)
        switch a {
        case 0x73, 0x74, 0x6D, 0x64: return i + 2  // s t m d
        case 0x72, 0x76:                           // re ve
            if letter(i + 2) == 0x65 { return i + 3 }
        case 0x6C:                                 // ll
            if letter(i + 2) == 0x6C { return i + 3 }
        default: break
        }
        return nil
    }

    /// Whitespace handling shared by both patterns: \s+(?!\S) then \s+.
    @inline(__always) func whitespaceTail(_ i: Int) -> Int {
        let k = whitespaceRunEnd(i)
        if k == count { return k }          // run reaches the end: all of it
        if k - i >= 2 { return k - 1 }      // leave the last one for the next piece
        return k                            // a single whitespace before non-space
    }

    func matchGPT2(at i: Int) -> Int {
        if let end = contraction(at: i, caseInsensitive: false) {
            // GPT-2's contractions are case-sensitive: 's 't 're 've 'm 'll 'd only.
            let v = scalars[i + 1]
            if v >= 0x61 && v <= 0x7A { return end }
        }
        var start = i
        if isSpaceChar(i) && i + 1 < count {
            let next = classes[i + 1]
            if next == .letter || next == .number || next == .other { start = i + 1 }
        }
        switch classes[start] {
        case .letter: return runEnd(start, .letter)
        case .number: return runEnd(start, .number)
        case .other: return runEnd(start, .other)
        case .space, .newline: return whitespaceTail(i)
        }
    }

    func matchGPT4(at i: Int) -> Int {
        if let end = contraction(at: i, caseInsensitive: true) { return end }
        let c = classes[i]
        // [^\r\n\p{L}\p{N}]?+\p{L}+
        if c == .letter { return runEnd(i, .letter) }
        if c != .newline && c != .number && i + 1 < count && classes[i + 1] == .letter {
            return runEnd(i + 1, .letter)
        }
        // \p{N}{1,3}
        if c == .number {
            var j = i
            while j < count && j < i + 3 && classes[j] == .number { j += 1 }
            return j
        }
        // ' ?[^\s\p{L}\p{N}]++[\r\n]*'
        var start = -1
        if c == .other { start = i } else if isSpaceChar(i) && i + 1 < count && classes[i + 1] == .other { start = i + 1 }
        if start >= 0 {
            return runEnd(runEnd(start, .other), .newline)
        }
        // \s++$: a whitespace run that reaches the end is one piece
        let k = whitespaceRunEnd(i)
        if k == count { return k }
        // \s*[\r\n]: up to the last newline of the whitespace run
        var lastNewline = -1
        var j = i
        while j < k { if classes[j] == .newline { lastNewline = j }; j += 1 }
        if lastNewline >= 0 { return lastNewline + 1 }
        return whitespaceTail(i)
    }
}

/// Decodes one UTF-8 sequence at `i`: (scalar, length), or (nil, 1) for a byte that does not start
/// a valid, complete, shortest-form sequence of a non-surrogate scalar ≤ U+10FFFF.
@inline(__always)
func decodeUTF8(_ b: UnsafeBufferPointer<UInt8>, at i: Int) -> (UInt32?, Int) {
    let b0 = b[i]
    if b0 < 0x80 { return (UInt32(b0), 1) }
    let n = b.count
    @inline(__always) func cont(_ k: Int) -> UInt32? {
        guard k < n, b[k] & 0xC0 == 0x80 else { return nil }
        return UInt32(b[k] & 0x3F)
    }
    if b0 >= 0xC2 && b0 <= 0xDF {
        guard let c1 = cont(i + 1) else { return (nil, 1) }
        return ((UInt32(b0 & 0x1F) << 6) | c1, 2)
    }
    if b0 >= 0xE0 && b0 <= 0xEF {
        guard let c1 = cont(i + 1), let c2 = cont(i + 2) else { return (nil, 1) }
        let v = (UInt32(b0 & 0x0F) << 12) | (c1 << 6) | c2
        if v < 0x800 || (v >= 0xD800 && v <= 0xDFFF) { return (nil, 1) }
        return (v, 3)
    }
    if b0 >= 0xF0 && b0 <= 0xF4 {
        guard let c1 = cont(i + 1), let c2 = cont(i + 2), let c3 = cont(i + 3) else { return (nil, 1) }
        let v = (UInt32(b0 & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3
        if v < 0x1_0000 || v > 0x10_FFFF { return (nil, 1) }
        return (v, 4)
    }
    return (nil, 1)
}

/// The class of a valid scalar.
@inline(__always)
func classify(_ v: UInt32) -> UnitClass {
    if v < 0x80 { return asciiClasses[Int(v)] }
    guard let scalar = Unicode.Scalar(v) else { return .other }
    if isRegexWhitespace(v) { return .space }
    switch scalar.properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
    case .decimalNumber, .letterNumber, .otherNumber: return .number
    default: return .other
    }
}

/// \s for non-ASCII scalars: Unicode White_Space.
@inline(__always)
func isRegexWhitespace(_ v: UInt32) -> Bool {
    switch v {
    case 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
    default: return false
    }
}

/// Classes of the 128 ASCII scalars.
let asciiClasses: [UnitClass] = (0..<128).map { v -> UnitClass in
    switch v {
    case 0x0A, 0x0D: return .newline
    case 0x09, 0x0B, 0x0C, 0x20: return .space
    // U+001C..U+001F are not \s for the `regex` package (unlike Python's str.isspace).
    case 0x30...0x39: return .number
    case 0x41...0x5A, 0x61...0x7A: return .letter
    default: return .other
    }
}
