// The CPU backend: host memory, kernels in CPUBackend+*.swift, BLAS for matrix products.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum ComputeError: Error, CustomStringConvertible {
    case outOfMemory(requestedBytes: Int)
    case unsupported(String)

    public var description: String {
        switch self {
        case .outOfMemory(let bytes):
            return "could not allocate \(bytes / 1_048_576) MiB. HINT: use a smaller batch size, context or model."
        case .unsupported(let what):
            return "\(what). HINT: use --kv-cache f32, or the cpu device."
        }
    }
}

public final class CPUBackend: Backend, @unchecked Sendable {
    public let name = "cpu"

    /// Per-chunk scratch for kernels that need it (attention blocks, partial sums). Grown on first
    /// use, then reused: steady-state steps allocate nothing.
    private var scratch: UnsafeMutablePointer<Float>? = nil
    private var scratchCount = 0
    private var doubleScratch: UnsafeMutablePointer<Double>? = nil
    private var doubleScratchCount = 0
    private let lock = NSLockLike()

    public init() {}

    deinit {
        scratch.map { UnsafeMutableRawPointer($0).deallocate() }
        doubleScratch?.deallocate()
    }

    /// Scratch floats, at least `count` of them, starting on a 64-byte boundary (a cache line:
    /// vector loads from packed operands never straddle two). Not reentrant across concurrent
    /// kernel calls.
    func scratchFloats(_ count: Int) -> UnsafeMutablePointer<Float> {
        lock.lock(); defer { lock.unlock() }
        if count > scratchCount {
            scratch.map { UnsafeMutableRawPointer($0).deallocate() }
            scratch = UnsafeMutableRawPointer.allocate(byteCount: count * MemoryLayout<Float>.stride, alignment: 64)
                .bindMemory(to: Float.self, capacity: count)
            scratchCount = count
        }
        return scratch!
    }

    func scratchDoubles(_ count: Int) -> UnsafeMutablePointer<Double> {
        lock.lock(); defer { lock.unlock() }
        if count > doubleScratchCount {
            doubleScratch?.deallocate()
            doubleScratch = UnsafeMutablePointer<Double>.allocate(capacity: count)
            doubleScratchCount = count
        }
        return doubleScratch!
    }

    // MARK: Memory

    public func allocate(_ count: Int) throws -> FloatBuffer {
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let raw = try allocateZeroed(bytes: bytes)
        return FloatBuffer(pointer: raw.bindMemory(to: Float.self, capacity: count), count: count)
    }

    /// Zero-filled memory for `free`: 64-byte aligned; from `hugePageThreshold` bytes up, aligned to
    /// 2 MB and marked for transparent huge pages before it is first touched. Streaming hundreds of
    /// megabytes of weights through 4 KB pages costs a TLB miss every 4 KB, and the hardware
    /// prefetchers stop at each page edge.
    func allocateZeroed(bytes: Int) throws -> UnsafeMutableRawPointer {
        var raw: UnsafeMutableRawPointer? = nil
        let huge = bytes >= CPUBackend.hugePageThreshold
        let alignment = huge ? CPUBackend.hugePageSize : 64
        let rounded = (bytes + alignment - 1) / alignment * alignment
        guard posix_memalign(&raw, alignment, rounded) == 0, let raw else {
            throw ComputeError.outOfMemory(requestedBytes: bytes)
        }
        if huge { _ = madvise(raw, rounded, MADV_HUGEPAGE) }  // advice only: 4 KB pages if refused
        memset(raw, 0, bytes)
        return raw
    }

    static let hugePageSize = 2 << 20
    static let hugePageThreshold = 4 << 20

    public func deallocate(_ buffer: FloatBuffer) { free(buffer.pointer) }

    public func allocateTokens(_ count: Int) throws -> TokenBuffer {
        let p = UnsafeMutablePointer<Int32>.allocate(capacity: max(count, 1))
        p.initialize(repeating: 0, count: max(count, 1))
        return TokenBuffer(pointer: p, count: count)
    }

    public func deallocateTokens(_ buffer: TokenBuffer) { buffer.pointer.deallocate() }

    public func upload(_ values: UnsafeBufferPointer<Float>, to buffer: FloatBuffer) {
        precondition(values.count <= buffer.count)
        if let base = values.baseAddress { buffer.pointer.update(from: base, count: values.count) }
    }

    public func download(_ buffer: FloatBuffer, into values: UnsafeMutableBufferPointer<Float>) {
        precondition(values.count <= buffer.count)
        if let base = values.baseAddress { base.update(from: buffer.pointer, count: values.count) }
    }

    public func uploadTokens(_ values: UnsafeBufferPointer<Int32>, to buffer: TokenBuffer) {
        precondition(values.count <= buffer.count)
        if let base = values.baseAddress { buffer.pointer.update(from: base, count: values.count) }
    }

    public func zero(_ buffer: FloatBuffer) {
        let p = buffer.pointer
        let n = buffer.count
        let chunks = Parallel.chunkCount(n, minItemsPerChunk: 1 << 18)
        Parallel.forEachRange(n, chunks: chunks, p) { p, r in
            memset(p + r.lowerBound, 0, r.count * MemoryLayout<Float>.stride)
        }
    }

    public func copy(from source: FloatBuffer, to destination: FloatBuffer) {
        precondition(source.count <= destination.count)
        destination.pointer.update(from: source.pointer, count: source.count)
    }

    public func synchronize() {}
}

/// A tiny pthread mutex (Foundation's NSLock would pull in all of Foundation). Also guards the
/// CUDA backend's scratch buffers and its one-time kernel compilation.
public final class NSLockLike: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    public init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }
    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }
    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }
}
