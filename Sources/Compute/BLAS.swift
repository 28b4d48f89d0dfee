// Single-precision matrix products through a system BLAS, loaded at run time.
//
// Why run time: Debian's OpenBLAS 0.3.21 does not recognise some recent Intel CPUs and silently
// falls back to a generic kernel (8x slower). It reads OPENBLAS_CORETYPE only when the library is
// loaded, so setting it from main() is too late for a linked library. We therefore `dlopen` it
// ourselves after choosing the core type from CPUID; the user never has to know.
//
// Threading: SwiftGPT parallelises over fixed output chunks itself (see Parallel.swift) and calls
// BLAS single-threaded from each worker, which keeps results independent of the core count and
// avoids two thread pools fighting over the cores. That needs a BLAS that may be called from
// several threads at once: Debian's threaded OpenBLAS (set to one thread) is; its "serial"
// build is not (it shares unlocked buffers and corrupted results here), so it is never loaded.

import CSupport

#if canImport(Accelerate)
import Accelerate
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Row-major single-precision GEMM: C = alpha * op(A) * op(B) + beta * C.
public typealias SgemmFunction = @convention(c) (
    Int32, Int32, Int32, Int32, Int32, Int32, Float,
    UnsafePointer<Float>?, Int32, UnsafePointer<Float>?, Int32, Float,
    UnsafeMutablePointer<Float>?, Int32
) -> Void

/// The BLAS library in use, found once per process.
public struct BLASLibrary: Sendable {
    /// Path or framework name of the library.
    public let path: String
    /// The kernel family the library reports (OpenBLAS core name) or a description.
    public let coreName: String
    /// The core type SwiftGPT asked OpenBLAS for, when it set one.
    public let requestedCoreType: String?
    /// False when no system BLAS was found and the portable Swift kernel is used.
    public let isSystem: Bool
    let sgemm: SgemmFunction?
    let setThreads: (@convention(c) (Int32) -> Void)?

    /// The process-wide library, loaded on first use.
    public static let shared: BLASLibrary = load()

    /// Environment variable naming a BLAS shared library to use instead of the search list.
    public static let overrideVariable = "SWIFTGPT_BLAS"

    static func load() -> BLASLibrary {
        #if canImport(Accelerate)
        return BLASLibrary(path: "Accelerate.framework", coreName: "Accelerate", requestedCoreType: nil,
                           isSystem: true, sgemm: nil, setThreads: nil)
        #else
        let features = CPUFeatures.current
        var requested: String? = nil
        if getenv("OPENBLAS_CORETYPE") == nil, let core = features.openBLASCoreType {
            setenv("OPENBLAS_CORETYPE", core, 1)
            requested = core
        }
        // We call BLAS from our own workers; a threaded OpenBLAS must not start its own pool.
        if getenv("OPENBLAS_NUM_THREADS") == nil { setenv("OPENBLAS_NUM_THREADS", "1", 1) }
        var candidates: [String] = []
        if let override = getenv(overrideVariable) {
            let path = String(cString: override)
            if path == "none" {
                return BLASLibrary(path: "none (portable Swift kernel, \(overrideVariable)=none)", coreName: "swift",
                                   requestedCoreType: nil, isSystem: false, sgemm: nil, setThreads: nil)
            }
            candidates.append(path)
        }
        for dir in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
                    "/usr/local/lib"] {
            candidates.append("\(dir)/openblas-pthread/libopenblas.so.0")
            candidates.append("\(dir)/libopenblas.so.0")
        }
        candidates += ["libopenblas.so.0", "libopenblas.so", "libblis.so.4", "libblas.so.3"]
        for path in candidates {
            guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else { continue }
            guard let symbol = dlsym(handle, "cblas_sgemm") else { dlclose(handle); continue }
            typealias SetThreads = @convention(c) (Int32) -> Void
            let setThreads = dlsym(handle, "openblas_set_num_threads").map { unsafeBitCast($0, to: SetThreads.self) }
            setThreads?(1)
            var core = "unknown"
            if let getCore = dlsym(handle, "openblas_get_corename") {
                typealias GetCore = @convention(c) () -> UnsafePointer<CChar>?
                if let name = unsafeBitCast(getCore, to: GetCore.self)() { core = String(cString: name) }
            }
            return BLASLibrary(path: path, coreName: core, requestedCoreType: requested, isSystem: true,
                               sgemm: unsafeBitCast(symbol, to: SgemmFunction.self), setThreads: setThreads)
        }
        // Say so once: everything still works, but OpenBLAS is faster for training and prefill.
        let note = """
            swiftgpt: no system BLAS found (looked for OpenBLAS, BLIS and libblas); using SwiftGPT's own \
            matrix kernel, which is correct but slower than OpenBLAS for training and prompt processing. \
            For full speed install OpenBLAS (Debian/Ubuntu: sudo apt-get install libopenblas-dev) or point \
            \(overrideVariable) at a BLAS library; \(overrideVariable)=none silences this note.

            """
        note.withCString { _ = write(2, $0, strlen($0)) }
        return BLASLibrary(path: "none (portable Swift kernel)", coreName: "swift", requestedCoreType: nil,
                           isSystem: false, sgemm: nil, setThreads: nil)
        #endif
    }

    /// Runs `body` with the library's own thread pool set to `threads`, then back to one thread.
    /// Only for benchmarks that measure what OpenBLAS reaches on its own; nil when the library
    /// has no thread control.
    public func withLibraryThreads<R>(_ threads: Int, _ body: () -> R) -> R? {
        guard let setThreads else { return nil }
        setThreads(Int32(threads))
        defer { setThreads(1) }
        return body()
    }

    /// A one-line description for logs and benchmark output.
    public var summary: String {
        var text = "\(path) [core \(coreName)"
        if let requestedCoreType { text += ", OPENBLAS_CORETYPE=\(requestedCoreType) set by SwiftGPT" }
        return text + "]"
    }
}

/// Row-major, single-threaded GEMM on host memory:
/// C[M,N] = alpha * op(A) * op(B) + beta * C, with op(A) = A or Aᵀ, op(B) = B or Bᵀ.
@inline(__always)
public func sgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if m == 0 || n == 0 { return }
    #if canImport(Accelerate)
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    #else
    if let f = BLASLibrary.shared.sgemm {
        // CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112.
        f(101, transA ? 112 : 111, transB ? 112 : 111, Int32(m), Int32(n), Int32(k), alpha,
          a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    } else {
        portableSgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                      a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }
    #endif
}

/// The textbook triple loop: the test oracle. Correct, not fast.
public func referenceSgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    for i in 0..<m {
        let crow = c + i * ldc
        if beta == 0 {
            for j in 0..<n { crow[j] = 0 }
        } else if beta != 1 {
            for j in 0..<n { crow[j] *= beta }
        }
        for p in 0..<k {
            let aip = alpha * (transA ? a[p * lda + i] : a[i * lda + p])
            if aip == 0 { continue }
            if transB {
                for j in 0..<n { crow[j] += aip * b[j * ldb + p] }
            } else {
                let brow = b + p * ldb
                for j in 0..<n { crow[j] += aip * brow[j] }
            }
        }
    }
}
