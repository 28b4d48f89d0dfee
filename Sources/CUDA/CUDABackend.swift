// The CUDA backend: device memory through the driver API, matrix products through cuBLAS, every
// other layer through the kernels of CUDAKernelSource (compiled at start-up by NVRTC, PTX cached
// on disk). Semantics are the CPU backend's, call for call (Compute/CPUBackend+*.swift is the
// specification); FloatBuffer.pointer holds a device address, which the host never dereferences.
//
// All work goes to one stream in order; host copies (upload, download, sumOfSquares) wait for it.
// Errors inside a Backend call (which cannot throw) stop the program with the CUDA error's name.
//
// Legend: B batch, T time, C channels, NH heads, KVH key/value heads, hs head size, N rows,
// OC output channels, V / Vp vocabulary / padded vocabulary.

import Compute

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One kernel parameter, as cuLaunchKernel reads it (by the kernel's declared type).
enum KernelArgument {
    case pointer(UInt64)
    case int(Int)
    case long(Int)
    case float(Float)
    case u64(UInt64)

    /// The argument's bytes in a 64-bit slot (little-endian: 32-bit values sit in the low half).
    var bits: UInt64 {
        switch self {
        case .pointer(let p): return p
        case .int(let v): return UInt64(UInt32(bitPattern: Int32(v)))  // traps rather than wrapping past 2³¹
        case .long(let v): return UInt64(bitPattern: Int64(v))
        case .float(let v): return UInt64(v.bitPattern)
        case .u64(let v): return v
        }
    }
}

/// The compiled module's kernels, looked up once by name.
struct CUDAKernels {
    typealias Function = OpaquePointer?
    var encoderForward, encoderBackwardWTE, encoderBackwardWPE, embedForward: Function
    var layerNormForward, layerNormBackwardInput, layerNormParamPartial, columnSumsPartial: Function
    var rmsNormParamPartial, accumulatePartials, rmsNormForward, rmsNormBackwardInput: Function
    var rotary, swigluForward, swigluBackward, geluForward, geluBackward, residualForward, dropout, addBias: Function
    var crossEntropy, attentionForward, attentionBackwardQuery, attentionBackwardKV: Function
    var kvCacheWrite, cachedAttention, copyCacheSlot, quantizeRows, matmulInt8, dequantizeRows: Function
    var sumSquaresPartial, sumSquaresFinal, adamw: Function

    init(_ get: (String) throws(CUDAError) -> Function) throws(CUDAError) {
        encoderForward = try get("sg_encoder_forward")
        encoderBackwardWTE = try get("sg_encoder_backward_wte")
        encoderBackwardWPE = try get("sg_encoder_backward_wpe")
        embedForward = try get("sg_embed_forward")
        layerNormForward = try get("sg_layernorm_forward")
        layerNormBackwardInput = try get("sg_layernorm_backward_input")
        layerNormParamPartial = try get("sg_layernorm_param_partial")
        columnSumsPartial = try get("sg_column_sums_partial")
        rmsNormParamPartial = try get("sg_rmsnorm_param_partial")
        accumulatePartials = try get("sg_accumulate_partials")
        rmsNormForward = try get("sg_rmsnorm_forward")
        rmsNormBackwardInput = try get("sg_rmsnorm_backward_input")
        rotary = try get("sg_rotary")
        swigluForward = try get("sg_swiglu_forward")
        swigluBackward = try get("sg_swiglu_backward")
        geluForward = try get("sg_gelu_forward")
        geluBackward = try get("sg_gelu_backward")
        residualForward = try get("sg_residual_forward")
        dropout = try get("sg_dropout")
        addBias = try get("sg_add_bias")
        crossEntropy = try get("sg_cross_entropy")
        attentionForward = try get("sg_attention_forward")
        attentionBackwardQuery = try get("sg_attention_backward_query")
        attentionBackwardKV = try get("sg_attention_backward_kv")
        kvCacheWrite = try get("sg_kv_cache_write")
        cachedAttention = try get("sg_cached_attention")
        copyCacheSlot = try get("sg_copy_cache_slot")
        quantizeRows = try get("sg_quantize_rows")
        matmulInt8 = try get("sg_matmul_int8")
        dequantizeRows = try get("sg_dequantize_rows")
        sumSquaresPartial = try get("sg_sum_squares_partial")
        sumSquaresFinal = try get("sg_sum_squares_final")
        adamw = try get("sg_adamw")
    }
}

public final class CUDABackend: Backend, @unchecked Sendable {
    public let name = "cuda"
    /// The device's name as the driver reports it.
    public let deviceName: String
    /// "sm_90" and the like: what the kernels were compiled for.
    public let architecture: String

    let driver: CUDADriver
    let blas: CUBLAS
    private let context: OpaquePointer?
    private let stream: OpaquePointer?
    private let kernels: CUDAKernels
    private let maxSharedBytes: Int
    /// Dynamic shared memory each kernel may use beyond the default 48 KiB (set on first need).
    private var sharedLimit: [UInt: Int] = [:]
    /// Device scratch by purpose, grown on demand (steady-state steps allocate nothing).
    private var scratch: [ScratchSlot: (pointer: UInt64, bytes: Int)] = [:]
    private let lock = NSLockLike()

    enum ScratchSlot: Hashable { case partials, delta, sums, dequantized }

    /// The compiled PTX per option set, shared by every backend of the process.
    nonisolated(unsafe) private static var compiled: [String: String] = [:]
    private static let compileLock = NSLockLike()

    /// Opens device `deviceIndex`: driver, primary context, one stream, the kernels (NVRTC, or the
    /// PTX cache), cuBLAS.
    public init(deviceIndex: Int = 0) throws {
        let driver = try CUDADriver.load()
        self.driver = driver
        try driver.check(driver.cuInit(0), "cuInit")
        var count: Int32 = 0
        try driver.check(driver.cuDeviceGetCount(&count), "cuDeviceGetCount")
        guard count > 0 else { throw CUDAError.noDevice("the driver reports no device") }
        guard deviceIndex >= 0 && deviceIndex < Int(count) else {
            throw CUDAError.noDevice("device \(deviceIndex) requested, but only \(count) present (0..<\(count))")
        }
        var device: Int32 = 0
        try driver.check(driver.cuDeviceGet(&device, Int32(deviceIndex)), "cuDeviceGet(\(deviceIndex))")
        deviceName = try driver.deviceName(device)
        let major = try driver.attribute(CUDADriver.Attribute.computeCapabilityMajor, device: device)
        let minor = try driver.attribute(CUDADriver.Attribute.computeCapabilityMinor, device: device)
        architecture = major > 0 ? "sm_\(major)\(minor)" : "sm_90"
        maxSharedBytes = max(48 * 1024, try driver.attribute(CUDADriver.Attribute.maxSharedMemoryPerBlockOptin, device: device))
        var context: OpaquePointer? = nil
        try driver.check(driver.cuDevicePrimaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain")
        try driver.check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent")
        self.context = context
        var stream: OpaquePointer? = nil
        try driver.check(driver.cuStreamCreate(&stream, 0), "cuStreamCreate")
        self.stream = stream

        let ptx = try Self.ptx(architecture: architecture)
        var module: OpaquePointer? = nil
        let loaded = ptx.withCString { driver.cuModuleLoadData(&module, $0) }
        try driver.check(loaded, "cuModuleLoadData (\(architecture))")
        kernels = try CUDAKernels { name throws(CUDAError) in
            var function: OpaquePointer? = nil
            let found = name.withCString { driver.cuModuleGetFunction(&function, module, $0) }
            try driver.check(found, "cuModuleGetFunction(\(name))")
            return function
        }
        blas = try CUBLAS(stream: stream)
    }

    deinit {
        _ = driver.cuCtxSetCurrent(context)
        _ = driver.cuStreamSynchronize(stream)
        for (_, s) in scratch { _ = driver.cuMemFree(s.pointer) }
    }

    /// NVRTC options for an architecture.
    static func compileOptions(architecture: String) -> [String] {
        ["--gpu-architecture=\(architecture)", "-default-device", "--std=c++17"]
    }

    private static func ptx(architecture: String) throws(CUDAError) -> String {
        let options = compileOptions(architecture: architecture)
        let key = options.joined(separator: " ") + (environment("SWIFTGPT_CUDA_EMULATOR") ?? "")
        compileLock.lock(); defer { compileLock.unlock() }
        if let ptx = compiled[key] { return ptx }
        let ptx = try NVRTC.load().cachedCompile(CUDAKernelSource.source, name: "swiftgpt_kernels.cu", options: options)
        compiled[key] = ptx
        return ptx
    }

    /// The first device's name and compute capability, or why CUDA cannot be used.
    public static func probe() -> Result<String, CUDAError> {
        do throws(CUDAError) {
            let driver = try CUDADriver.load()
            try driver.check(driver.cuInit(0), "cuInit")
            var count: Int32 = 0
            try driver.check(driver.cuDeviceGetCount(&count), "cuDeviceGetCount")
            guard count > 0 else { return .failure(.noDevice("the driver reports no device")) }
            var device: Int32 = 0
            try driver.check(driver.cuDeviceGet(&device, 0), "cuDeviceGet(0)")
            let name = try driver.deviceName(device)
            let major = try driver.attribute(CUDADriver.Attribute.computeCapabilityMajor, device: device)
            let minor = try driver.attribute(CUDADriver.Attribute.computeCapabilityMinor, device: device)
            return .success("\(name) (compute capability \(major).\(minor), \(count) device\(count == 1 ? "" : "s"))")
        } catch {
            return .failure(error)
        }
    }

    // MARK: Plumbing

    /// Stops the program on a CUDA failure inside a (non-throwing) Backend call.
    private func fail(_ error: CUDAError) -> Never {
        fatalError("CUDA backend: \(error)")
    }

    private func check(_ result: Int32, _ call: @autoclosure () -> String) {
        do throws(CUDAError) { try driver.check(result, call()) } catch { fail(error) }
    }

    /// Makes this backend's context current on the calling thread (calls may come from any thread).
    @inline(__always)
    private func bind() { _ = driver.cuCtxSetCurrent(context) }

    @inline(__always) private func dev(_ b: FloatBuffer) -> UInt64 { UInt64(UInt(bitPattern: b.pointer)) }
    @inline(__always) private func dev(_ b: FloatBuffer?) -> UInt64 { b.map { dev($0) } ?? 0 }
    @inline(__always) private func dev(_ b: TokenBuffer) -> UInt64 { UInt64(UInt(bitPattern: b.pointer)) }
    @inline(__always) private func dev(_ b: TokenBuffer?) -> UInt64 { b.map { dev($0) } ?? 0 }
    @inline(__always) private func dev(_ b: Int8Buffer) -> UInt64 { UInt64(UInt(bitPattern: b.pointer)) }

    /// Blocks of `block` threads covering `count` items.
    @inline(__always) private func blocks(_ count: Int, _ block: Int = 256) -> Int { (count + block - 1) / block }

    /// Threads of a row kernel over C channels: a multiple of 32, at most 256.
    @inline(__always) private func rowThreads(_ C: Int) -> Int { min(256, max(32, (C + 31) / 32 * 32)) }

    private func launch(_ function: OpaquePointer?, _ name: StaticString, grid: (Int, Int, Int), block: (Int, Int, Int) = (256, 1, 1),
                        shared: Int = 0, _ arguments: [KernelArgument]) {
        guard grid.0 > 0 && grid.1 > 0 && grid.2 > 0 else { return }  // nothing to do
        bind()
        if shared > 48 * 1024 {
            let key = UInt(bitPattern: function.map { Int(bitPattern: $0) } ?? 0)
            lock.lock(); defer { lock.unlock() }
            if sharedLimit[key, default: 48 * 1024] < shared {
                guard shared <= maxSharedBytes else {
                    fail(.driver(call: "\(name)", code: 701, name: "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
                                 message: "needs \(shared) bytes of shared memory, the device allows \(maxSharedBytes) "
                                     + "(head size too large for the attention kernels)"))
                }
                check(driver.cuFuncSetAttribute(function, CUDADriver.maxDynamicSharedSizeAttribute, Int32(shared)),
                      "cuFuncSetAttribute(\(name), max dynamic shared = \(shared))")
                sharedLimit[key] = shared
            }
        }
        let count = arguments.count
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: count) { slots in
            withUnsafeTemporaryAllocation(of: UnsafeMutableRawPointer?.self, capacity: count) { params in
                for i in 0..<count {
                    slots[i] = arguments[i].bits
                    params[i] = UnsafeMutableRawPointer(slots.baseAddress! + i)
                }
                check(driver.cuLaunchKernel(function, UInt32(grid.0), UInt32(grid.1), UInt32(grid.2), UInt32(block.0),
                                            UInt32(block.1), UInt32(block.2), UInt32(shared), stream, params.baseAddress, nil),
                      "cuLaunchKernel(\(name), grid \(grid), block \(block), shared \(shared))")
            }
        }
    }

    /// Device scratch of at least `bytes` for one purpose. Growing frees the old buffer after the
    /// stream has finished with it (cuMemFree is not guaranteed to wait for queued kernels).
    private func scratchBuffer(_ slot: ScratchSlot, bytes: Int) -> UInt64 {
        lock.lock(); defer { lock.unlock() }
        if let s = scratch[slot], s.bytes >= bytes { return s.pointer }
        if let s = scratch[slot] { freeDevice(s.pointer) }
        bind()
        var p: UInt64 = 0
        check(driver.cuMemAlloc(&p, max(bytes, 256)), "cuMemAlloc_v2(\(bytes) bytes of scratch)")
        scratch[slot] = (p, max(bytes, 256))
        return p
    }

    private func allocateBytes(_ bytes: Int) throws -> UInt64 {
        bind()
        var p: UInt64 = 0
        let result = driver.cuMemAlloc(&p, max(bytes, 4))
        if result == 2 { throw ComputeError.outOfMemory(requestedBytes: bytes) }  // CUDA_ERROR_OUT_OF_MEMORY
        try driver.check(result, "cuMemAlloc_v2(\(bytes) bytes)")
        return p
    }

    // MARK: Memory

    public func allocate(_ count: Int) throws -> FloatBuffer {
        let p = try allocateBytes(max(count, 1) * 4)
        check(driver.cuMemsetD32Async(p, 0, max(count, 1), stream), "cuMemsetD32Async")
        return FloatBuffer(pointer: UnsafeMutablePointer(bitPattern: UInt(p))!, count: count)
    }

    /// Frees device memory after the stream's queued work (which may still use it) has finished:
    /// cuMemFree is not guaranteed to wait.
    private func freeDevice(_ address: UInt64) {
        bind()
        check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize")
        check(driver.cuMemFree(address), "cuMemFree_v2")
    }

    public func deallocate(_ buffer: FloatBuffer) { freeDevice(dev(buffer)) }

    public func allocateTokens(_ count: Int) throws -> TokenBuffer {
        let p = try allocateBytes(max(count, 1) * 4)
        check(driver.cuMemsetD32Async(p, 0, max(count, 1), stream), "cuMemsetD32Async")
        return TokenBuffer(pointer: UnsafeMutablePointer(bitPattern: UInt(p))!, count: count)
    }

    public func deallocateTokens(_ buffer: TokenBuffer) { freeDevice(dev(buffer)) }

    public func allocateInt8(_ count: Int) throws -> Int8Buffer {
        let p = try allocateBytes(max(count, 1))
        check(driver.cuMemsetD8Async(p, 0, max(count, 1), stream), "cuMemsetD8Async")
        return Int8Buffer(pointer: UnsafeMutablePointer(bitPattern: UInt(p))!, count: count)
    }

    public func deallocateInt8(_ buffer: Int8Buffer) { freeDevice(dev(buffer)) }

    public func upload(_ values: UnsafeBufferPointer<Float>, to buffer: FloatBuffer) {
        precondition(values.count <= buffer.count)
        guard let base = values.baseAddress, values.count > 0 else { return }
        bind()
        check(driver.cuMemcpyHtoD(dev(buffer), base, values.count * 4), "cuMemcpyHtoD_v2")
    }

    public func download(_ buffer: FloatBuffer, into values: UnsafeMutableBufferPointer<Float>) {
        precondition(values.count <= buffer.count)
        guard let base = values.baseAddress, values.count > 0 else { return }
        bind()
        check(driver.cuMemcpyDtoH(base, dev(buffer), values.count * 4), "cuMemcpyDtoH_v2")
    }

    public func uploadTokens(_ values: UnsafeBufferPointer<Int32>, to buffer: TokenBuffer) {
        precondition(values.count <= buffer.count)
        guard let base = values.baseAddress, values.count > 0 else { return }
        bind()
        check(driver.cuMemcpyHtoD(dev(buffer), base, values.count * 4), "cuMemcpyHtoD_v2")
    }

    public func zero(_ buffer: FloatBuffer) {
        guard buffer.count > 0 else { return }
        bind()
        check(driver.cuMemsetD32Async(dev(buffer), 0, buffer.count, stream), "cuMemsetD32Async")
    }

    public func copy(from source: FloatBuffer, to destination: FloatBuffer) {
        precondition(source.count <= destination.count)
        guard source.count > 0 else { return }
        bind()
        check(driver.cuMemcpyDtoDAsync(dev(destination), dev(source), source.count * 4, stream), "cuMemcpyDtoDAsync_v2")
    }

    public func synchronize() {
        bind()
        check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize")
    }

    // MARK: Embeddings

    public func encoderForward(out: FloatBuffer, tokens: TokenBuffer, wte: FloatBuffer, wpe: FloatBuffer?, B: Int, T: Int, C: Int) {
        launch(kernels.encoderForward, "sg_encoder_forward", grid: (blocks(B * T * C), 1, 1),
               [.pointer(dev(out)), .pointer(dev(tokens)), .pointer(dev(wte)), .pointer(dev(wpe)), .int(B), .int(T), .int(C)])
    }

    public func encoderBackward(dwte: FloatBuffer, dwpe: FloatBuffer?, dout: FloatBuffer, tokens: TokenBuffer, B: Int, T: Int, C: Int) {
        launch(kernels.encoderBackwardWTE, "sg_encoder_backward_wte", grid: (blocks(B * T * C), 1, 1),
               [.pointer(dev(dwte)), .pointer(dev(dout)), .pointer(dev(tokens)), .int(B * T), .int(C)])
        guard let dwpe else { return }
        launch(kernels.encoderBackwardWPE, "sg_encoder_backward_wpe", grid: (blocks(T * C), 1, 1),
               [.pointer(dev(dwpe)), .pointer(dev(dout)), .int(B), .int(T), .int(C)])
    }

    public func embedForward(out: FloatBuffer, tokens: TokenBuffer, positions: TokenBuffer, wte: FloatBuffer, wpe: FloatBuffer?,
                             N: Int, C: Int) {
        launch(kernels.embedForward, "sg_embed_forward", grid: (blocks(N * C), 1, 1),
               [.pointer(dev(out)), .pointer(dev(tokens)), .pointer(dev(positions)), .pointer(dev(wte)), .pointer(dev(wpe)),
                .int(N), .int(C)])
    }

    // MARK: Normalisation

    public func layerNormForward(out: FloatBuffer, mean: FloatBuffer, rstd: FloatBuffer, input: FloatBuffer, weight: FloatBuffer,
                                 bias: FloatBuffer, N: Int, C: Int) {
        launch(kernels.layerNormForward, "sg_layernorm_forward", grid: (N, 1, 1), block: (rowThreads(C), 1, 1),
               [.pointer(dev(out)), .pointer(dev(mean)), .pointer(dev(rstd)), .pointer(dev(input)), .pointer(dev(weight)),
                .pointer(dev(bias)), .int(N), .int(C)])
    }

    public func layerNormBackward(dinput: FloatBuffer, dweight: FloatBuffer, dbias: FloatBuffer, dout: FloatBuffer, input: FloatBuffer,
                                  weight: FloatBuffer, mean: FloatBuffer, rstd: FloatBuffer, N: Int, C: Int) {
        launch(kernels.layerNormBackwardInput, "sg_layernorm_backward_input", grid: (N, 1, 1), block: (rowThreads(C), 1, 1),
               [.pointer(dev(dinput)), .pointer(dev(dout)), .pointer(dev(input)), .pointer(dev(weight)), .pointer(dev(mean)),
                .pointer(dev(rstd)), .int(N), .int(C)])
        let rows = CUDAKernelSource.columnChunkRows, chunks = blocks(N, rows)
        let partialW = scratchBuffer(.partials, bytes: 2 * chunks * C * 4), partialB = partialW + UInt64(chunks * C * 4)
        launch(kernels.layerNormParamPartial, "sg_layernorm_param_partial", grid: (blocks(C, 32), chunks, 1), block: (32, 8, 1),
               [.pointer(partialW), .pointer(partialB), .pointer(dev(dout)), .pointer(dev(input)), .pointer(dev(mean)),
                .pointer(dev(rstd)), .int(N), .int(C), .int(rows)])
        accumulatePartials(into: dev(dweight), partial: partialW, chunks: chunks, C: C)
        accumulatePartials(into: dev(dbias), partial: partialB, chunks: chunks, C: C)
    }

    /// dst[c] += Σ_k partial[k, c], k in order.
    private func accumulatePartials(into dst: UInt64, partial: UInt64, chunks: Int, C: Int) {
        launch(kernels.accumulatePartials, "sg_accumulate_partials", grid: (blocks(C), 1, 1),
               [.pointer(dst), .pointer(partial), .int(chunks), .int(C)])
    }

    public func rmsNormForward(out: FloatBuffer, rstd: FloatBuffer, input: FloatBuffer, weight: FloatBuffer, N: Int, C: Int,
                               epsilon: Float) {
        launch(kernels.rmsNormForward, "sg_rmsnorm_forward", grid: (N, 1, 1), block: (rowThreads(C), 1, 1),
               [.pointer(dev(out)), .pointer(dev(rstd)), .pointer(dev(input)), .pointer(dev(weight)), .int(N), .int(C),
                .float(epsilon)])
    }

    public func rmsNormBackward(dinput: FloatBuffer, dweight: FloatBuffer, dout: FloatBuffer, input: FloatBuffer, weight: FloatBuffer,
                                rstd: FloatBuffer, N: Int, C: Int) {
        launch(kernels.rmsNormBackwardInput, "sg_rmsnorm_backward_input", grid: (N, 1, 1), block: (rowThreads(C), 1, 1),
               [.pointer(dev(dinput)), .pointer(dev(dout)), .pointer(dev(input)), .pointer(dev(weight)), .pointer(dev(rstd)),
                .int(N), .int(C)])
        let rows = CUDAKernelSource.columnChunkRows, chunks = blocks(N, rows)
        let partial = scratchBuffer(.partials, bytes: chunks * C * 4)
        launch(kernels.rmsNormParamPartial, "sg_rmsnorm_param_partial", grid: (blocks(C, 32), chunks, 1), block: (32, 8, 1),
               [.pointer(partial), .pointer(dev(dout)), .pointer(dev(input)), .pointer(dev(rstd)), .int(N), .int(C), .int(rows)])
        accumulatePartials(into: dev(dweight), partial: partial, chunks: chunks, C: C)
    }

    // MARK: Llama pieces

    public func rotaryEmbedding(_ qkv: FloatBuffer, positions: TokenBuffer?, N: Int, T: Int, heads NH: Int, kvHeads KVH: Int,
                                headSize hs: Int, theta: Float, inverse: Bool) {
        launch(kernels.rotary, "sg_rotary", grid: (N, NH + KVH, 1), block: (32, 1, 1),
               [.pointer(dev(qkv)), .pointer(dev(positions)), .int(N), .int(T), .int(NH), .int(KVH), .int(hs), .float(theta),
                .float(inverse ? -1 : 1)])
    }

    public func swigluForward(out: FloatBuffer, input: FloatBuffer, N: Int, H: Int) {
        launch(kernels.swigluForward, "sg_swiglu_forward", grid: (blocks(N * H), 1, 1),
               [.pointer(dev(out)), .pointer(dev(input)), .int(N), .int(H)])
    }

    public func swigluBackward(dinput: FloatBuffer, input: FloatBuffer, dout: FloatBuffer, N: Int, H: Int) {
        launch(kernels.swigluBackward, "sg_swiglu_backward", grid: (blocks(N * H), 1, 1),
               [.pointer(dev(dinput)), .pointer(dev(input)), .pointer(dev(dout)), .int(N), .int(H)])
    }

    // MARK: Element-wise

    public func geluForward(out: FloatBuffer, input: FloatBuffer, count: Int) {
        launch(kernels.geluForward, "sg_gelu_forward", grid: (blocks(count), 1, 1),
               [.pointer(dev(out)), .pointer(dev(input)), .long(count)])
    }

    public func geluBackward(dinput: FloatBuffer, input: FloatBuffer, dout: FloatBuffer, count: Int) {
        launch(kernels.geluBackward, "sg_gelu_backward", grid: (blocks(count), 1, 1),
               [.pointer(dev(dinput)), .pointer(dev(input)), .pointer(dev(dout)), .long(count)])
    }

    public func residualForward(out: FloatBuffer, a: FloatBuffer, b: FloatBuffer, count: Int) {
        launch(kernels.residualForward, "sg_residual_forward", grid: (blocks(count), 1, 1),
               [.pointer(dev(out)), .pointer(dev(a)), .pointer(dev(b)), .long(count)])
    }

    public func dropoutForward(_ x: FloatBuffer, count: Int, dropout: DropoutSpec) { applyDropout(x, count: count, dropout) }
    public func dropoutBackward(_ dx: FloatBuffer, count: Int, dropout: DropoutSpec) { applyDropout(dx, count: count, dropout) }

    private func applyDropout(_ x: FloatBuffer, count: Int, _ dropout: DropoutSpec) {
        guard dropout.isActive else { return }
        launch(kernels.dropout, "sg_dropout", grid: (blocks(count), 1, 1),
               [.pointer(dev(x)), .long(count), .float(dropout.probability), .u64(dropout.seed)])
    }

    // MARK: Matrix products (cuBLAS)

    private func sgemm(_ transA: CUBLAS.Operation, _ transB: CUBLAS.Operation, m: Int, n: Int, k: Int, a: UInt64, lda: Int,
                       b: UInt64, ldb: Int, beta: Float, c: UInt64, ldc: Int) {
        guard m > 0 && n > 0 else { return }
        bind()
        do throws(CUDAError) {
            try blas.sgemm(transA, transB, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        } catch {
            fail(error)
        }
    }

    public func matmulForward(out: FloatBuffer, input: FloatBuffer, weight: FloatBuffer, bias: FloatBuffer?, N: Int, C: Int, OC: Int) {
        // Column-major outᵀ (OC × N) = W (OC × C, stored as Wᵀ: transpose it) · inputᵀ (C × N).
        sgemm(.transpose, .none, m: OC, n: N, k: C, a: dev(weight), lda: C, b: dev(input), ldb: C, beta: 0, c: dev(out), ldc: OC)
        addBias(out: dev(out), bias: bias, N: N, OC: OC)
    }

    private func addBias(out: UInt64, bias: FloatBuffer?, N: Int, OC: Int) {
        guard let bias else { return }
        launch(kernels.addBias, "sg_add_bias", grid: (blocks(N * OC), 1, 1),
               [.pointer(out), .pointer(dev(bias)), .int(N), .int(OC)])
    }

    public func matmulBackward(dinput: FloatBuffer?, dweight: FloatBuffer, dbias: FloatBuffer?, dout: FloatBuffer, input: FloatBuffer,
                               weight: FloatBuffer, N: Int, C: Int, OC: Int) {
        if let dinput {
            // dinputᵀ (C × N) += Wᵀ (C × OC) · doutᵀ (OC × N)
            sgemm(.none, .none, m: C, n: N, k: OC, a: dev(weight), lda: C, b: dev(dout), ldb: OC, beta: 1, c: dev(dinput), ldc: C)
        }
        // dweightᵀ (C × OC) += inputᵀ (C × N) · dout (N × OC)
        sgemm(.none, .transpose, m: C, n: OC, k: N, a: dev(input), lda: C, b: dev(dout), ldb: OC, beta: 1, c: dev(dweight), ldc: C)
        guard let dbias else { return }
        let rows = CUDAKernelSource.columnChunkRows, chunks = blocks(N, rows)
        let partial = scratchBuffer(.partials, bytes: chunks * OC * 4)
        launch(kernels.columnSumsPartial, "sg_column_sums_partial", grid: (blocks(OC, 32), chunks, 1), block: (32, 8, 1),
               [.pointer(partial), .pointer(dev(dout)), .int(N), .int(OC), .int(rows)])
        accumulatePartials(into: dev(dbias), partial: partial, chunks: chunks, C: OC)
    }

    // MARK: Loss

    public func crossEntropyForward(losses: FloatBuffer, logits: FloatBuffer, targets: TokenBuffer, weights: FloatBuffer?,
                                    N: Int, V: Int, Vp: Int) {
        launch(kernels.crossEntropy, "sg_cross_entropy", grid: (N, 1, 1), block: (rowThreads(Vp), 1, 1),
               [.pointer(dev(losses)), .pointer(dev(logits)), .pointer(dev(targets)), .pointer(dev(weights)), .int(N), .int(V),
                .int(Vp)])
    }

    // MARK: Attention

    public func attentionForward(out: FloatBuffer, lse: FloatBuffer, qkv: FloatBuffer, B: Int, T: Int, C: Int, NH: Int, KVH: Int,
                                 dropout: DropoutSpec?) {
        let hs = C / NH, tile = CUDAKernelSource.attentionTile
        let drop = dropout?.isActive == true ? dropout : nil
        let shared = (2 * tile * (hs + 1) + 2 * tile * hs + tile) * 4
        launch(kernels.attentionForward, "sg_attention_forward", grid: (blocks(T, tile), NH, B), block: (tile, 1, 1), shared: shared,
               [.pointer(dev(out)), .pointer(dev(lse)), .pointer(dev(qkv)), .int(B), .int(T), .int(C), .int(NH), .int(KVH),
                .float(drop?.probability ?? 0), .u64(drop?.seed ?? 0), .int(drop == nil ? 0 : 1)])
    }

    public func attentionBackward(dqkv: FloatBuffer, dout: FloatBuffer, lse: FloatBuffer, qkv: FloatBuffer, B: Int, T: Int, C: Int,
                                  NH: Int, KVH: Int, dropout: DropoutSpec?) {
        let hs = C / NH, tile = CUDAKernelSource.attentionTile
        let drop = dropout?.isActive == true ? dropout : nil
        let delta = scratchBuffer(.delta, bytes: B * NH * T * 4)  // (B, NH, T): dO·O of every row
        let dims: [KernelArgument] = [.int(B), .int(T), .int(C), .int(NH), .int(KVH), .float(drop?.probability ?? 0),
                                      .u64(drop?.seed ?? 0), .int(drop == nil ? 0 : 1)]
        let queryShared = (3 * tile * (hs + 1) + 2 * tile * hs) * 4
        let common: [KernelArgument] = [.pointer(dev(dout)), .pointer(dev(lse)), .pointer(dev(qkv))]
        // 1. delta, 2. dQ (both query-side), 3. dK and dV (key-side).
        launch(kernels.attentionBackwardQuery, "sg_attention_backward_query", grid: (blocks(T, tile), NH, B), block: (tile, 1, 1),
               shared: queryShared, [.pointer(dev(dqkv)), .pointer(delta)] + common + dims + [.int(1)])
        launch(kernels.attentionBackwardQuery, "sg_attention_backward_query", grid: (blocks(T, tile), NH, B), block: (tile, 1, 1),
               shared: queryShared, [.pointer(dev(dqkv)), .pointer(delta)] + common + dims + [.int(0)])
        let kvShared = (4 * tile * (hs + 1) + 2 * tile * hs + 2 * tile) * 4
        launch(kernels.attentionBackwardKV, "sg_attention_backward_kv", grid: (blocks(T, tile), KVH, B), block: (tile, 1, 1),
               shared: kvShared, [.pointer(dev(dqkv)), .pointer(delta)] + common + dims)
    }

    // MARK: Inference

    public func cachedAttentionForward(out: FloatBuffer, qkv: FloatBuffer, keys: FloatBuffer, values: FloatBuffer, slots: TokenBuffer,
                                       positions: TokenBuffer, N: Int, C: Int, NH: Int, KVH: Int, capacity: Int) {
        let hs = C / NH
        launch(kernels.kvCacheWrite, "sg_kv_cache_write", grid: (N, KVH, 1), block: (64, 1, 1),
               [.pointer(dev(keys)), .pointer(dev(values)), .pointer(dev(qkv)), .pointer(dev(slots)), .pointer(dev(positions)),
                .int(N), .int(C), .int(KVH), .int(hs), .int(capacity)])
        let threads = 128
        launch(kernels.cachedAttention, "sg_cached_attention", grid: (N, NH, 1), block: (threads, 1, 1),
               shared: (2 * hs + threads) * 4,
               [.pointer(dev(out)), .pointer(dev(qkv)), .pointer(dev(keys)), .pointer(dev(values)), .pointer(dev(slots)),
                .pointer(dev(positions)), .int(N), .int(C), .int(NH), .int(KVH), .int(capacity)])
    }

    public func copyCacheSlot(keys: FloatBuffer, values: FloatBuffer, from source: Int, to destination: Int, length: Int, NH: Int,
                              capacity: Int, headSize hs: Int) {
        guard source != destination, length > 0 else { return }
        launch(kernels.copyCacheSlot, "sg_copy_cache_slot", grid: (blocks(length * hs), NH, 1),
               [.pointer(dev(keys)), .pointer(dev(values)), .int(source), .int(destination), .int(length), .int(NH),
                .int(capacity), .int(hs)])
    }

    public func quantizeRows(weight: FloatBuffer, into q: Int8Buffer, scales: FloatBuffer, rows: Int, C: Int) {
        launch(kernels.quantizeRows, "sg_quantize_rows", grid: (rows, 1, 1), block: (rowThreads(C), 1, 1),
               [.pointer(dev(weight)), .pointer(dev(q)), .pointer(dev(scales)), .int(rows), .int(C)])
    }

    public func matmulInt8Forward(out: FloatBuffer, input: FloatBuffer, weight: Int8Buffer, scales: FloatBuffer, bias: FloatBuffer?,
                                  N: Int, C: Int, OC: Int) {
        if N <= 16 {
            // Decode: one warp per output channel reads each int8 row once per input row.
            launch(kernels.matmulInt8, "sg_matmul_int8", grid: (blocks(OC, 8), N, 1),
                   [.pointer(dev(out)), .pointer(dev(input)), .pointer(dev(weight)), .pointer(dev(scales)), .pointer(dev(bias)),
                    .int(N), .int(C), .int(OC)])
            return
        }
        // Prefill: dequantise into scratch, then the fp32 product.
        let w = scratchBuffer(.dequantized, bytes: OC * C * 4)
        launch(kernels.dequantizeRows, "sg_dequantize_rows", grid: (blocks(OC * C), 1, 1),
               [.pointer(w), .pointer(dev(weight)), .pointer(dev(scales)), .int(OC), .int(C)])
        sgemm(.transpose, .none, m: OC, n: N, k: C, a: w, lda: C, b: dev(input), ldb: C, beta: 0, c: dev(out), ldc: OC)
        addBias(out: dev(out), bias: bias, N: N, OC: OC)
    }

    // MARK: Optimiser

    public func sumOfSquares(_ buffer: FloatBuffer) -> Double {
        let n = buffer.count
        guard n > 0 else { return 0 }
        let chunk = CUDAKernelSource.sumOfSquaresChunk, parts = blocks(n, chunk)
        let sums = scratchBuffer(.sums, bytes: (parts + 1) * 8)  // result, then the partial sums
        let partial = sums + 8
        launch(kernels.sumSquaresPartial, "sg_sum_squares_partial", grid: (parts, 1, 1),
               [.pointer(partial), .pointer(dev(buffer)), .long(n), .int(chunk)])
        launch(kernels.sumSquaresFinal, "sg_sum_squares_final", grid: (1, 1, 1),
               [.pointer(sums), .pointer(partial), .int(parts)])
        var result = 0.0
        check(driver.cuMemcpyDtoH(&result, sums, 8), "cuMemcpyDtoH_v2 (sum of squares)")
        return result
    }

    public func adamw(params: FloatBuffer, grads: FloatBuffer, m: FloatBuffer, v: FloatBuffer, count: Int, step s: AdamWStep) {
        // The same host-side constants as CPUBackend.adamw.
        let bc1 = 1 - Float(pow(Double(s.beta1), Double(s.step)))
        let bc2Sqrt = Float((1 - pow(Double(s.beta2), Double(s.step))).squareRoot())
        let stepSize = s.learningRate / bc1
        let decay = 1 - s.learningRate * s.weightDecay
        launch(kernels.adamw, "sg_adamw", grid: (blocks(count), 1, 1),
               [.pointer(dev(params)), .pointer(dev(grads)), .pointer(dev(m)), .pointer(dev(v)), .long(count), .float(s.beta1),
                .float(s.beta2), .float(bc2Sqrt), .float(stepSize), .float(decay), .float(s.epsilon), .float(s.gradientScale)])
    }
}

