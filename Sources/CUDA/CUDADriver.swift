// Run-time loading of the CUDA driver API (libcuda.so.1), with no build-time CUDA dependency:
// dlopen the library, dlsym each entry point and cast it to a @convention(c) type.
//
// Environment:
//   SWIFTGPT_CUDA_DRIVER=/path/lib.so    the driver library to load instead of libcuda.so.1
//   SWIFTGPT_CUDA_EMULATOR=/path/lib.so  take the driver, NVRTC and cuBLAS all from this library
//                                        (Tools/cuda/emulator: the CPU emulator used by the tests)
//   SWIFTGPT_CUDA_LIB_PATH=dir:dir       where to look first for libnvrtc and libcublas

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What went wrong while loading or driving CUDA; every message says what to do about it.
public enum CUDAError: Error, CustomStringConvertible, Sendable {
    /// A shared library could not be opened from any of the places tried.
    case libraryNotFound(library: String, tried: [String], hint: String)
    /// A library opened but lacks an entry point (too old, or not the library we think).
    case symbolMissing(library: String, symbol: String)
    /// A driver call failed: the call, the CUresult, its name and description.
    case driver(call: String, code: Int32, name: String, message: String)
    /// The driver works but reports no usable device.
    case noDevice(String)
    /// NVRTC failed; `log` is the compiler's output.
    case compilation(call: String, message: String, log: String)
    /// A cuBLAS call failed.
    case cublas(call: String, status: Int32, name: String)

    public var description: String {
        switch self {
        case .libraryNotFound(let library, let tried, let hint):
            return "\(library) not found (tried: \(tried.joined(separator: ", "))). HINT: \(hint)"
        case .symbolMissing(let library, let symbol):
            return "\(library) has no symbol \(symbol). HINT: the library is too old or not the CUDA one; "
                + "CUDA 12 or newer is needed."
        case .driver(let call, let code, let name, let message):
            return "\(call) failed: \(name) (\(code)): \(message)"
        case .noDevice(let why):
            return "no usable CUDA device: \(why). HINT: use --device cpu, or check nvidia-smi."
        case .compilation(let call, let message, let log):
            return "\(call) failed: \(message)\n\(log)"
        case .cublas(let call, let status, let name):
            return "\(call) failed: \(name) (\(status))"
        }
    }
}

/// An environment variable, or nil when unset or empty.
func environment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    let s = String(cString: value)
    return s.isEmpty ? nil : s
}

/// A dlopen'd shared library.
final class DynamicLibrary: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    /// The path or name it was opened by.
    let path: String

    private init(handle: UnsafeMutableRawPointer, path: String) {
        self.handle = handle
        self.path = path
    }

    /// Opens the first candidate that loads. Candidates are file paths or bare names (searched by
    /// the dynamic loader). Errors list everything tried, with the loader's reason for the last one.
    static func open(_ candidates: [String], library: String, hint: String) throws(CUDAError) -> DynamicLibrary {
        var tried: [String] = []
        for candidate in candidates {
            if let handle = dlopen(candidate, RTLD_NOW | RTLD_LOCAL) {
                return DynamicLibrary(handle: handle, path: candidate)
            }
            var reason = ""
            if let error = dlerror() { reason = String(cString: error) }
            // A file that exists but fails to load deserves its reason; a missing one just its name.
            tried.append(access(candidate, F_OK) == 0 || !candidate.contains("/") && !reason.contains("No such file")
                         ? "\(candidate) (\(reason))" : candidate)
        }
        throw .libraryNotFound(library: library, tried: tried, hint: hint)
    }

    /// The symbol cast to a C function type.
    func symbol<F>(_ name: String, as type: F.Type = F.self) throws(CUDAError) -> F {
        guard let raw = dlsym(handle, name) else { throw .symbolMissing(library: path, symbol: name) }
        return unsafeBitCast(raw, to: F.self)
    }

    /// The symbol, or nil when the library does not have it.
    func optionalSymbol<F>(_ name: String, as type: F.Type = F.self) -> F? {
        dlsym(handle, name).map { unsafeBitCast($0, to: F.self) }
    }
}

