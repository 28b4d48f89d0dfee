// Byte-level BPE training: count pieces, then repeatedly merge the most frequent adjacent pair.
//
// Ids of a trained tokenizer: 0..<256 are the bytes (id == byte value), then one id per merge in
// merge order, then the special tokens. Ties between equally frequent pairs go to the smaller
// (left, right) id pair, so training is deterministic.

public struct BPETrainer: Sendable {
    public var vocabularySize: Int
    public var pattern: SplitPattern
    public var specialTokens: [String]

    public init(vocabularySize: Int, pattern: SplitPattern = .gpt4, specialTokens: [String] = []) {
        self.vocabularySize = vocabularySize
        self.pattern = pattern
        self.specialTokens = specialTokens
    }

    /// Checks the settings before any work.
    public func validate() throws {
        var seen = Set<String>()
        for token in specialTokens {
            if token.isEmpty { throw TokenizerError.malformedFile(path: "--special", reason: "a special token is empty") }
            if !seen.insert(token).inserted { throw TokenizerError.duplicateSpecialToken(token) }
        }
        let minimum = 256 + specialTokens.count
        if vocabularySize < minimum { throw TokenizerError.vocabularyTooSmall(requested: vocabularySize, minimum: minimum) }
    }

    /// Learns merges from piece counts.
    public func train(_ counts: PieceCounts, progress: ((Int, Int) -> Void)? = nil) throws -> BPE {
        try validate()
        let targetMerges = vocabularySize - 256 - specialTokens.count
        // Words: each distinct piece as a symbol sequence.
        var words: [[Int32]] = []
        var wordCounts: [Int] = []
        words.reserveCapacity(counts.distinctCount)
        for i in 0..<counts.distinctCount where counts.lengths[i] >= 1 {
            words.append(counts.piece(i).map { Int32($0) })
            wordCounts.append(counts.counts[i])
        }
        var pairCounts: [UInt64: Int] = [:]
        var pairWords: [UInt64: [Int32]] = [:]
        @inline(__always) func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }
        for (w, symbols) in words.enumerated() where symbols.count > 1 {
            for i in 0..<(symbols.count - 1) {
                let k = key(symbols[i], symbols[i + 1])
                pairCounts[k, default: 0] += wordCounts[w]
                pairWords[k, default: []].append(Int32(w))
            }
        }
        var heap = BinaryHeap<MergeCandidate>()
        for (k, c) in pairCounts where c > 0 { heap.push(MergeCandidate(count: c, key: k)) }
        var tokenBytes: [[UInt8]] = (0..<256).map { [UInt8($0)] }
        var merges: [(left: Int32, right: Int32, result: Int32)] = []
        var stamp = [Int32](repeating: -1, count: words.count)
        while merges.count < targetMerges, let candidate = heap.pop() {
            let c = candidate.count, k = candidate.key
            let current = pairCounts[k] ?? 0
            if current != c {
                if current > 0 { heap.push(MergeCandidate(count: current, key: k)) }
                continue
            }
            if current <= 0 { break }
            let a = Int32(truncatingIfNeeded: k >> 32), b = Int32(truncatingIfNeeded: k & 0xFFFF_FFFF)
            let z = Int32(tokenBytes.count)
            tokenBytes.append(tokenBytes[Int(a)] + tokenBytes[Int(b)])
            merges.append((a, b, z))
            let mergeIndex = Int32(merges.count)
            var touched: [UInt64: Int] = [:]
            for w32 in pairWords[k] ?? [] {
                let w = Int(w32)
                if stamp[w] == mergeIndex { continue }
                stamp[w] = mergeIndex
                let old = words[w]
                if old.count < 2 { continue }
                var new: [Int32] = []
                new.reserveCapacity(old.count)
                var i = 0
                var changed = false
                while i < old.count {
                    if i + 1 < old.count && old[i] == a && old[i + 1] == b {
                        new.append(z)
                        i += 2
                        changed = true
                    } else {
                        new.append(old[i])
                        i += 1
                    }
                }
                if !changed { continue }
                let wc = wordCounts[w]
                for j in 0..<(old.count - 1) { touched[key(old[j], old[j + 1]), default: 0] -= wc }
                if new.count > 1 {
                    for j in 0..<(new.count - 1) {
                        let nk = key(new[j], new[j + 1])
                        touched[nk, default: 0] += wc
                        if new[j] == z || new[j + 1] == z { pairWords[nk, default: []].append(w32) }
                    }
                }
                words[w] = new
            }
            for (tk, delta) in touched where delta != 0 {
                let updated = (pairCounts[tk] ?? 0) + delta
                pairCounts[tk] = updated
                if delta > 0 && updated > 0 { heap.push(MergeCandidate(count: updated, key: tk)) }
            }
            pairCounts[k] = 0
            pairWords[k] = nil
            progress?(merges.count, targetMerges)
        }
        var specials: [String: Int32] = [:]
        for token in specialTokens {
            specials[token] = Int32(tokenBytes.count)
            tokenBytes.append(Array(token.utf8))
        }
        return try BPE(tokenBytes: tokenBytes, merges: merges, specialTokens: specials, pattern: pattern)
    }
}

/// A pair and its count, ordered so that a min-heap yields the highest count first, then the
/// smallest (left, right) key.
struct MergeCandidate: Comparable {
    let count: Int
    let key: UInt64

    static func < (x: MergeCandidate, y: MergeCandidate) -> Bool {
        x.count > y.count || (x.count == y.count && x.key < y.key)
    }
}
