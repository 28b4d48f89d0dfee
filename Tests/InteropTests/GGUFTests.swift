// GGUF export: the file parses back (header, metadata, tensor table, aligned data), values survive
// f32 exactly and f16/q8_0 within their rounding, rotary rows are reordered for llama.cpp, and the
// half-precision conversion rounds like IEEE.

import Compute
import Foundation
@testable import Interop
import Model
import Training
import XCTest

/// A minimal GGUF reader for the tests.
struct GGUFFile {
    var version: UInt32 = 0
    var metadata: [String: Any] = [:]
    var tensors: [String: (dims: [Int], type: UInt32, offset: Int)] = [:]
    var dataStart = 0
    let bytes: [UInt8]

    init(path: String) throws {
        bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        var p = 0
        func u32() -> UInt32 { defer { p += 4 }; return (0..<4).reduce(0) { $0 | UInt32(bytes[p + $1]) << (8 * $1) } }
        func u64() -> UInt64 { defer { p += 8 }; return (0..<8).reduce(0) { $0 | UInt64(bytes[p + $1]) << (8 * $1) } }
        func string() -> String { let n = Int(u64()); defer { p += n }; return String(decoding: bytes[p..<(p + n)], as: UTF8.self) }
        func value(_ type: UInt32) -> Any {
            switch type {
            case 4: return u32()
            case 5: return Int32(bitPattern: u32())
            case 6: return Float(bitPattern: u32())
            case 7: p += 1; return bytes[p - 1] != 0
            case 8: return string()
            case 9:
                let inner = u32(), n = Int(u64())
                return (0..<n).map { _ in value(inner) }
            default: fatalError("unexpected GGUF type \(type)")
            }
        }
        guard String(decoding: bytes[0..<4], as: UTF8.self) == "GGUF" else { throw InteropError.badInput(path: path, reason: "no magic") }
        p = 4
        version = u32()
        let tensorCount = Int(u64()), kvCount = Int(u64())
        for _ in 0..<kvCount { let key = string(); metadata[key] = value(u32()) }
        for _ in 0..<tensorCount {
            let name = string()
            let dims = (0..<Int(u32())).map { _ in Int(u64()) }
            let type = u32()
            tensors[name] = (dims, type, Int(u64()))
        }
        dataStart = (p + 31) / 32 * 32
    }

    /// A tensor's values as floats (f32, f16 and q8_0 decoded).
    func floats(_ name: String) -> [Float] {
        let t = tensors[name]!
        let count = t.dims.reduce(1, *)
        let base = dataStart + t.offset
        func half(_ i: Int) -> Float { Float(Float16(bitPattern: UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8)) }
        switch t.type {
        case 0: return (0..<count).map { i in Float(bitPattern: (0..<4).reduce(0) { $0 | UInt32(bytes[base + 4 * i + $1]) << (8 * $1) }) }
        case 1: return (0..<count).map { half(base + 2 * $0) }
        case 8:
            return (0..<count).map { i in
                let block = base + (i / 32) * 34
                return half(block) * Float(Int8(bitPattern: bytes[block + 2 + i % 32]))
            }
        default: fatalError("type \(t.type)")
        }
    }
}

final class GGUFTests: XCTestCase {
    func convertedLlama() throws -> (GPT, TextCodec) {
        let out = temporaryDirectory("gguf-src")
        try HuggingFaceConverter.importModel(from: fixtures + "/llama", to: out)
        let loaded = try Checkpoint.load(out, backend: CPUBackend())
        return (loaded.model, loaded.codec)
    }

