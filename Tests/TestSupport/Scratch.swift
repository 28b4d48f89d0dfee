import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The test targets' scratch files: one folder per test process, removed when the process exits.
public let scratchRoot: String = {
    let root = NSTemporaryDirectory() + "swiftgpt-tests-\(getpid())"
    try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "swiftgpt-tests-\(getpid())") }
    return root
}()
