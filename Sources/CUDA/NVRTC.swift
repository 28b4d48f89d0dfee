// NVRTC, loaded at run time: CUDA C source to PTX, with an on-disk PTX cache so later runs skip
// the compiler (~/.cache/swiftgpt/cuda/<hash>.ptx, keyed by source, options and NVRTC version).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

final class NVRTC: @unchecked Sendable {
    typealias Program = OpaquePointer

    let library: DynamicLibrary
    private let nvrtcVersion: @convention(c) (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Int32
    private let nvrtcCreateProgram: @convention(c) (UnsafeMutablePointer<Program?>, UnsafePointer<CChar>, UnsafePointer<CChar>?,
                                                    Int32, UnsafePointer<UnsafePointer<CChar>?>?,
                                                    UnsafePointer<UnsafePointer<CChar>?>?) -> Int32
    private let nvrtcCompileProgram: @convention(c) (Program?, Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> Int32
    private let nvrtcGetProgramLogSize: @convention(c) (Program?, UnsafeMutablePointer<Int>) -> Int32
    private let nvrtcGetProgramLog: @convention(c) (Program?, UnsafeMutablePointer<CChar>) -> Int32
    private let nvrtcGetPTXSize: @convention(c) (Program?, UnsafeMutablePointer<Int>) -> Int32
    private let nvrtcGetPTX: @convention(c) (Program?, UnsafeMutablePointer<CChar>) -> Int32
    private let nvrtcDestroyProgram: @convention(c) (UnsafeMutablePointer<Program?>) -> Int32
    private let nvrtcGetErrorString: @convention(c) (Int32) -> UnsafePointer<CChar>?

    /// "major.minor" of the loaded NVRTC.
    let version: String

    /// The emulator library when SWIFTGPT_CUDA_EMULATOR is set, else libnvrtc from the search path.
    static func load() throws(CUDAError) -> NVRTC {
        if let emulator = environment("SWIFTGPT_CUDA_EMULATOR") {
            return try NVRTC(library: DynamicLibrary.open([emulator], library: "the CUDA emulator",
                                                          hint: "build it with Tools/cuda/emulator/build.sh"))
        }
        let names = ["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"]
        let candidates = CUDALibrarySearch.candidates(names, wheelFolders: ["cu13/lib", "cuda_nvrtc/lib"])
        return try NVRTC(library: DynamicLibrary.open(
            candidates, library: "NVRTC (libnvrtc.so)",
            hint: "install the CUDA toolkit, or `pip install nvidia-cuda-nvrtc` and set "
                + "SWIFTGPT_CUDA_LIB_PATH to the wheel's nvidia/cu13/lib folder."))
    }

    private init(library: DynamicLibrary) throws(CUDAError) {
        self.library = library
        nvrtcVersion = try library.symbol("nvrtcVersion")
        nvrtcCreateProgram = try library.symbol("nvrtcCreateProgram")
        nvrtcCompileProgram = try library.symbol("nvrtcCompileProgram")
        nvrtcGetProgramLogSize = try library.symbol("nvrtcGetProgramLogSize")
        nvrtcGetProgramLog = try library.symbol("nvrtcGetProgramLog")
        nvrtcGetPTXSize = try library.symbol("nvrtcGetPTXSize")
        nvrtcGetPTX = try library.symbol("nvrtcGetPTX")
        nvrtcDestroyProgram = try library.symbol("nvrtcDestroyProgram")
        nvrtcGetErrorString = try library.symbol("nvrtcGetErrorString")
        var major: Int32 = 0, minor: Int32 = 0
        _ = nvrtcVersion(&major, &minor)
        version = "\(major).\(minor)"
    }

    private func message(_ result: Int32) -> String {
        nvrtcGetErrorString(result).map { String(cString: $0) } ?? "NVRTC error \(result)"
    }

    /// Compiles `source` with `options` and returns the PTX text. On failure the error carries the
    /// compiler log.
    func compile(_ source: String, name: String, options: [String]) throws(CUDAError) -> String {
        var program: Program? = nil
        let created = source.withCString { s in name.withCString { n in nvrtcCreateProgram(&program, s, n, 0, nil, nil) } }
        guard created == 0 else { throw .compilation(call: "nvrtcCreateProgram", message: message(created), log: "") }
        defer { _ = nvrtcDestroyProgram(&program) }
        // Options as C strings that live for the call.
        let cOptions = options.map { strdup($0) }
        defer { cOptions.forEach { free($0) } }
        let result = cOptions.map { UnsafePointer($0) }.withUnsafeBufferPointer {
            nvrtcCompileProgram(program, Int32(options.count), $0.baseAddress)
        }
        let log = programLog(program)
        guard result == 0 else {
            throw .compilation(call: "nvrtcCompileProgram (\(options.joined(separator: " ")))", message: message(result),
                               log: log)
        }
        var size = 0
        _ = nvrtcGetPTXSize(program, &size)
        var ptx = [CChar](repeating: 0, count: max(size, 1))
        let got = nvrtcGetPTX(program, &ptx)
        guard got == 0 else { throw .compilation(call: "nvrtcGetPTX", message: message(got), log: log) }
        return String(decoding: ptx.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func programLog(_ program: Program?) -> String {
        var size = 0
        guard nvrtcGetProgramLogSize(program, &size) == 0, size > 1 else { return "" }
        var log = [CChar](repeating: 0, count: size)
        _ = nvrtcGetProgramLog(program, &log)
        return String(decoding: log.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// PTX for `source`: from the disk cache when present, else compiled and stored. The cache is
    /// skipped for the emulator (its "PTX" names a file in its own cache) and when
    /// SWIFTGPT_CUDA_CACHE=0.
    func cachedCompile(_ source: String, name: String, options: [String]) throws(CUDAError) -> String {
        let useCache = environment("SWIFTGPT_CUDA_EMULATOR") == nil && environment("SWIFTGPT_CUDA_CACHE") != "0"
        guard useCache, let dir = PTXCache.directory() else { return try compile(source, name: name, options: options) }
        let key = PTXCache.key([source, options.joined(separator: "\u{1}"), version])
        let path = "\(dir)/\(key).ptx"
        if let cached = PTXCache.read(path) { return cached }
        let ptx = try compile(source, name: name, options: options)
        PTXCache.write(ptx, to: path)
        return ptx
    }
}

/// The on-disk PTX cache: best effort, never an error.
enum PTXCache {
    /// $SWIFTGPT_CUDA_CACHE_DIR, else $XDG_CACHE_HOME/swiftgpt/cuda, else ~/.cache/swiftgpt/cuda
    /// (created on demand); nil when no such folder can be made.
    static func directory() -> String? {
        let dir: String
        if let custom = environment("SWIFTGPT_CUDA_CACHE_DIR") {
            dir = custom
        } else if let xdg = environment("XDG_CACHE_HOME") {
            dir = xdg + "/swiftgpt/cuda"
        } else if let home = environment("HOME") {
            dir = home + "/.cache/swiftgpt/cuda"
        } else {
            return nil
        }
        var prefix = ""
        for part in dir.split(separator: "/", omittingEmptySubsequences: false) {
            prefix += (prefix.isEmpty && dir.hasPrefix("/") ? "" : "/") + part
            if prefix == "/" || prefix.isEmpty { continue }
            mkdir(prefix, 0o755)
        }
        return access(dir, W_OK) == 0 ? dir : nil
    }

    /// 64-bit FNV-1a over the parts (separated), as 16 hex digits.
    static func key(_ parts: [String]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for part in parts {
            for byte in part.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
            hash = (hash ^ 0xff) &* 0x100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    static func read(_ path: String) -> String? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
    }

    /// Writes to a temporary name, then renames: readers never see half a file.
    static func write(_ text: String, to path: String) {
        let temporary = "\(path).\(getpid()).tmp"
        guard let file = fopen(temporary, "wb") else { return }
        let bytes = Array(text.utf8)
        let written = fwrite(bytes, 1, bytes.count, file)
        fclose(file)
        if written == bytes.count { rename(temporary, path) } else { unlink(temporary) }
    }
}
