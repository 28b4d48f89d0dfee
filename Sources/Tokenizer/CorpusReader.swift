// Streaming text out of .txt and .jsonl files and folders, a block at a time, never a whole file.

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

public struct CorpusReader {
    /// Files in the order they will be read (folders expanded, sorted).
    public let files: [String]
    /// Total bytes of those files (for progress).
    public let totalBytes: Int

    /// Resolves paths: files as given, folders recursively (.txt, .text, .md and .jsonl files).
    public init(paths: [String]) throws {
        var files: [String] = []
        let fm = FileManager.default
        for path in paths {
            var info = stat()
            guard stat(path, &info) == 0 else {
                throw TokenizerError.unreadableFile(path: path, reason: "no such file or folder")
            }
            if (info.st_mode & S_IFMT) == S_IFDIR {
                let found = ((try? fm.subpathsOfDirectory(atPath: path)) ?? [])
                    .filter { [".txt", ".text", ".md", ".jsonl"].contains(where: $0.hasSuffix) }
                    .sorted()
                    .map { path + "/" + $0 }
                if found.isEmpty { throw TokenizerError.unreadableFile(path: path, reason: "the folder has no .txt or .jsonl files") }
                files += found
            } else {
                files.append(path)
            }
        }
        self.files = files
        var total = 0
        for f in files {
            var info = stat()
            if stat(f, &info) == 0 { total += Int(info.st_size) }
        }
        self.totalBytes = total
    }

    /// Calls `body` with blocks of text (about `blockSize` bytes, cut after a newline for .txt; one
    /// or more whole documents for .jsonl) and the number of file bytes consumed so far.
    public func forEachBlock(blockSize: Int = 8 << 20, _ body: (UnsafeBufferPointer<UInt8>, Int) throws -> Void) throws {
        try forEachDocumentPart(blockSize: blockSize) { part, _, consumed in try body(part, consumed) }
    }

    /// Calls `body` with parts of documents in order: a .txt file is one document (given in blocks
    /// cut after newlines), each .jsonl line is one document (its `text`). `endsDocument` is true on
    /// the last part of each document.
    public func forEachDocumentPart(blockSize: Int = 8 << 20,
                                    _ body: (UnsafeBufferPointer<UInt8>, _ endsDocument: Bool, _ consumed: Int) throws -> Void) throws {
        var consumed = 0
        for path in files {
            guard let file = fopen(path, "rb") else {
                throw TokenizerError.unreadableFile(path: path, reason: String(cString: strerror(errno)))
            }
            defer { fclose(file) }
            let isJSONL = path.hasSuffix(".jsonl")
            var magic = [UInt8](repeating: 0, count: 2)
            if fread(&magic, 1, 2, file) == 2 && magic == [0x1F, 0x8B] {
                throw TokenizerError.unreadableFile(path: path, reason: "it is gzip-compressed; decompress it first (gunzip -k \(path))")
            }
            rewind(file)
            var carry: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: blockSize)
            var lineNumber = 0
            var pendingText: [UInt8]? = nil  // .txt: hold one block back to know which is last
            while true {
                let n = buffer.withUnsafeMutableBytes { fread($0.baseAddress, 1, blockSize, file) }
                if n == 0 { break }
                consumed += n
                var block = carry
                block.append(contentsOf: buffer[0..<n])
                if let lastNewline = block.lastIndex(of: 0x0A) {
                    carry = Array(block[(lastNewline + 1)...])
                    block.removeSubrange((lastNewline + 1)...)
                } else {
                    carry = block
                    continue
                }
                if isJSONL {
                    try emitJSONL(block, path: path, lineNumber: &lineNumber, consumed: consumed, body)
                } else {
                    if let previous = pendingText { try previous.withUnsafeBufferPointer { try body($0, false, consumed) } }
                    pendingText = block
                }
            }
            if ferror(file) != 0 { throw TokenizerError.unreadableFile(path: path, reason: "read error") }
            if isJSONL {
                if !carry.isEmpty { try emitJSONL(carry, path: path, lineNumber: &lineNumber, consumed: consumed, body) }
            } else {
                let last = (pendingText ?? []) + carry
                try last.withUnsafeBufferPointer { try body($0, true, consumed) }
            }
        }
    }

    private struct Document: Decodable { let text: String? }

    /// Extracts the `text` field of each line: one document each.
    private func emitJSONL(_ block: [UInt8], path: String, lineNumber: inout Int, consumed: Int,
                           _ body: (UnsafeBufferPointer<UInt8>, Bool, Int) throws -> Void) throws {
        let decoder = JSONDecoder()
        for line in block.split(separator: 0x0A, omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            let document: Document
            do { document = try decoder.decode(Document.self, from: Data(line)) } catch {
                throw TokenizerError.malformedFile(path: path, reason: "line \(lineNumber) is not a JSON object (\(error))")
            }
            guard let text = document.text else {
                throw TokenizerError.malformedFile(path: path, reason: "line \(lineNumber) has no \"text\" field")
            }
            let bytes = Array(text.utf8)
            try bytes.withUnsafeBufferPointer { try body($0, true, consumed) }
        }
    }
}
