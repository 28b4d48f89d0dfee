import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// This test process's scratch files live under one folder, removed when the process exits.
let scratchRoot: String = {
    let root = NSTemporaryDirectory() + "swiftgpt-tests-\(getpid())"
    try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "swiftgpt-tests-\(getpid())") }
    return root
}()
