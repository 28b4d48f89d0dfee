// The production pre-tokenizer: the same patterns as PreTokenizer's unit-array scanner (kept as
// the test oracle), but scanning bytes in place — no decoded arrays, no allocation — and handing
// each piece to a callback.

extension PreTokenizer {
    /// Calls `body` with the byte range of every piece, in order.
    @inline(__always)
    public func forEachPiece(_ bytes: UnsafeBufferPointer<UInt8>, _ body: (Range<Int>) -> Void) {
        let scanner = ByteScanner(bytes)
        var i = 0
        let n = bytes.count
        if pattern == .gpt2 {
            while i < n { let end = scanner.matchGPT2(at: i); body(i..<end); i = end }
        } else {
            while i < n { let end = scanner.matchGPT4(at: i); body(i..<end); i = end }
        }
    }
}

/// Decodes units on demand from the bytes; positions are byte offsets.
struct ByteScanner {
    let b: UnsafeBufferPointer<UInt8>
    let n: Int

    init(_ b: UnsafeBufferPointer<UInt8>) {
        self.b = b
        self.n = b.count
    }

    /// Class and byte length of the unit at `i` (< n).
    @inline(__always)
    func unit(_ i: Int) -> (UnitClass, Int) {
        let c = b[i]
        if c < 0x80 { return (asciiClassTable[Int(c)], 1) }
        let (value, length) = decodeUTF8(b, at: i)
        guard let value else { return (.other, 1) }
        return (classify(value), length)
    }

    @inline(__always)
    func classAt(_ i: Int) -> UnitClass? { i < n ? unit(i).0 : nil }

    /// End of the run of class `c` starting at i.
    @inline(__always)
    func runEnd(_ i: Int, _ c: UnitClass) -> Int {
        var j = i
        while j < n {
            let (k, len) = unit(j)
            if k != c { break }
            j += len
        }
        return j
    }

    /// End of the whitespace run at i, the start of its last unit, and the end of its last newline.
    @inline(__always)
    func whitespaceRun(_ i: Int) -> (end: Int, lastStart: Int, lastNewlineEnd: Int) {
        var j = i, last = i, newlineEnd = -1
        while j < n {
            let (k, len) = unit(j)
            if k != .space && k != .newline { break }
            if k == .newline { newlineEnd = j + len }
            last = j
            j += len
        }
        return (j, last, newlineEnd)
    }

    @inline(__always)
    func whitespaceTail(_ i: Int) -> Int {
        let run = whitespaceRun(i)
        if run.end == n { return n }
        if run.lastStart > i { return run.lastStart }  // leave the last unit for the next piece
        return run.end
    }

    /// Contraction after an apostrophe at i (ASCII letters; ſ and K fold under gpt4's (?i)).
    @inline(__always)
    func contraction(at i: Int, caseInsensitive: Bool) -> Int? {
        guard b[i] == 0x27, i + 1 < n else { return nil }
        func letter(_ k: Int) -> (UInt32, Int)? {
            guard k < n else { return nil }
            let c = b[k]
            if c < 0x80 {
                var v = UInt32(c)
                if caseInsensitive && v >= 0x41 && v <= 0x5A { v += 0x20 }
                return (v, 1)
            }
            guard caseInsensitive else { return nil }
            let (value, len) = decodeUTF8(b, at: k)
            if value == 0x17F { return (0x73, len) }   // ſ
            if value == 0x212A { return (0x6B, len) }  // Kelvin sign
            return nil
        }
        guard let (a, la) = letter(i + 1) else { return nil }
        switch a {
        case 0x73, 0x74, 0x6D, 0x64:
            if !caseInsensitive && b[i + 1] >= 0x80 { return nil }
            return i + 1 + la
        case 0x72, 0x76:
            if let (e, le) = letter(i + 1 + la), e == 0x65 { return i + 1 + la + le }
        case 0x6C:
            if let (l, ll) = letter(i + 1 + la), l == 0x6C { return i + 1 + la + ll }
        default: break
        }
        return nil
    }

    func matchGPT2(at i: Int) -> Int {
        if let end = contraction(at: i, caseInsensitive: false) { return end }
        var start = i
        if b[i] == 0x20 && i + 1 < n {
            let next = unit(i + 1).0
            if next == .letter || next == .number || next == .other { start = i + 1 }
        }
        let (c, _) = unit(start)
        switch c {
        case .letter: return runEnd(start, .letter)
        case .number: return runEnd(start, .number)
        case .other: return runEnd(start, .other)
        case .space, .newline: return whitespaceTail(i)
        }
    }

    func matchGPT4(at i: Int) -> Int {
        if let end = contraction(at: i, caseInsensitive: true) { return end }
        let (c, len) = unit(i)
        if c == .letter { return runEnd(i, .letter) }
        if c != .newline && c != .number && i + len < n && unit(i + len).0 == .letter {
            return runEnd(i + len, .letter)
        }
        if c == .number {
            var j = i, count = 0
            while j < n && count < 3 {
                let (k, l) = unit(j)
                if k != .number { break }
                j += l
                count += 1
            }
            return j
        }
        var start = -1
        if c == .other { start = i } else if b[i] == 0x20 && i + 1 < n && unit(i + 1).0 == .other { start = i + 1 }
        if start >= 0 { return runEnd(runEnd(start, .other), .newline) }
        let run = whitespaceRun(i)
        if run.end == n { return n }
        if run.lastNewlineEnd >= 0 { return run.lastNewlineEnd }
        if run.lastStart > i { return run.lastStart }
        return run.end
    }
}

/// ASCII classes as a fixed table (a global array would be reference-counted on every access).
@usableFromInline
nonisolated(unsafe) let asciiClassTable: UnsafeMutablePointer<UnitClass> = {
    let p = UnsafeMutablePointer<UnitClass>.allocate(capacity: 128)
    for v in 0..<128 { p[v] = asciiClasses[v] }
    return p
}()
