// A persistent pool of worker threads for Parallel.forEach.
//
// One job at a time. The generation counter is odd while a job runs and even between jobs. The
// caller writes the job (body, count), makes the generation odd and wakes the workers; everyone,
// the caller included, takes chunk indices from a shared counter until none are left; the caller
// waits for every chunk, makes the generation even, and waits until no worker is inside the job
// before the next job may be written. A worker announces itself (`active`) and then re-checks the
// generation before reading the job, so it never reads a job that is being rewritten. Workers spin
// briefly between jobs (kernels follow each other closely) and then sleep on a condition variable.
// Nothing is allocated per job.

import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool()

    private let generation = Atomic<Int>(0)
    private let nextIndex = Atomic<Int>(0)
    private let remaining = Atomic<Int>(0)
    private let active = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    private let sleepers = Atomic<Int>(0)
    /// The job: a capture-free function and the address of its context on the caller's stack.
    private var invoke: ((UnsafeRawPointer, Int) -> Void)? = nil
    private var context: UnsafeRawPointer? = nil
    private var count = 0
    private var participants = 0
    private var workerCount = 0
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    private init() {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    /// Starts workers until there are `n`.
    private func ensureWorkers(_ n: Int) {
        while workerCount < n {
            let index = workerCount
            workerCount += 1
            let box = Unmanaged.passRetained(WorkerStart(pool: self, index: index)).toOpaque()
            var thread = pthread_t()
            let rc = pthread_create(&thread, nil, { raw in
                #if canImport(Darwin)
                let start = Unmanaged<WorkerStart>.fromOpaque(raw).takeRetainedValue()
                #else
                let start = Unmanaged<WorkerStart>.fromOpaque(raw!).takeRetainedValue()
                #endif
                start.pool.workerLoop(index: start.index)
                return nil
            }, box)
            precondition(rc == 0, "could not start a worker thread (pthread_create returned \(rc))")
            pthread_detach(thread)
        }
    }

    func run(count: Int, threads: Int, context: UnsafeRawPointer, _ invoke: @escaping (UnsafeRawPointer, Int) -> Void) {
        // Nested or concurrent calls run serially in the calling thread.
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for i in 0..<count { invoke(context, i) }
            return
        }
        defer { busy.store(false, ordering: .releasing) }
        let helpers = min(threads, count) - 1
        ensureWorkers(helpers)
        self.invoke = invoke
        self.context = context
        self.count = count
        self.participants = helpers
        nextIndex.store(0, ordering: .sequentiallyConsistent)
        remaining.store(count, ordering: .sequentiallyConsistent)
        generation.add(1, ordering: .sequentiallyConsistent)  // odd: running
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
            pthread_mutex_lock(mutex)
            pthread_cond_broadcast(condition)
            pthread_mutex_unlock(mutex)
        }
        work(invoke, context, count: count)
        var spins = 0
        while remaining.load(ordering: .acquiring) > 0 {
            spins += 1
            if spins > 1000 { sched_yield() }
        }
        generation.add(1, ordering: .sequentiallyConsistent)  // even: idle
        while active.load(ordering: .sequentiallyConsistent) > 0 { sched_yield() }
        self.invoke = nil
        self.context = nil
    }

    @inline(__always)
    private func work(_ invoke: (UnsafeRawPointer, Int) -> Void, _ context: UnsafeRawPointer, count: Int) {
        while true {
            let i = nextIndex.add(1, ordering: .relaxed).oldValue
            if i >= count { return }
            invoke(context, i)
            remaining.subtract(1, ordering: .releasing)
        }
    }

    private func workerLoop(index: Int) {
        var seen = 0
        while true {
            // Wait for a running job we have not joined yet: spin first, then sleep.
            var spins = 0
            var current = generation.load(ordering: .acquiring)
            while current == seen || current & 1 == 0 {
                spins += 1
                if spins < 20_000 {
                    current = generation.load(ordering: .acquiring)
                    continue
                }
                pthread_mutex_lock(mutex)
                sleepers.add(1, ordering: .sequentiallyConsistent)
                current = generation.load(ordering: .sequentiallyConsistent)
                if current == seen || current & 1 == 0 { pthread_cond_wait(condition, mutex) }
                sleepers.subtract(1, ordering: .sequentiallyConsistent)
                pthread_mutex_unlock(mutex)
                current = generation.load(ordering: .acquiring)
                spins = 0
            }
            seen = current
            active.add(1, ordering: .sequentiallyConsistent)
            if generation.load(ordering: .sequentiallyConsistent) == current, index < participants,
               let invoke, let context {
                work(invoke, context, count: count)
            }
            active.subtract(1, ordering: .sequentiallyConsistent)
        }
    }
}

private final class WorkerStart {
    let pool: WorkerPool
    let index: Int
    init(pool: WorkerPool, index: Int) {
        self.pool = pool
        self.index = index
    }
}
