// Token shards: the pre-tokenized training data on disk.
//
// Layout (little-endian): 8-byte magic "SGPTSHRD", UInt32 version (1), UInt32 token width in bytes
// (2 or 4), UInt64 token count, UInt64 reserved (0), then the ids. Written to a temporary name
// and renamed, so a shard on disk is always complete.

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

public enum TrainingError: Error, CustomStringConvertible, Equatable {
    case badShard(path: String, reason: String)
    case badData(path: String, reason: String)
    case ioFailure(path: String, reason: String)
    case badCheckpoint(path: String, reason: String)
    case configMismatch(String)
    case nonFiniteLoss(step: Int, lastCheckpoint: String?)
    case invalidSetting(String)

    public var description: String {
        switch self {
        case .badShard(let path, let reason): return "token shard \(path) is unusable: \(reason)"
        case .badData(let path, let reason): return "data in \(path) is unusable: \(reason)"
        case .ioFailure(let path, let reason): return "could not write \(path): \(reason). Nothing saved before was touched."
        case .badCheckpoint(let path, let reason): return "checkpoint \(path) is unusable: \(reason)"
        case .configMismatch(let what): return "the checkpoint does not match the flags: \(what).\nHINT: drop the conflicting flags when resuming, or start a new run directory."
        case .nonFiniteLoss(let step, let last):
            return "the loss became NaN or infinite at step \(step); training stopped.\nHINT: lower --lr or raise --warmup. "
                + (last.map { "The last good checkpoint is \($0)." } ?? "No checkpoint had been written yet.")
        case .invalidSetting(let what): return "invalid setting: \(what)"
        }
    }
}

public enum TokenShard {
    static let magic: [UInt8] = Array("SGPTSHRD".utf8)
    public static let headerSize = 32

    /// Writes ids to `path` atomically (temporary file, fsync, rename).
    public static func write(_ ids: [Int32], vocabularySize: Int, to path: String) throws {
        let width = vocabularySize <= 65536 ? 2 : 4
        var data = Data(capacity: headerSize + ids.count * width)
        data.append(contentsOf: magic)
        appendLE(&data, UInt32(1))
        appendLE(&data, UInt32(width))
        appendLE(&data, UInt64(ids.count))
        appendLE(&data, UInt64(0))
        if width == 2 {
            var packed = [UInt16](repeating: 0, count: ids.count)
            for (i, id) in ids.enumerated() { packed[i] = UInt16(truncatingIfNeeded: id).littleEndian }
            packed.withUnsafeBytes { data.append(contentsOf: $0) }
        } else {
            ids.withUnsafeBytes { data.append(contentsOf: $0) }
        }
        try AtomicFile.write(data, to: path)
    }

    /// Reads a whole shard.
    public static func read(_ path: String) throws -> [Int32] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw TrainingError.badShard(path: path, reason: "it could not be opened")
        }
        guard data.count >= headerSize, Array(data.prefix(8)) == magic else {
            throw TrainingError.badShard(path: path, reason: "it does not start with the SwiftGPT shard header")
        }
        let version = readLE(data, 8, UInt32.self), width = Int(readLE(data, 12, UInt32.self))
        let count = Int(readLE(data, 16, UInt64.self))
        guard version == 1 else { throw TrainingError.badShard(path: path, reason: "version \(version) is not supported") }
        guard width == 2 || width == 4 else { throw TrainingError.badShard(path: path, reason: "token width \(width)") }
        guard data.count == headerSize + count * width else {
            throw TrainingError.badShard(path: path, reason: "it holds \(data.count - headerSize) bytes of ids, the header says \(count * width); it is truncated")
        }
        var ids = [Int32](repeating: 0, count: count)
        data.withUnsafeBytes { raw in
            let base = raw.baseAddress! + headerSize
            if width == 2 {
                for i in 0..<count { ids[i] = Int32(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            } else {
                for i in 0..<count { ids[i] = Int32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
            }
        }
        return ids
    }

    static func appendLE<T: FixedWidthInteger>(_ data: inout Data, _ value: T) {
        withUnsafeBytes(of: value.littleEndian) { data.append(contentsOf: $0) }
    }

    static func readLE<T: FixedWidthInteger>(_ data: Data, _ offset: Int, _: T.Type) -> T {
        data.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
}

/// Crash-safe file writing: write to a temporary file in the same folder, flush it to disk, then
/// rename over the target (rename is atomic), so readers see the old file or the new one, never a
/// half-written one.
public enum AtomicFile {
    /// Tests only: an errno that writes to files whose path ends with `.0` fail with (e.g. ENOSPC),
    /// to check what a full disk does to a checkpoint.
    nonisolated(unsafe) static var injectedFailure: (pathSuffix: String, errno: Int32)? = nil

    public static func write(_ data: Data, to path: String) throws {
        try write(to: path) { emit in try data.withUnsafeBytes { try emit($0) } }
    }

    /// Streams a file: `produce` calls `emit` with consecutive pieces of it, so a large file never
    /// needs to exist in memory at once. Written to a temporary name, flushed, then renamed.
    public static func write(to path: String, _ produce: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw TrainingError.ioFailure(path: path, reason: String(cString: strerror(errno))) }
        var reason = ""
        do {
            try produce { raw in
                var offset = 0
                while offset < raw.count {
                    var n = systemWrite(fd, raw.baseAddress! + offset, raw.count - offset)
                    if let injected = injectedFailure, path.hasSuffix(injected.pathSuffix) { n = -1; errno = injected.errno }
                    if n <= 0 {
                        reason = String(cString: strerror(errno))
                        throw TrainingError.ioFailure(path: path, reason: reason)
                    }
                    offset += n
                }
            }
            if fsync(fd) != 0 { reason = String(cString: strerror(errno)) }
        } catch {
            if reason.isEmpty { reason = "\(error)" }
        }
        close(fd)
        guard reason.isEmpty else {
            unlink(temporary)
            throw TrainingError.ioFailure(path: path, reason: reason + (reason.contains("space") ? " (disk full?)" : ""))
        }
        guard rename(temporary, path) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(temporary)
            throw TrainingError.ioFailure(path: path, reason: why)
        }
    }
}

@inline(__always)
func systemWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, p, n)
    #else
    return Darwin.write(fd, p, n)
    #endif
}