/// Where the CUDA toolkit libraries (NVRTC, cuBLAS) are looked for, in order.
enum CUDALibrarySearch {
    /// Directories: SWIFTGPT_CUDA_LIB_PATH, the usual toolkit folders, then pip wheel layouts.
    static var directories: [String] {
        var dirs: [String] = []
        if let custom = environment("SWIFTGPT_CUDA_LIB_PATH") {
            dirs += custom.split(separator: ":").map(String.init)
        }
        dirs += ["/usr/local/cuda-13.0/targets/x86_64-linux/lib", "/usr/local/cuda/targets/x86_64-linux/lib",
                 "/usr/local/cuda/lib64"]
        return dirs
    }

    /// Candidates for a library with these file names: each name in each directory, then each bare
    /// name (the default loader path), then pip wheel folders next to a Python site-packages in
    /// VIRTUAL_ENV (nvidia/cu13/lib, nvidia/cuda_nvrtc/lib, nvidia/cublas/lib).
    static func candidates(_ names: [String], wheelFolders: [String]) -> [String] {
        var list: [String] = []
        for dir in directories { for name in names { list.append(dir + "/" + name) } }
        list += names
        if let venv = environment("VIRTUAL_ENV") {
            for python in ["python3.13", "python3.12", "python3.11", "python3.10"] {
                for folder in wheelFolders {
                    for name in names { list.append("\(venv)/lib/\(python)/site-packages/nvidia/\(folder)/\(name)") }
                }
            }
        }
        return list
    }
}

/// CUresult codes the backend checks for by value.
enum CUresultCode {
    static let success: Int32 = 0
}

/// The driver API entry points SwiftGPT uses.
final class CUDADriver: @unchecked Sendable {
    typealias CUdeviceptr = UInt64
    typealias Handle = OpaquePointer

    let library: DynamicLibrary

