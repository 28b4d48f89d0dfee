// Small helpers shared by the subcommands.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

import ArgumentParser
import Compute
import CUDA

typealias Clock = MonotonicClock

/// Peak resident set size of this process in MiB.
func peakRSSMegabytes() -> Double {
    var usage = rusage()
    #if os(Linux)
    getrusage(RUSAGE_SELF.rawValue, &usage)
    #else
    getrusage(RUSAGE_SELF, &usage)
    #endif
    #if os(Linux)
    return Double(usage.ru_maxrss) / 1024  // KiB on Linux
    #else
    return Double(usage.ru_maxrss) / 1_048_576  // bytes on macOS
    #endif
}

/// One JSON object on one line, keys sorted.
func jsonLine<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

func fmt(_ x: Double, _ digits: Int = 1) -> String {
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let r = (x * p).rounded() / p
    var s = "\(r)"
    if digits == 0, s.hasSuffix(".0") { s.removeLast(2) }
    return s
}

/// Writes a line to standard error.
func printError(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}

/// `--device cpu|cuda[:N]`, shared by every command that runs a model.
struct DeviceOptions: ParsableArguments {
    @Option(help: """
        Where the model runs: cpu, or cuda (an NVIDIA GPU; cuda:N picks the N-th). The CUDA driver, \
        NVRTC and cuBLAS are loaded when asked for (see Tools/cuda/README.md); nothing CUDA is needed \
        to build or to run on the CPU.
        """)
    var device: String = "cpu"

    /// The backend for `device`, or a clear error when it is unknown or unavailable here.
    func backend() throws -> any Backend { try makeBackend(device: device) }
}

func makeBackend(device: String) throws -> any Backend {
    if device == "cpu" { return CPUBackend() }
    var index = 0
    if device != "cuda" {
        guard device.hasPrefix("cuda:"), let n = Int(device.dropFirst(5)), n >= 0 else {
            throw ValidationError("unknown --device '\(device)'; use cpu, cuda or cuda:N")
        }
        index = n
    }
    do {
        return try CUDABackend(deviceIndex: index)
    } catch {
        throw ValidationError("--device \(device) is not available: \(error)")
    }
}
