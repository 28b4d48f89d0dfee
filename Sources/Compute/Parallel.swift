// The one way SwiftGPT spreads CPU work over cores.
//
// Work is split into a fixed number of disjoint chunks chosen by the caller from the problem size,
// never from the core count, so every result is bit-identical on any machine.

import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum Parallel {
    /// Number of worker threads (online cores, or SWIFTGPT_THREADS when set). Results never depend
    /// on it; tests change it to prove that.
    nonisolated(unsafe) public static var threadCount: Int = {
        if let value = getenv("SWIFTGPT_THREADS"), let n = Int(String(cString: value)), n > 0 { return n }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }()

    /// Runs `body(i)` for every i in 0..<count, spread over the cores. `body` must only write
    /// outputs that belong to chunk i.
    @inline(__always)
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        if count == 1 || threadCount == 1 {
            for i in 0..<count { body(i) }
            return
        }
        // Kernels hand raw pointers to disjoint output chunks; the chunking contract, not the type
        // system, is what makes this safe, so the closure is passed on as @Sendable.
        withoutActuallyEscaping(body) { escapable in
            let sendable = unsafeBitCast(escapable, to: (@Sendable (Int) -> Void).self)
            DispatchQueue.concurrentPerform(iterations: count, execute: sendable)
        }
    }

    /// Splits 0..<total into `chunkCount` contiguous ranges of near-equal size; runs
    /// `body(range)` for each in parallel.
    @inline(__always)
    public static func forEachRange(_ total: Int, chunks chunkCount: Int, _ body: (Range<Int>) -> Void) {
        if total <= 0 { return }
        let n = max(1, min(chunkCount, total))
        forEach(n) { i in
            let lo = total * i / n
            let hi = total * (i + 1) / n
            if lo < hi { body(lo..<hi) }
        }
    }

    /// A chunk count for `total` items of `costPerItem` work units: enough chunks to balance the
    /// cores, few enough that each is worth a thread hop. Depends only on the problem size.
    public static func chunkCount(_ total: Int, minItemsPerChunk: Int) -> Int {
        max(1, min(64, total / max(1, minItemsPerChunk)))
    }
}
