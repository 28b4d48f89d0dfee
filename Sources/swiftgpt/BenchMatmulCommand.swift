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
    @Option(help: """
        Decode-shaped product instead: this many input rows (1-32) times a (--outputs, --size) weight \
        matrix, cycling through enough weight copies (~512 MB) that every product reads its weights \
        from memory, as generation does.
        """) var rows: Int?
    @Option(help: "Output channels of the decode-shaped product (with --rows).") var outputs: Int = 3072
    @Option(help: "With --rows: the weight layout, rows (as stored) or panels (the packed copy several-sequence decoding uses).")
    var layout: String = "rows"
    @Flag(help: "With --rows: one weight copy, read from cache after the first run (arithmetic alone, no memory stream).")
    var inCache = false
    @Flag(help: "Print one JSON object on the last line.") var json = false

    func run() async throws {
        guard size > 0, size <= 16384 else { throw ValidationError("--size must be in 1...16384") }
        guard repeats > 0 else { throw ValidationError("--repeats must be positive") }
        if let rows {
            guard (1...32).contains(rows), outputs > 0, outputs <= 65536 else {
                throw ValidationError("--rows must be in 1...32 and --outputs in 1...65536")
            }
            guard layout == "rows" || layout == "panels" else { throw ValidationError("--layout must be rows or panels, got '\(layout)'") }
            let r = try MatmulBenchmark.runDecodeShaped(rows: rows, channels: size, outputs: outputs, repeats: repeats,
                                                         inCache: inCache, panels: layout == "panels")
            if json {
                print(try jsonLine(r))
            } else {
                print("\(rows) rows × (\(outputs)×\(size)) weights (\(layout)) from \(inCache ? "cache" : "memory"): \(fmt(r.gflops)) GFLOP/s, "
                      + "weights streamed at \(fmt(r.gbPerSec)) GB/s (\(fmt(r.microseconds, 1)) µs per product)")
            }
            return
        }
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

struct DecodeMatmulResult: Codable {
    var rows: Int
    var channels: Int
    var outputs: Int
    var layout: String
    var gflops: Double
    var gbPerSec: Double
    var microseconds: Double

    enum CodingKeys: String, CodingKey {
        case rows, channels, outputs, layout, gflops, microseconds
        case gbPerSec = "gb_per_sec"
    }
}

enum MatmulBenchmark {
    /// Median seconds of `repeats` runs of `body`, after one untimed warm-up run.
    static func medianSeconds(repeats: Int, _ body: () -> Void) -> Double {
        body()
        var times: [Double] = []
        for _ in 0..<repeats {
            let t0 = Clock.now()
            body()
            times.append(Clock.now() - t0)
        }
        return times.sorted()[times.count / 2]
    }

    /// `rows` inputs against (outputs, channels) weights that are not in cache: the products of one
    /// decoding step. Enough weight copies to exceed the last-level cache are used in turn.
    static func runDecodeShaped(rows: Int, channels: Int, outputs: Int, repeats: Int, inCache: Bool,
                                panels: Bool = false) throws -> DecodeMatmulResult {
        let backend = CPUBackend()
        let perCopy = channels * outputs
        let copies = inCache ? 1 : max(2, (128 << 20) / perCopy)
        let w = try backend.allocate(perCopy * copies)
        let x = try backend.allocate(rows * channels), y = try backend.allocate(rows * outputs)
        defer { backend.deallocate(w); backend.deallocate(x); backend.deallocate(y) }
        var rng = SeededRandom(seed: 1)
        for i in 0..<w.count { w.pointer[i] = rng.nextUniform() - 0.5 }
        for i in 0..<x.count { x.pointer[i] = rng.nextUniform() - 0.5 }
        let perPacked = backend.panelFloats(rows: outputs, C: channels)
        let packed = panels ? try backend.allocate(perPacked * copies) : nil
        defer { if let packed { backend.deallocate(packed) } }
        if let packed {
            for c in 0..<copies {
                backend.packPanels(weight: w.slice(c * perCopy, perCopy), into: packed.slice(c * perPacked, perPacked),
                                   rows: outputs, C: channels)
            }
        }
        let t = medianSeconds(repeats: repeats) {
            for c in 0..<copies {
                if let packed {
                    backend.matmulPanelForward(out: y, input: x, weight: w.slice(c * perCopy, perCopy),
                                               panels: packed.slice(c * perPacked, perPacked), bias: nil,
                                               N: rows, C: channels, OC: outputs)
                } else {
                    backend.matmulForward(out: y, input: x, weight: w.slice(c * perCopy, perCopy), bias: nil,
                                          N: rows, C: channels, OC: outputs)
                }
            }
        } / Double(copies)
        return DecodeMatmulResult(rows: rows, channels: channels, outputs: outputs, layout: panels ? "panels" : "rows",
                                  gflops: 2 * Double(rows * perCopy) / t / 1e9,
                                  gbPerSec: Double(perCopy * 4) / t / 1e9, microseconds: t * 1e6)
    }

    static func run(size n: Int, repeats: Int) throws -> MatmulResult {
        let backend = CPUBackend()
        let a = try backend.allocate(n * n), b = try backend.allocate(n * n), c = try backend.allocate(n * n)
        defer { backend.deallocate(a); backend.deallocate(b); backend.deallocate(c) }
        var rng = SeededRandom(seed: 1)
        for i in 0..<(n * n) { a.pointer[i] = rng.nextUniform() - 0.5; b.pointer[i] = rng.nextUniform() - 0.5 }
        let flops = 2 * Double(n) * Double(n) * Double(n)
        func median(_ body: () -> Void) -> Double { medianSeconds(repeats: repeats, body) }
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
