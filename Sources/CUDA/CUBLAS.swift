// cuBLAS, loaded at run time: fp32 GEMM for the fully connected layers.
//
// cuBLAS is column-major; our matrices are row-major. A row-major (r × c) matrix is the
// column-major (c × r) matrix of its transpose, so each product below is written for the transposes
// (see CUDABackend+Matmul in CUDABackend.swift for the three products and their arguments).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

final class CUBLAS: @unchecked Sendable {
    typealias Handle = OpaquePointer

    /// cublasOperation_t
    enum Operation: Int32 {
        case none = 0
        case transpose = 1
    }

    let library: DynamicLibrary
    let handle: Handle
    private let cublasSgemm: @convention(c) (Handle?, Int32, Int32, Int32, Int32, Int32, UnsafePointer<Float>, UInt64, Int32,
                                             UInt64, Int32, UnsafePointer<Float>, UInt64, Int32) -> Int32
    private let cublasGetStatusString: (@convention(c) (Int32) -> UnsafePointer<CChar>?)?

    /// Opens cuBLAS (the emulator's when SWIFTGPT_CUDA_EMULATOR is set), creates a handle and binds
    /// it to `stream`.
    init(stream: OpaquePointer?) throws(CUDAError) {
        if let emulator = environment("SWIFTGPT_CUDA_EMULATOR") {
            library = try DynamicLibrary.open([emulator], library: "the CUDA emulator", hint: "build it with Tools/cuda/emulator/build.sh")
        } else {
            let names = ["libcublas.so", "libcublas.so.13", "libcublas.so.12"]
            library = try DynamicLibrary.open(
                CUDALibrarySearch.candidates(names, wheelFolders: ["cu13/lib", "cublas/lib"]), library: "cuBLAS (libcublas.so)",
                hint: "install the CUDA toolkit (or `pip install nvidia-cublas`) and set SWIFTGPT_CUDA_LIB_PATH to its lib folder.")
        }
        let create: @convention(c) (UnsafeMutablePointer<Handle?>) -> Int32 = try library.symbol("cublasCreate_v2")
        let setStream: @convention(c) (Handle?, OpaquePointer?) -> Int32 = try library.symbol("cublasSetStream_v2")
        cublasSgemm = try library.symbol("cublasSgemm_v2")
        cublasGetStatusString = library.optionalSymbol("cublasGetStatusString")
        var h: Handle? = nil
        let status = create(&h)
        guard status == 0, let h else {
            throw .cublas(call: "cublasCreate_v2", status: status, name: Self.statusName(status, cublasGetStatusString))
        }
        handle = h
        let bound = setStream(handle, stream)
        guard bound == 0 else {
            throw .cublas(call: "cublasSetStream_v2", status: bound, name: Self.statusName(bound, cublasGetStatusString))
        }
    }

    private static func statusName(_ status: Int32, _ lookup: (@convention(c) (Int32) -> UnsafePointer<CChar>?)?) -> String {
        lookup?(status).map { String(cString: $0) } ?? "CUBLAS_STATUS \(status)"
    }

    /// C (m × n, column-major) = alpha·op(A)·op(B) + beta·C on device pointers.
    func sgemm(_ transA: Operation, _ transB: Operation, m: Int, n: Int, k: Int, alpha: Float, a: UInt64, lda: Int,
               b: UInt64, ldb: Int, beta: Float, c: UInt64, ldc: Int) throws(CUDAError) {
        var alpha = alpha, beta = beta
        let status = cublasSgemm(handle, transA.rawValue, transB.rawValue, Int32(m), Int32(n), Int32(k), &alpha, a, Int32(lda),
                                 b, Int32(ldb), &beta, c, Int32(ldc))
        guard status == 0 else {
            throw .cublas(call: "cublasSgemm_v2(m: \(m), n: \(n), k: \(k))", status: status,
                          name: Self.statusName(status, cublasGetStatusString))
        }
    }
}