    func testLlamaExportParsesBackWithEveryTensorAndKey() throws {
        let (model, codec) = try convertedLlama()
        let path = temporaryDirectory("gguf") + "/model.gguf"
        try GGUFExporter.export(model, codec: codec, name: "tiny", type: .f32, to: path)
        let file = try GGUFFile(path: path)
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(file.metadata["general.architecture"] as? String, "llama")
        XCTAssertEqual(file.metadata["llama.block_count"] as? UInt32, 2)
        XCTAssertEqual(file.metadata["llama.attention.head_count"] as? UInt32, 4)
        XCTAssertEqual(file.metadata["llama.attention.head_count_kv"] as? UInt32, 2)
        XCTAssertEqual(file.metadata["llama.feed_forward_length"] as? UInt32, 96)
        XCTAssertEqual(file.metadata["llama.rope.dimension_count"] as? UInt32, 16)
        XCTAssertEqual(file.metadata["llama.attention.layer_norm_rms_epsilon"] as? Float, 1e-6)
        XCTAssertEqual(file.metadata["tokenizer.ggml.model"] as? String, "gpt2")
        XCTAssertEqual((file.metadata["tokenizer.ggml.tokens"] as? [Any])?.count, 300)
        XCTAssertEqual((file.metadata["tokenizer.ggml.merges"] as? [Any])?.count, 43)
        XCTAssertEqual(file.tensors.count, 3 + 2 * 9)
        // Dimensions innermost first; the vocabulary is not padded.
        XCTAssertEqual(file.tensors["token_embd.weight"]?.dims, [64, 300])
        XCTAssertEqual(file.tensors["output.weight"]?.dims, [64, 300])
        XCTAssertEqual(file.tensors["blk.0.attn_k.weight"]?.dims, [64, 32])
        XCTAssertEqual(file.tensors["blk.1.ffn_down.weight"]?.dims, [96, 64])
        for (_, t) in file.tensors { XCTAssertEqual(t.offset % 32, 0) }
        // Values: f32 exact; queries and keys interleaved per head for llama.cpp's rotary layout.
        let hf = try SafetensorsFile(path: fixtures + "/llama/model.safetensors")
        XCTAssertEqual(file.floats("blk.0.attn_v.weight"), try hf.floats("model.layers.0.self_attn.v_proj.weight"))
        XCTAssertEqual(file.floats("blk.1.ffn_gate.weight"), try hf.floats("model.layers.1.mlp.gate_proj.weight"))
        let k = try hf.floats("model.layers.0.self_attn.k_proj.weight")
        let kOut = file.floats("blk.0.attn_k.weight")
        // head 1, pair index 3: rows 16 + 3 and 16 + 8 + 3 become rows 16 + 6 and 16 + 7.
        XCTAssertEqual(Array(kOut[((16 + 6) * 64)..<((16 + 7) * 64)]), Array(k[((16 + 3) * 64)..<((16 + 4) * 64)]))
        XCTAssertEqual(Array(kOut[((16 + 7) * 64)..<((16 + 8) * 64)]), Array(k[((16 + 11) * 64)..<((16 + 12) * 64)]))
    }

    func testF16AndQ8_0StayWithinTheirRounding() throws {
        let (model, codec) = try convertedLlama()
        let hf = try SafetensorsFile(path: fixtures + "/llama/model.safetensors")
        let reference = try hf.floats("model.layers.1.mlp.up_proj.weight")
        for (type, code) in [(GGUFType.f16, UInt32(1)), (.q8_0, 8)] {
            let path = temporaryDirectory("gguf-\(type)") + "/model.gguf"
            try GGUFExporter.export(model, codec: codec, name: "tiny", type: type, to: path)
            let file = try GGUFFile(path: path)
            XCTAssertEqual(file.tensors["blk.1.ffn_up.weight"]?.type, code)
            XCTAssertEqual(file.tensors["blk.1.attn_norm.weight"]?.type, 0, "vectors stay f32")
            let values = file.floats("blk.1.ffn_up.weight")
            for block in 0..<(reference.count / 32) {
                let slice = reference[(block * 32)..<((block + 1) * 32)]
                let amax = slice.map(abs).max()!
                let bound = type == .f16 ? amax / 1024 : amax / 127 / 2 * 1.01 + amax / 1024
                for i in slice.indices { XCTAssertLessThanOrEqual(abs(values[i] - reference[i]), bound, "\(type) \(i)") }
            }
        }
    }

    func testGPT2ExportHasFusedAttentionAndPositionTable() throws {
        let out = temporaryDirectory("gguf-gpt2-src")
        try HuggingFaceConverter.importModel(from: fixtures + "/gpt2", to: out)
        let loaded = try Checkpoint.load(out, backend: CPUBackend())
        let path = temporaryDirectory("gguf-gpt2") + "/model.gguf"
        try GGUFExporter.export(loaded.model, codec: loaded.codec, name: "tiny", type: .q8_0, to: path)
        let file = try GGUFFile(path: path)
        XCTAssertEqual(file.metadata["general.architecture"] as? String, "gpt2")
        XCTAssertEqual(file.tensors["position_embd.weight"]?.dims, [64, 32])
        XCTAssertEqual(file.tensors["blk.0.attn_qkv.weight"]?.dims, [64, 192])
        XCTAssertEqual(file.tensors["blk.0.attn_qkv.bias"]?.dims, [192])
        XCTAssertNil(file.tensors["output.weight"], "tied head: llama.cpp reuses token_embd")
        XCTAssertEqual(file.metadata["general.file_type"] as? UInt32, 7)
    }

    func testHalfConversionRoundsToNearestEven() {
        // Every finite half survives float → half exactly.
        for bits in UInt16(0)...UInt16.max where (bits & 0x7C00) != 0x7C00 {
            let f = Float(Float16(bitPattern: bits))
            XCTAssertEqual(floatToHalf(f), bits, "half \(bits)")
        }
        // Ties go to the even neighbour; overflow to infinity; tiny values to zero.
        XCTAssertEqual(floatToHalf(1 + 1.0 / 2048), 0x3C00)
        XCTAssertEqual(floatToHalf(1 + 3.0 / 2048), 0x3C02)
        XCTAssertEqual(floatToHalf(70000), 0x7C00)
        XCTAssertEqual(floatToHalf(-1e-9), 0x8000)
        for x: Float in [0.1, -3.14159, 65504, 6.1e-5, 3e-7, 1234.567] {
            XCTAssertEqual(floatToHalf(x), Float16(x).bitPattern, "\(x)")
        }
    }
}
