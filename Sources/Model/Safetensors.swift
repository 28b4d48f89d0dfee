// The safetensors format: 8-byte little-endian header length, a JSON header mapping tensor
// names to {dtype, shape, data_offsets}, then raw little-endian tensor bytes.

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// An in-memory safetensors file.
public struct SafetensorsFile: Sendable {
    public struct TensorInfo: Codable, Sendable, Equatable {
        public var dtype: String
        public var shape: [Int]
        public var dataOffsets: [Int]

        enum CodingKeys: String, CodingKey {
            case dtype, shape
            case dataOffsets = "data_offsets"
        }
    }

    public let path: String
    public let tensors: [String: TensorInfo]
    public let metadata: [String: String]
    private let data: Data
    private let dataStart: Int

    /// Maps (reads lazily) and validates a file; every problem becomes a `ModelError.badFile` that
    /// names it.
    public init(path: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw ModelError.badFile(path: path, reason: "the file could not be opened (\(error))")
        }
        try self.init(data: data, path: path)
    }

    public init(data: Data, path: String = "<memory>") throws {
        func bad(_ reason: String) -> ModelError { .badFile(path: path, reason: reason) }
        guard data.count >= 8 else { throw bad("it is \(data.count) bytes, too short for a safetensors header") }
        var headerLength = 0
        for i in 0..<8 { headerLength |= Int(data[data.startIndex + i]) << (8 * i) }
        guard headerLength > 0, headerLength <= data.count - 8 else {
            throw bad("the header length \(headerLength) does not fit in the \(data.count)-byte file; it is truncated or not safetensors")
        }
        let header = data.subdata(in: (data.startIndex + 8)..<(data.startIndex + 8 + headerLength))
        let entries: [String: HeaderValue]
        do { entries = try JSONDecoder().decode([String: HeaderValue].self, from: header) } catch {
            throw bad("the JSON header is malformed (\(error))")
        }
        var tensors: [String: TensorInfo] = [:]
        var metadata: [String: String] = [:]
        let payload = data.count - 8 - headerLength
        for (name, value) in entries {
            switch value {
            case .metadata(let m): metadata = m
            case .tensor(let info):
                guard let width = SafetensorsFile.elementSize(info.dtype) else {
                    throw bad("tensor '\(name)' has unsupported dtype \(info.dtype)")
                }
                guard info.dataOffsets.count == 2, info.dataOffsets[0] >= 0, info.dataOffsets[0] <= info.dataOffsets[1],
                      info.dataOffsets[1] <= payload
                else { throw bad("tensor '\(name)' has data offsets \(info.dataOffsets) outside the \(payload)-byte payload") }
                let count = info.shape.reduce(1, *)
                guard info.shape.allSatisfy({ $0 >= 0 }), count * width == info.dataOffsets[1] - info.dataOffsets[0] else {
                    throw bad("tensor '\(name)' shape \(info.shape) does not match its \(info.dataOffsets[1] - info.dataOffsets[0]) bytes")
                }
                tensors[name] = info
            }
        }
        self.path = path
        self.tensors = tensors
        self.metadata = metadata
        self.data = data
        self.dataStart = data.startIndex + 8 + headerLength
    }

    static func elementSize(_ dtype: String) -> Int? {
        switch dtype {
        case "F32", "I32", "U32": return 4
        case "F16", "BF16", "I16", "U16": return 2
        case "F64", "I64", "U64": return 8
        case "I8", "U8", "BOOL": return 1
        default: return nil
        }
    }

    /// A tensor converted to Float (F32, F16, BF16 and F64 are read; integers are converted).
    public func floats(_ name: String) throws -> [Float] {
        guard let info = tensors[name] else { throw ModelError.missingTensor(name, file: path) }
        let count = info.shape.reduce(1, *)
        let start = dataStart + info.dataOffsets[0]
        return data.withUnsafeBytes { raw -> [Float] in
            let base = raw.baseAddress! + (start - data.startIndex)
            var out = [Float](repeating: 0, count: count)
            switch info.dtype {
            case "F32": for i in 0..<count { out[i] = Float(bitPattern: base.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian) }
            case "F64": for i in 0..<count { out[i] = Float(Double(bitPattern: base.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self).littleEndian)) }
            case "BF16": for i in 0..<count { out[i] = Float(bitPattern: UInt32(base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) << 16) }
            case "F16": for i in 0..<count { out[i] = halfToFloat(base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) }
            case "I32": for i in 0..<count { out[i] = Float(Int32(bitPattern: base.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian)) }
            case "I64": for i in 0..<count { out[i] = Float(Int64(bitPattern: base.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self).littleEndian)) }
            default: break
            }
            return out
        }
    }

    /// An integer tensor (I32 or I64) as Int32.
    public func int32s(_ name: String) throws -> [Int32] {
        guard let info = tensors[name] else { throw ModelError.missingTensor(name, file: path) }
        let count = info.shape.reduce(1, *)
        let start = dataStart + info.dataOffsets[0]
        return try data.withUnsafeBytes { raw -> [Int32] in
            let base = raw.baseAddress! + (start - data.startIndex)
            switch info.dtype {
            case "I32": return (0..<count).map { Int32(bitPattern: base.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self).littleEndian) }
            case "I64": return (0..<count).map { Int32(truncatingIfNeeded: Int64(bitPattern: base.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self).littleEndian)) }
            default: throw ModelError.badFile(path: path, reason: "tensor '\(name)' is \(info.dtype), expected an integer type")
            }
        }
    }

    /// Serialises F32 tensors (in the given order) and string metadata.
    public static func encode(_ tensors: [(name: String, shape: [Int], values: [Float])],
                              metadata: [String: String] = [:]) throws -> Data {
        var out = try header(tensors.map { ($0.name, $0.shape) }, metadata: metadata)
        for t in tensors {
            t.values.withUnsafeBytes { out.append(contentsOf: $0) }  // little-endian hosts only
        }
        return out
    }

    /// The length prefix and JSON header of a file of F32 tensors with these names and shapes, in
    /// order; the tensors' little-endian bytes follow it back to back.
    public static func header(_ tensors: [(name: String, shape: [Int])], metadata: [String: String] = [:]) throws -> Data {
        var header = "{"
        var offset = 0
        var parts: [String] = []
        if !metadata.isEmpty {
            let meta = try String(decoding: JSONEncoder().encode(metadata), as: UTF8.self)
            parts.append("\"__metadata__\":\(meta)")
        }
        for t in tensors {
            let bytes = t.shape.reduce(1, *) * 4
            let name = try String(decoding: JSONEncoder().encode(t.name), as: UTF8.self)
            parts.append("\(name):{\"dtype\":\"F32\",\"shape\":\(t.shape),\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        header += parts.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }  // pad with spaces to 8-byte alignment
        var out = Data()
        var length = UInt64(headerBytes.count).littleEndian
        withUnsafeBytes(of: &length) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        return out
    }
}

/// One value of the header object: a tensor description or the string metadata map.
private enum HeaderValue: Decodable {
    case tensor(SafetensorsFile.TensorInfo)
    case metadata([String: String])

    init(from decoder: any Decoder) throws {
        if let info = try? SafetensorsFile.TensorInfo(from: decoder) {
            self = .tensor(info)
        } else {
            self = .metadata(try [String: String](from: decoder))
        }
    }
}

/// IEEE half to float.
@inline(__always)
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = Int((h >> 10) & 0x1F)
    let mantissa = UInt32(h & 0x3FF)
    if exponent == 0 {
        if mantissa == 0 { return Float(bitPattern: sign) }
        let value = Float(mantissa) * Float(bitPattern: 0x3380_0000)  // 2^-24
        return sign != 0 ? -value : value
    }
    if exponent == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
    return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (mantissa << 13))
}
