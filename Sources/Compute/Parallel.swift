// The one way SwiftGPT spreads CPU work over cores.
//
// Work is split into a fixed number of disjoint chunks chosen by the caller from the problem size,
// never from the core count, so every result is bit-identical on any machine. Chunks run on a
// persistent pool of worker threads (WorkerPool) that allocates nothing per job — libdispatch's
// concurrentPerform allocated ~400 times per training step here.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum Parallel {
    /// Number of threads that run chunks (online cores, or SWIFTGPT_THREADS when set). Results
    /// never depend on it; tests change it to prove that.
    nonisolated(unsafe) public static var threadCount: Int = {
        if let value = getenv("SWIFTGPT_THREADS"), let n = Int(String(cString: value)), n > 0 { return n }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }()

    /// Runs `body(context, i)` for every i in 0..<count, spread over the cores. `body` must only
    /// write outputs that belong to chunk i, and must capture nothing: everything it needs comes
    /// in `context` (a struct or tuple of pointers and sizes). That keeps the hand-off to the
    /// worker threads free of heap allocation. Calls made from inside a chunk run serially.
    @inline(__always)
    public static func forEach<Context>(_ count: Int, _ context: Context, _ body: @escaping (Context, Int) -> Void) {
        if count <= 0 { return }
        let threads = threadCount
        if count == 1 || threads == 1 {
            for i in 0..<count { body(context, i) }
            return
        }
        let job = ContextJob(context: context, body: body)
        withUnsafePointer(to: job) { pointer in
            WorkerPool.shared.run(count: count, threads: threads, context: UnsafeRawPointer(pointer)) { raw, i in
                let job = raw.assumingMemoryBound(to: ContextJob<Context>.self)
                job.pointee.body(job.pointee.context, i)
            }
        }
    }

    /// Splits 0..<total into `chunkCount` contiguous ranges of near-equal size; runs
    /// `body(context, range)` for each in parallel (same rules as `forEach`).
    @inline(__always)
    public static func forEachRange<Context>(_ total: Int, chunks chunkCount: Int, _ context: Context,
                                             _ body: @escaping (Context, Range<Int>) -> Void) {
        if total <= 0 { return }
        let n = max(1, min(chunkCount, total))
        let threads = threadCount
        if n == 1 || threads == 1 {
            for i in 0..<n {
                let lo = total * i / n, hi = total * (i + 1) / n
                if lo < hi { body(context, lo..<hi) }
            }
            return
        }
        let job = ContextRangeJob(context: context, body: body, total: total, chunks: n)
        withUnsafePointer(to: job) { pointer in
            WorkerPool.shared.run(count: n, threads: threads, context: UnsafeRawPointer(pointer)) { raw, i in
                let job = raw.assumingMemoryBound(to: ContextRangeJob<Context>.self)
                let total = job.pointee.total, n = job.pointee.chunks
                let lo = total * i / n, hi = total * (i + 1) / n
                if lo < hi { job.pointee.body(job.pointee.context, lo..<hi) }
            }
        }
    }

    /// A chunk count for `total` items: enough chunks to balance the cores, few enough that each
    /// is worth a thread hop. Depends only on the problem size.
    public static func chunkCount(_ total: Int, minItemsPerChunk: Int) -> Int {
        max(1, min(64, total / max(1, minItemsPerChunk)))
    }
}

struct ContextJob<Context> {
    let context: Context
    let body: (Context, Int) -> Void
}

struct ContextRangeJob<Context> {
    let context: Context
    let body: (Context, Range<Int>) -> Void
    let total: Int
    let chunks: Int
}