    let cuInit: @convention(c) (UInt32) -> Int32
    let cuDriverGetVersion: @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
    let cuDeviceGetCount: @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
    let cuDeviceGet: @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
    let cuDeviceGetName: @convention(c) (UnsafeMutablePointer<CChar>, Int32, Int32) -> Int32
    let cuDeviceGetAttribute: @convention(c) (UnsafeMutablePointer<Int32>, Int32, Int32) -> Int32
    let cuDevicePrimaryCtxRetain: @convention(c) (UnsafeMutablePointer<Handle?>, Int32) -> Int32
    let cuCtxSetCurrent: @convention(c) (Handle?) -> Int32
    let cuCtxSynchronize: @convention(c) () -> Int32
    let cuStreamCreate: @convention(c) (UnsafeMutablePointer<Handle?>, UInt32) -> Int32
    let cuStreamSynchronize: @convention(c) (Handle?) -> Int32
    let cuMemAlloc: @convention(c) (UnsafeMutablePointer<CUdeviceptr>, Int) -> Int32
    let cuMemFree: @convention(c) (CUdeviceptr) -> Int32
    let cuMemcpyHtoD: @convention(c) (CUdeviceptr, UnsafeRawPointer, Int) -> Int32
    let cuMemcpyDtoH: @convention(c) (UnsafeMutableRawPointer, CUdeviceptr, Int) -> Int32
    let cuMemcpyDtoDAsync: @convention(c) (CUdeviceptr, CUdeviceptr, Int, Handle?) -> Int32
    let cuMemsetD32Async: @convention(c) (CUdeviceptr, UInt32, Int, Handle?) -> Int32
    let cuMemsetD8Async: @convention(c) (CUdeviceptr, UInt8, Int, Handle?) -> Int32
    let cuModuleLoadData: @convention(c) (UnsafeMutablePointer<Handle?>, UnsafeRawPointer) -> Int32
    let cuModuleGetFunction: @convention(c) (UnsafeMutablePointer<Handle?>, Handle?, UnsafePointer<CChar>) -> Int32
    let cuFuncSetAttribute: @convention(c) (Handle?, Int32, Int32) -> Int32
    let cuLaunchKernel: @convention(c) (Handle?, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, Handle?,
                                        UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
                                        UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32
    let cuGetErrorName: @convention(c) (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> Int32
    let cuGetErrorString: @convention(c) (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> Int32

    /// Opens the emulator (SWIFTGPT_CUDA_EMULATOR), the SWIFTGPT_CUDA_DRIVER override, or libcuda.so.1.
    static func load() throws(CUDAError) -> CUDADriver {
        if let emulator = environment("SWIFTGPT_CUDA_EMULATOR") {
            return try CUDADriver(library: DynamicLibrary.open(
                [emulator], library: "the CUDA emulator",
                hint: "build it with Tools/cuda/emulator/build.sh DIR and set SWIFTGPT_CUDA_EMULATOR=DIR/libcudaemu.so"))
        }
        let candidates = environment("SWIFTGPT_CUDA_DRIVER").map { [$0] } ?? ["libcuda.so.1", "libcuda.so"]
        return try CUDADriver(library: DynamicLibrary.open(
            candidates, library: "no NVIDIA driver: libcuda.so.1",
            hint: "use --device cpu, or install the NVIDIA driver (SWIFTGPT_CUDA_DRIVER=/path/libcuda.so.1 "
                + "selects a library explicitly)."))
    }

    private init(library: DynamicLibrary) throws(CUDAError) {
        self.library = library
        cuInit = try library.symbol("cuInit")
        cuDriverGetVersion = try library.symbol("cuDriverGetVersion")
        cuDeviceGetCount = try library.symbol("cuDeviceGetCount")
        cuDeviceGet = try library.symbol("cuDeviceGet")
        cuDeviceGetName = try library.symbol("cuDeviceGetName")
        cuDeviceGetAttribute = try library.symbol("cuDeviceGetAttribute")
        cuDevicePrimaryCtxRetain = try library.symbol("cuDevicePrimaryCtxRetain")
        cuCtxSetCurrent = try library.symbol("cuCtxSetCurrent")
        cuCtxSynchronize = try library.symbol("cuCtxSynchronize")
        cuStreamCreate = try library.symbol("cuStreamCreate")
        cuStreamSynchronize = try library.symbol("cuStreamSynchronize")
        cuMemAlloc = try library.symbol("cuMemAlloc_v2")
        cuMemFree = try library.symbol("cuMemFree_v2")
        cuMemcpyHtoD = try library.symbol("cuMemcpyHtoD_v2")
        cuMemcpyDtoH = try library.symbol("cuMemcpyDtoH_v2")
        cuMemcpyDtoDAsync = try library.symbol("cuMemcpyDtoDAsync_v2")
        cuMemsetD32Async = try library.symbol("cuMemsetD32Async")
        cuMemsetD8Async = try library.symbol("cuMemsetD8Async")
        cuModuleLoadData = try library.symbol("cuModuleLoadData")
        cuModuleGetFunction = try library.symbol("cuModuleGetFunction")
        cuFuncSetAttribute = try library.symbol("cuFuncSetAttribute")
        cuLaunchKernel = try library.symbol("cuLaunchKernel")
        cuGetErrorName = try library.symbol("cuGetErrorName")
        cuGetErrorString = try library.symbol("cuGetErrorString")
    }

    /// Throws a `.driver` error naming the call unless `result` is CUDA_SUCCESS.
    func check(_ result: Int32, _ call: @autoclosure () -> String) throws(CUDAError) {
        if result == CUresultCode.success { return }
        var name: UnsafePointer<CChar>? = nil, text: UnsafePointer<CChar>? = nil
        _ = cuGetErrorName(result, &name)
        _ = cuGetErrorString(result, &text)
        throw .driver(call: call(), code: result, name: name.map { String(cString: $0) } ?? "CUDA_ERROR_\(result)",
                      message: text.map { String(cString: $0) } ?? "unknown error")
    }

    /// Device attribute numbers (CUdevice_attribute) used here.
    enum Attribute {
        static let multiprocessorCount: Int32 = 16
        static let computeCapabilityMajor: Int32 = 75
        static let computeCapabilityMinor: Int32 = 76
        static let maxSharedMemoryPerBlockOptin: Int32 = 97
    }

    /// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    static let maxDynamicSharedSizeAttribute: Int32 = 8

    func attribute(_ attribute: Int32, device: Int32) throws(CUDAError) -> Int {
        var value: Int32 = 0
        try check(cuDeviceGetAttribute(&value, attribute, device), "cuDeviceGetAttribute(\(attribute))")
        return Int(value)
    }

    func deviceName(_ device: Int32) throws(CUDAError) -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        try check(cuDeviceGetName(&buffer, Int32(buffer.count), device), "cuDeviceGetName")
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
