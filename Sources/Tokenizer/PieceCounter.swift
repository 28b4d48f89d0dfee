// Counting pre-tokenized pieces of a corpus: the first half of BPE training.
//
// Pieces are stored once in a byte arena and counted in an open-addressing hash table, so the
// counting allocates per distinct piece, not per occurrence.

import Dispatch

/// Distinct byte strings with their counts.
public struct PieceCounts: Sendable {
    var arena: [UInt8] = []
    var starts: [Int] = []
    var lengths: [Int32] = []
    var counts: [Int] = []
    private var slots: [Int32] = [Int32](repeating: -1, count: 1 << 12)
    private var hashes: [UInt64] = []

    public init() {}

    public var distinctCount: Int { counts.count }
    public var totalCount: Int { counts.reduce(0, +) }

    @inline(__always)
    static func hash(_ p: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in p { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h ^ (h >> 29)
    }

    /// Adds `count` occurrences of `piece`.
    public mutating func add(_ piece: UnsafeBufferPointer<UInt8>, count: Int = 1) {
        add(piece, hash: Self.hash(piece), count: count)
    }

    mutating func add(_ piece: UnsafeBufferPointer<UInt8>, hash h: UInt64, count: Int) {
        if (counts.count + 1) * 2 > slots.count { grow() }
        let mask = slots.count - 1
        var s = Int(truncatingIfNeeded: h) & mask
        while true {
            let idx = Int(slots[s])
            if idx < 0 {
                slots[s] = Int32(counts.count)
                starts.append(arena.count)
                lengths.append(Int32(piece.count))
                arena.append(contentsOf: piece)
                counts.append(count)
                hashes.append(h)
                return
            }
            if hashes[idx] == h && Int(lengths[idx]) == piece.count && equalBytes(idx, piece) {
                counts[idx] += count
                return
            }
            s = (s + 1) & mask
        }
    }

    @inline(__always)
    private func equalBytes(_ idx: Int, _ p: UnsafeBufferPointer<UInt8>) -> Bool {
        let start = starts[idx]
        return arena.withUnsafeBufferPointer { a in
            for k in 0..<p.count where a[start + k] != p[k] { return false }
            return true
        }
    }

    private mutating func grow() {
        var newSlots = [Int32](repeating: -1, count: slots.count * 2)
        let mask = newSlots.count - 1
        for idx in 0..<counts.count {
            var s = Int(truncatingIfNeeded: hashes[idx]) & mask
            while newSlots[s] >= 0 { s = (s + 1) & mask }
            newSlots[s] = Int32(idx)
        }
        slots = newSlots
    }

    /// The bytes of distinct piece `i`.
    public func piece(_ i: Int) -> ArraySlice<UInt8> { arena[starts[i]..<(starts[i] + Int(lengths[i]))] }

    /// Adds every piece of `other`.
    public mutating func merge(_ other: PieceCounts) {
        other.arena.withUnsafeBufferPointer { a in
            for i in 0..<other.counts.count {
                add(UnsafeBufferPointer(rebasing: a[other.starts[i]..<(other.starts[i] + Int(other.lengths[i]))]),
                    hash: other.hashes[i], count: other.counts[i])
            }
        }
    }

    /// Pre-tokenizes `text` with `pattern` and counts its pieces, using `threads` threads (the text
    /// is cut at newlines so pieces never straddle two threads).
    public mutating func count(_ text: UnsafeBufferPointer<UInt8>, pattern: SplitPattern, threads: Int) {
        let n = text.count
        if n == 0 { return }
        var cuts = [0]
        for t in 1..<max(1, threads) {
            var c = n * t / threads
            while c < n && text[c] != 0x0A { c += 1 }
            cuts.append(min(n, c + 1 <= n ? c + 1 : n))
        }
        cuts.append(n)
        let bounds = cuts
        let parts = bounds.count - 1
        let partials = UnsafeMutablePointer<PieceCounts>.allocate(capacity: parts)
        partials.initialize(repeating: PieceCounts(), count: parts)
        defer { partials.deinitialize(count: parts); partials.deallocate() }
        let base = UnsafeSendable(pointer: partials)
        let source = UnsafeSendableBytes(buffer: text)
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            let lo = bounds[p], hi = bounds[p + 1]
            guard lo < hi else { return }
            let slice = UnsafeBufferPointer(rebasing: source.buffer[lo..<hi])
            var local = PieceCounts()
            PreTokenizer(pattern: pattern).forEachPiece(slice) { range in
                local.add(UnsafeBufferPointer(rebasing: slice[range]))
            }
            base.pointer[p] = local
        }
        for p in 0..<parts { merge(partials[p]) }
    }
}

struct UnsafeSendable<T>: @unchecked Sendable { let pointer: UnsafeMutablePointer<T> }
struct UnsafeSendableBytes: @unchecked Sendable { let buffer: UnsafeBufferPointer<UInt8> }
