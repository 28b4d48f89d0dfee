// The merge lookup used by encoding: (left, right) -> (rank, result) in an open-addressing table
// owned by a final class and read through raw pointers, so concurrent encoders on many threads
// share it without reference-count traffic.

final class MergeTable: @unchecked Sendable {
    private let keys: UnsafeMutablePointer<UInt64>    // (left << 32 | right), empty = UInt64.max
    private let values: UnsafeMutablePointer<UInt64>  // (rank << 32 | result)
    private let mask: Int
    private let shift: UInt64
    /// Token id of each byte.
    private let byteTokens: UnsafeMutablePointer<Int32>
    static let missing = UInt64.max

    init(_ merges: [(left: Int32, right: Int32, result: Int32)], ranks: [Int32]?, byteTokens bytes: [Int32]) {
        byteTokens = .allocate(capacity: 256)
        for b in 0..<256 { byteTokens[b] = bytes[b] }
        var capacity = 16
        var bits: UInt64 = 4
        while capacity < merges.count * 2 { capacity <<= 1; bits += 1 }
        keys = .allocate(capacity: capacity)
        keys.initialize(repeating: UInt64.max, count: capacity)
        values = .allocate(capacity: capacity)
        values.initialize(repeating: 0, count: capacity)
        mask = capacity - 1
        shift = 64 - bits
        for (index, m) in merges.enumerated() {
            let rank = ranks?[index] ?? Int32(index)
            let key = UInt64(UInt32(m.left)) << 32 | UInt64(UInt32(m.right))
            var s = slot(key)
            while keys[s] != UInt64.max && keys[s] != key { s = (s + 1) & mask }
            if keys[s] == key { continue }  // keep the first (lowest) rank of a repeated pair
            keys[s] = key
            values[s] = UInt64(UInt32(rank)) << 32 | UInt64(UInt32(m.result))
        }
    }

    deinit {
        keys.deallocate()
        values.deallocate()
        byteTokens.deallocate()
    }

    @inline(__always) private func slot(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) & mask
    }

    /// (rank << 32 | result) for the pair, or `missing`.
    @inline(__always) func lookup(_ left: Int32, _ right: Int32) -> UInt64 {
        let key = UInt64(UInt32(left)) << 32 | UInt64(UInt32(right))
        var s = slot(key)
        while true {
            let k = keys[s]
            if k == key { return values[s] }
            if k == UInt64.max { return MergeTable.missing }
            s = (s + 1) & mask
        }
    }

    // MARK: Encoding one piece

    /// Appends the tokens of one pre-tokenized piece.
    @inline(__always)
    func encodePiece(_ piece: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        let n = piece.count
        if n == 0 { return }
        if n == 1 { out.append(byteTokens[Int(piece[0])]); return }
        if n <= 48 { encodeSmall(piece, into: &out) } else { encodeLarge(piece, into: &out) }
    }

    /// Short pieces: rescan for the lowest-ranked pair after every merge.
    private func encodeSmall(_ piece: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: piece.count) { ids in
            var count = piece.count
            for i in 0..<count { ids[i] = byteTokens[Int(piece[i])] }
            while count > 1 {
                var best = MergeTable.missing, bestAt = -1
                for i in 0..<(count - 1) {
                    let v = lookup(ids[i], ids[i + 1])
                    if v < best { best = v; bestAt = i }
                }
                if bestAt < 0 { break }
                ids[bestAt] = Int32(truncatingIfNeeded: best & 0xFFFF_FFFF)
                for j in (bestAt + 1)..<(count - 1) { ids[j] = ids[j + 1] }
                count -= 1
            }
            for i in 0..<count { out.append(ids[i]) }
        }
    }

    /// Long pieces (e.g. a megabyte of one letter): a linked list of tokens and a binary heap of
    /// candidate merges ordered by (rank, position), O(n log n).
    private func encodeLarge(_ piece: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        let n = piece.count
        var ids = piece.map { byteTokens[Int($0)] }
        var prev = Array(-1..<(n - 1))
        var next = Array(1...n)
        next[n - 1] = -1
        var alive = [Bool](repeating: true, count: n)
        // Entries are (rank << 32 | position): smallest rank first, then the leftmost pair.
        var heap = BinaryHeap<UInt64>()
        @inline(__always) func rank(_ v: UInt64) -> Int32 { Int32(truncatingIfNeeded: v >> 32) }
        @inline(__always) func push(_ r: Int32, _ position: Int) { heap.push(UInt64(UInt32(r)) << 32 | UInt64(position)) }
        for i in 0..<(n - 1) {
            let v = lookup(ids[i], ids[i + 1])
            if v != MergeTable.missing { push(rank(v), i) }
        }
        while let entry = heap.pop() {
            let r = rank(entry), i = Int(entry & 0xFFFF_FFFF)
            guard alive[i] else { continue }
            let j = next[i]
            guard j >= 0 else { continue }
            let v = lookup(ids[i], ids[j])
            guard v != MergeTable.missing, rank(v) == r else { continue }  // stale entry
            ids[i] = Int32(truncatingIfNeeded: v & 0xFFFF_FFFF)
            alive[j] = false
            let k = next[j]
            next[i] = k
            if k >= 0 { prev[k] = i }
            let p = prev[i]
            if p >= 0 {
                let pv = lookup(ids[p], ids[i])
                if pv != MergeTable.missing { push(rank(pv), p) }
            }
            if k >= 0 {
                let nv = lookup(ids[i], ids[k])
                if nv != MergeTable.missing { push(rank(nv), i) }
            }
        }
        var i = 0
        while i >= 0 { out.append(ids[i]); i = next[i] }
    }
}
