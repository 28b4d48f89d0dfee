import ArgumentParser
import Compute
import Model

struct BenchMatmulCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matmul",
        abstract: "GFLOP/s of single-precision matrix products (the kernel under every layer).",
        discussion: """
            Times C = A·Bᵀ for square matrices of --size through the CPU backend (all cores) and \
            through one BLAS call on one core. Shows which BLAS library and kernel were loaded.
            """
    )

    @Option(help: "Matrix size n for an n×n×n product.") var size: Int = 1024
    @Option(help: "Timed repetitions (the median is reported).") var repeats: Int = 10
    @Flag(help: "Print one JSON object on the last line.") var json = false

    func run() async throws {
        guard size > 0, size <= 16384 else { throw ValidationError("--size must be in 1...16384") }
        guard repeats > 0 else { throw ValidationError("--repeats must be positive") }
        let result = try MatmulBenchmark.run(size: size, repeats: repeats)
        if json {
            print(try jsonLine(result))
        } else {
            let lib = BLASLibrary.shared
            print("BLAS: \(lib.summary); CPU: \(CPUFeatures.current); threads: \(Parallel.threadCount)")
            print("sgemm \(size)³: \(fmt(result.gflops)) GFLOP/s on \(result.threads) threads, "
                  + "\(fmt(result.gflopsOneThread)) GFLOP/s on one thread")
            if let lib = result.gflopsLibraryThreaded {
                print("the BLAS library's own threading on \(result.threads) threads: \(fmt(lib)) GFLOP/s "
                      + "(SwiftGPT reaches \(fmt(100 * result.gflops / lib, 0))% of it)")
            }
        }
    }
}

struct MatmulResult: Codable {
    var size: Int
    var gflops: Double
    var gflopsOneThread: Double
    /// The same product with the BLAS library's own multi-threading (the "correctly configured
    /// OpenBLAS" reference).
    var gflopsLibraryThreaded: Double?
    var threads: Int
    var blas: String
    var blasCore: String
    var cpu: String

    enum CodingKeys: String, CodingKey {
        case size, gflops, threads, blas, cpu
        case gflopsOneThread = "gflops_1t"
        case blasCore = "blas_core"
        case gflopsLibraryThreaded = "gflops_blas_threaded"
    }
}

enum MatmulBenchmark {
    static func run(size n: Int, repeats: Int) throws -> MatmulResult {
        let backend = CPUBackend()
        let a = try backend.allocate(n * n), b = try backend.allocate(n * n), c = try backend.allocate(n * n)
        defer { backend.deallocate(a); backend.deallocate(b); backend.deallocate(c) }
        var rng = SeededRandom(seed: 1)
        for i in 0..<(n * n) { a.pointer[i] = rng.nextUniform() - 0.5; b.pointer[i] = rng.nextUniform() - 0.5 }
        let flops = 2 * Double(n) * Double(n) * Double(n)
        func median(_ body: () -> Void) -> Double {
            body()  // warm-up
            var times: [Double] = []
            for _ in 0..<repeats {
                let t0 = Clock.now()
                body()
                times.append(Clock.now() - t0)
            }
            return times.sorted()[times.count / 2]
        }
        let all = median { backend.matmulForward(out: c, input: a, weight: b, bias: nil, N: n, C: n, OC: n) }
        let one = median {
            sgemm(transA: false, transB: true, m: n, n: n, k: n, alpha: 1, a: a.pointer, lda: n, b: b.pointer, ldb: n,
                  beta: 0, c: c.pointer, ldc: n)
        }
        let lib = BLASLibrary.shared
        let threaded = lib.withLibraryThreads(Parallel.threadCount) {
            median {
                sgemm(transA: false, transB: true, m: n, n: n, k: n, alpha: 1, a: a.pointer, lda: n, b: b.pointer,
                      ldb: n, beta: 0, c: c.pointer, ldc: n)
            }
        }
        return MatmulResult(size: n, gflops: flops / all / 1e9, gflopsOneThread: flops / one / 1e9,
                            gflopsLibraryThreaded: threaded.map { flops / $0 / 1e9 },
                            threads: Parallel.threadCount, blas: lib.path, blasCore: lib.coreName,
                            cpu: CPUFeatures.current.description)
    }
}
