// Buffers handed between the model and a Backend.
//
// A `FloatBuffer` is a pointer and a length. On the CPU backend the pointer is host memory; a GPU
// backend stores its device address in the same bits (the host never dereferences it). Views into an
// arena are plain `FloatBuffer`s too, so the model can carve one allocation into named tensors.

/// A span of `Float` owned by a Backend (host or device memory).
public struct FloatBuffer: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    public init(pointer: UnsafeMutablePointer<Float>, count: Int) {
        self.pointer = pointer
        self.count = count
    }

    /// A view of `count` elements starting at `offset` (no copy).
    @inline(__always)
    public func slice(_ offset: Int, _ count: Int) -> FloatBuffer {
        precondition(offset >= 0 && count >= 0 && offset + count <= self.count, "slice out of bounds")
        return FloatBuffer(pointer: pointer + offset, count: count)
    }
}

/// A span of token ids (Int32) owned by a Backend.
public struct TokenBuffer: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Int32>
    public let count: Int

    public init(pointer: UnsafeMutablePointer<Int32>, count: Int) {
        self.pointer = pointer
        self.count = count
    }
}

/// A span of Int8 values owned by a Backend (quantised weights).
public struct Int8Buffer: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Int8>
    public let count: Int

    public init(pointer: UnsafeMutablePointer<Int8>, count: Int) {
        self.pointer = pointer
        self.count = count
    }

    @inline(__always)
    public func slice(_ offset: Int, _ count: Int) -> Int8Buffer {
        precondition(offset >= 0 && count >= 0 && offset + count <= self.count, "slice out of bounds")
        return Int8Buffer(pointer: pointer + offset, count: count)
    }
}

/// A span of IEEE half-precision values owned by a Backend (a KV cache kept in f16).
public struct HalfBuffer: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float16>
    public let count: Int

    public init(pointer: UnsafeMutablePointer<Float16>, count: Int) {
        self.pointer = pointer
        self.count = count
    }

    @inline(__always)
    public func slice(_ offset: Int, _ count: Int) -> HalfBuffer {
        precondition(offset >= 0 && count >= 0 && offset + count <= self.count, "slice out of bounds")
        return HalfBuffer(pointer: pointer + offset, count: count)
    }
}

/// One named region in an arena's size table.
public struct ArenaEntry: Sendable, Equatable {
    public let name: String
    public let shape: [Int]
    public var count: Int { shape.reduce(1, *) }

    public init(name: String, shape: [Int]) {
        self.name = name
        self.shape = shape
    }
}

/// One contiguous allocation carved into named regions by a single size table.
///
/// Parameters, gradients, AdamW moments and activations each live in an Arena: after warm-up a
/// training step allocates nothing.
public final class Arena: @unchecked Sendable {
    public let backend: any Backend
    public let entries: [ArenaEntry]
    public let offsets: [Int]
    public let storage: FloatBuffer
    private let index: [String: Int]

    /// Allocates `sum(entries.count)` floats, zero-filled. Each region starts on a 16-float boundary
    /// (64 bytes) so SIMD loads and cache lines line up.
    public init(backend: any Backend, entries: [ArenaEntry]) throws {
        self.backend = backend
        self.entries = entries
        var offsets: [Int] = []
        offsets.reserveCapacity(entries.count)
        var total = 0
        for entry in entries {
            offsets.append(total)
            total += (entry.count + 15) / 16 * 16
        }
        self.offsets = offsets
        self.storage = try backend.allocate(max(total, 1))
        var index: [String: Int] = [:]
        for (i, entry) in entries.enumerated() { index[entry.name] = i }
        self.index = index
    }

    deinit { backend.deallocate(storage) }

    /// Total floats allocated (including alignment padding).
    public var allocatedCount: Int { storage.count }

    /// The region at position `i` in the size table.
    @inline(__always)
    public subscript(_ i: Int) -> FloatBuffer {
        storage.slice(offsets[i], entries[i].count)
    }

    /// The region called `name`, or nil when the table has none.
    public subscript(_ name: String) -> FloatBuffer? {
        guard let i = index[name] else { return nil }
        return self[i]
    }

    /// Position of `name` in the size table.
    public func position(of name: String) -> Int? { index[name] }
}
