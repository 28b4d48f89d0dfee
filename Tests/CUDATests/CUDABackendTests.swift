// CUDABackend against CPUBackend, kernel by kernel and for whole models.
//
// On a machine with a usable NVIDIA GPU the suite runs on it. Otherwise it builds the CPU emulator
// (Tools/cuda/emulator/build.sh) into a temporary folder and runs the same suite there: the real
// kernel source, compiled as C++, with device memory the host cannot touch. No C++ compiler: skipped.
//
// Tolerances: |gpu - cpu| <= atol + rtol·|cpu|, fp32 kernels 1e-5/1e-5 unless noted (attention and
// reductions whose summation order differs get 1e-4 relative); dropout masks, int8 quantisation,
// cache copies and argmax token ids must match exactly.

import Compute
import Engine
import Foundation
import Model
import TestSupport
import XCTest

@testable import CUDA

/// Where the suite runs: the real GPU, or the emulator built once per test process.
enum CUDATestDevice {
    /// The backend every test shares, or why there is none.
    static let shared: Result<CUDABackend, SkipReason> = make()

    struct SkipReason: Error { let message: String }

    /// The repository root (three levels above this file).
    static var repositoryRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    private static func make() -> Result<CUDABackend, SkipReason> {
        if environment("SWIFTGPT_CUDA_EMULATOR") == nil, case .success = CUDABackend.probe() {
            do { return .success(try CUDABackend()) } catch {
                return .failure(SkipReason(message: "a GPU was found but the backend failed: \(error)"))
            }
        }
        if environment("SWIFTGPT_CUDA_EMULATOR") == nil {
            switch buildEmulator() {
            case .failure(let reason): return .failure(reason)
            case .success(let path): setenv("SWIFTGPT_CUDA_EMULATOR", path, 1)
            }
        }
        do { return .success(try CUDABackend()) } catch {
            return .failure(SkipReason(message: "the CUDA emulator did not start: \(error)"))
        }
    }

    /// Runs Tools/cuda/emulator/build.sh into a temporary folder; the library's path, or why not.
    private static func buildEmulator() -> Result<String, SkipReason> {
        let out = scratchRoot + "/cuda-emu"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = [repositoryRoot + "/Tools/cuda/emulator/build.sh", out]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { return .failure(SkipReason(message: "cannot run build.sh: \(error)")) }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if process.terminationStatus == 3 {
            return .failure(SkipReason(message: "no GPU and no C++ compiler for the CUDA emulator: \(output)"))
        }
        guard process.terminationStatus == 0 else {
            return .failure(SkipReason(message: "building the CUDA emulator failed:\n\(output)"))
        }
        return .success(out + "/libcudaemu.so")
    }
}

/// |a - e| <= atol + rtol·|e| element-wise; reports the max difference and the first bad index.
func assertClose(_ actual: [Float], _ expected: [Float], atol: Float = 1e-5, rtol: Float = 1e-5, _ label: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    guard actual.count == expected.count else {
        XCTFail("\(label): count \(actual.count) != expected \(expected.count)", file: file, line: line)
        return
    }
    var maxDiff: Float = 0
    var firstBad: Int? = nil
    for i in 0..<actual.count {
        let d = abs(actual[i] - expected[i])
        if !(d <= atol + rtol * abs(expected[i])) && firstBad == nil { firstBad = i }
        if d > maxDiff || d.isNaN { maxDiff = d }
    }
    if let i = firstBad {
        XCTFail("\(label): max |diff| \(maxDiff); first bad index \(i): got \(actual[i]), expected \(expected[i]) "
                + "(atol \(atol), rtol \(rtol))", file: file, line: line)
    }
}

/// One tensor on both backends.
struct Twin {
    let cpu: FloatBuffer
    let gpu: FloatBuffer
}

class CUDATestCase: XCTestCase {
    var gpu: CUDABackend!
    let cpu = CPUBackend()
    var rng = SeededRandom(seed: 42)
    private var cleanups: [() -> Void] = []

    override func setUpWithError() throws {
        switch CUDATestDevice.shared {
        case .success(let backend): gpu = backend
        case .failure(let reason): throw XCTSkip(reason.message)
        }
    }

    override func tearDown() {
        cleanups.forEach { $0() }
        cleanups = []
    }

    func random(_ count: Int, scale: Float = 1) -> [Float] { (0..<count).map { _ in rng.nextNormal() * scale } }

    /// Allocates `values` on both backends.
    func twin(_ values: [Float]) -> Twin {
        let c = try! cpu.allocate(values.count), g = try! gpu.allocate(values.count)
        values.withUnsafeBufferPointer { cpu.upload($0, to: c); gpu.upload($0, to: g) }
        let (host, device) = (cpu, gpu!)
        cleanups.append { host.deallocate(c); device.deallocate(g) }
        return Twin(cpu: c, gpu: g)
    }

    func twin(zeros count: Int) -> Twin { twin([Float](repeating: 0, count: count)) }

    func tokens(_ values: [Int32]) -> (cpu: TokenBuffer, gpu: TokenBuffer) {
        let c = try! cpu.allocateTokens(values.count), g = try! gpu.allocateTokens(values.count)
        values.withUnsafeBufferPointer { cpu.uploadTokens($0, to: c); gpu.uploadTokens($0, to: g) }
        let (host, device) = (cpu, gpu!)
        cleanups.append { host.deallocateTokens(c); device.deallocateTokens(g) }
        return (c, g)
    }

    func read(_ buffer: FloatBuffer, _ backend: any Backend) -> [Float] {
        var host = [Float](repeating: 0, count: buffer.count)
        host.withUnsafeMutableBufferPointer { backend.download(buffer, into: $0) }
        return host
    }

    /// Compares a tensor across the backends.
    func assertTwin(_ t: Twin, atol: Float = 1e-5, rtol: Float = 1e-5, _ label: String, file: StaticString = #filePath,
                    line: UInt = #line) {
        assertClose(read(t.gpu, gpu), read(t.cpu, cpu), atol: atol, rtol: rtol, label, file: file, line: line)
    }

    func assertTwinExact(_ t: Twin, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        let g = read(t.gpu, gpu), c = read(t.cpu, cpu)
        XCTAssertEqual(g.map(\.bitPattern), c.map(\.bitPattern), "\(label): not bit-identical", file: file, line: line)
    }
}

final class CUDAKernelTests: CUDATestCase {
    func testEncoderAndEmbedding() {
        let B = 2, T = 5, C = 12, V = 7
        let wte = twin(random(V * C)), wpe = twin(random(T * C))
        let ids: [Int32] = [1, 3, 3, 0, 6, 2, 1, 1, 5, 3]
        let tok = tokens(ids)
        for withPositions in [true, false] {
            let out = twin(zeros: B * T * C)
            cpu.encoderForward(out: out.cpu, tokens: tok.cpu, wte: wte.cpu, wpe: withPositions ? wpe.cpu : nil, B: B, T: T, C: C)
            gpu.encoderForward(out: out.gpu, tokens: tok.gpu, wte: wte.gpu, wpe: withPositions ? wpe.gpu : nil, B: B, T: T, C: C)
            assertTwin(out, "encoderForward wpe=\(withPositions)")
            // Backward accumulates into non-zero gradients; repeated tokens share a row.
            let dout = twin(random(B * T * C)), dwte = twin(random(V * C)), dwpe = twin(random(T * C))
            cpu.encoderBackward(dwte: dwte.cpu, dwpe: withPositions ? dwpe.cpu : nil, dout: dout.cpu, tokens: tok.cpu, B: B, T: T, C: C)
            gpu.encoderBackward(dwte: dwte.gpu, dwpe: withPositions ? dwpe.gpu : nil, dout: dout.gpu, tokens: tok.gpu, B: B, T: T, C: C)
            assertTwin(dwte, "encoderBackward dwte wpe=\(withPositions)")
            assertTwin(dwpe, "encoderBackward dwpe wpe=\(withPositions)")
        }
        let N = 4
        let ids2 = tokens([4, 0, 6, 2]), positions = tokens([0, 4, 2, 2])
        for withPositions in [true, false] {
            let out = twin(zeros: N * C)
            cpu.embedForward(out: out.cpu, tokens: ids2.cpu, positions: positions.cpu, wte: wte.cpu, wpe: withPositions ? wpe.cpu : nil, N: N, C: C)
            gpu.embedForward(out: out.gpu, tokens: ids2.gpu, positions: positions.gpu, wte: wte.gpu, wpe: withPositions ? wpe.gpu : nil, N: N, C: C)
            assertTwin(out, "embedForward wpe=\(withPositions)")
        }
    }

    func testLayerNormForwardAndBackward() {
        // N = 70 spans two row chunks of the deterministic weight-gradient sums; C = 40 a partial warp.
        let N = 70, C = 40
        let x = twin(random(N * C, scale: 2)), w = twin(random(C)), b = twin(random(C))
        let out = twin(zeros: N * C), mean = twin(zeros: N), rstd = twin(zeros: N)
        cpu.layerNormForward(out: out.cpu, mean: mean.cpu, rstd: rstd.cpu, input: x.cpu, weight: w.cpu, bias: b.cpu, N: N, C: C)
        gpu.layerNormForward(out: out.gpu, mean: mean.gpu, rstd: rstd.gpu, input: x.gpu, weight: w.gpu, bias: b.gpu, N: N, C: C)
        assertTwin(out, rtol: 1e-4, "layerNorm out")
        assertTwin(mean, "layerNorm mean")
        assertTwin(rstd, rtol: 1e-4, "layerNorm rstd")
        let dout = twin(random(N * C)), dx = twin(random(N * C)), dw = twin(random(C)), db = twin(random(C))
        cpu.layerNormBackward(dinput: dx.cpu, dweight: dw.cpu, dbias: db.cpu, dout: dout.cpu, input: x.cpu, weight: w.cpu,
                              mean: mean.cpu, rstd: rstd.cpu, N: N, C: C)
        gpu.layerNormBackward(dinput: dx.gpu, dweight: dw.gpu, dbias: db.gpu, dout: dout.gpu, input: x.gpu, weight: w.gpu,
                              mean: mean.gpu, rstd: rstd.gpu, N: N, C: C)
        assertTwin(dx, atol: 1e-4, rtol: 1e-4, "layerNorm dinput")
        assertTwin(dw, atol: 1e-4, rtol: 1e-4, "layerNorm dweight")
        assertTwin(db, atol: 1e-4, rtol: 1e-4, "layerNorm dbias")
    }

    func testRMSNormForwardAndBackward() {
        let N = 70, C = 40
        let x = twin(random(N * C, scale: 2)), w = twin(random(C))
        let out = twin(zeros: N * C), rstd = twin(zeros: N)
        cpu.rmsNormForward(out: out.cpu, rstd: rstd.cpu, input: x.cpu, weight: w.cpu, N: N, C: C, epsilon: 1e-5)
        gpu.rmsNormForward(out: out.gpu, rstd: rstd.gpu, input: x.gpu, weight: w.gpu, N: N, C: C, epsilon: 1e-5)
        assertTwin(out, rtol: 1e-4, "rmsNorm out")
        assertTwin(rstd, rtol: 1e-4, "rmsNorm rstd")
        let dout = twin(random(N * C)), dx = twin(random(N * C)), dw = twin(random(C))
        cpu.rmsNormBackward(dinput: dx.cpu, dweight: dw.cpu, dout: dout.cpu, input: x.cpu, weight: w.cpu, rstd: rstd.cpu, N: N, C: C)
        gpu.rmsNormBackward(dinput: dx.gpu, dweight: dw.gpu, dout: dout.gpu, input: x.gpu, weight: w.gpu, rstd: rstd.gpu, N: N, C: C)
        assertTwin(dx, atol: 1e-4, rtol: 1e-4, "rmsNorm dinput")
        assertTwin(dw, atol: 1e-4, rtol: 1e-4, "rmsNorm dweight")
    }

    func testRotaryWithAndWithoutPositions() {
        let NH = 4, KVH = 2, hs = 8, N = 10, T = 5
        let width = (NH + 2 * KVH) * hs
        let positions = tokens([0, 1, 2, 7, 100, 3, 3, 4000, 5, 9])
        for usePositions in [false, true] {
            for inverse in [false, true] {
                let qkv = twin(random(N * width))
                cpu.rotaryEmbedding(qkv.cpu, positions: usePositions ? positions.cpu : nil, N: N, T: T, heads: NH, kvHeads: KVH,
                                    headSize: hs, theta: 10000, inverse: inverse)
                gpu.rotaryEmbedding(qkv.gpu, positions: usePositions ? positions.gpu : nil, N: N, T: T, heads: NH, kvHeads: KVH,
                                    headSize: hs, theta: 10000, inverse: inverse)
                assertTwin(qkv, "rotary positions=\(usePositions) inverse=\(inverse)")
            }
        }
    }

    func testPointwiseKernels() {
        let N = 9, H = 37, count = 1000
        let input = twin(random(N * 2 * H, scale: 3)), out = twin(zeros: N * H)
        cpu.swigluForward(out: out.cpu, input: input.cpu, N: N, H: H)
        gpu.swigluForward(out: out.gpu, input: input.gpu, N: N, H: H)
        assertTwin(out, rtol: 1e-5, "swigluForward")
        let dout = twin(random(N * H)), dinput = twin(random(N * 2 * H))
        cpu.swigluBackward(dinput: dinput.cpu, input: input.cpu, dout: dout.cpu, N: N, H: H)
        gpu.swigluBackward(dinput: dinput.gpu, input: input.gpu, dout: dout.gpu, N: N, H: H)
        assertTwin(dinput, rtol: 1e-5, "swigluBackward")

        let x = twin(random(count, scale: 3)), y = twin(zeros: count)
        cpu.geluForward(out: y.cpu, input: x.cpu, count: count)
        gpu.geluForward(out: y.gpu, input: x.gpu, count: count)
        assertTwin(y, rtol: 1e-5, "geluForward")
        let dy = twin(random(count)), dx = twin(random(count))
        cpu.geluBackward(dinput: dx.cpu, input: x.cpu, dout: dy.cpu, count: count)
        gpu.geluBackward(dinput: dx.gpu, input: x.gpu, dout: dy.gpu, count: count)
        assertTwin(dx, rtol: 1e-5, "geluBackward")

        let a = twin(random(count)), b = twin(random(count)), sum = twin(zeros: count)
        cpu.residualForward(out: sum.cpu, a: a.cpu, b: b.cpu, count: count)
        gpu.residualForward(out: sum.gpu, a: a.gpu, b: b.gpu, count: count)
        assertTwinExact(sum, "residualForward")
    }

    func testDropoutMasksAreIdentical() {
        let count = 3001
        for spec in [DropoutSpec(probability: 0.1, seed: 7), DropoutSpec(probability: 0.5, seed: 0xDEAD_BEEF_1234), DropoutSpec(probability: 0, seed: 3)] {
            let x = twin(random(count))
            cpu.dropoutForward(x.cpu, count: count, dropout: spec)
            gpu.dropoutForward(x.gpu, count: count, dropout: spec)
            assertTwinExact(x, "dropoutForward p=\(spec.probability)")
            cpu.dropoutBackward(x.cpu, count: count - 1, dropout: spec)
            gpu.dropoutBackward(x.gpu, count: count - 1, dropout: spec)
            assertTwinExact(x, "dropoutBackward p=\(spec.probability)")
        }
    }

    func testMatmulForwardAndBackward() {
        let N = 70, C = 24, OC = 40
        let input = twin(random(N * C)), weight = twin(random(OC * C)), bias = twin(random(OC))
        for withBias in [true, false] {
            let out = twin(zeros: N * OC)
            cpu.matmulForward(out: out.cpu, input: input.cpu, weight: weight.cpu, bias: withBias ? bias.cpu : nil, N: N, C: C, OC: OC)
            gpu.matmulForward(out: out.gpu, input: input.gpu, weight: weight.gpu, bias: withBias ? bias.gpu : nil, N: N, C: C, OC: OC)
            assertTwin(out, atol: 1e-5, rtol: 1e-4, "matmulForward bias=\(withBias)")
            let dout = twin(random(N * OC)), dinput = twin(random(N * C)), dweight = twin(random(OC * C)), dbias = twin(random(OC))
            cpu.matmulBackward(dinput: withBias ? dinput.cpu : nil, dweight: dweight.cpu, dbias: withBias ? dbias.cpu : nil, dout: dout.cpu,
                               input: input.cpu, weight: weight.cpu, N: N, C: C, OC: OC)
            gpu.matmulBackward(dinput: withBias ? dinput.gpu : nil, dweight: dweight.gpu, dbias: withBias ? dbias.gpu : nil, dout: dout.gpu,
                               input: input.gpu, weight: weight.gpu, N: N, C: C, OC: OC)
            assertTwin(dinput, atol: 1e-4, rtol: 1e-4, "matmulBackward dinput bias=\(withBias)")
            assertTwin(dweight, atol: 1e-4, rtol: 1e-4, "matmulBackward dweight bias=\(withBias)")
            assertTwin(dbias, atol: 1e-4, rtol: 1e-4, "matmulBackward dbias bias=\(withBias)")
        }
    }

    func testCrossEntropyWithAndWithoutWeightsAndPadding() {
        let N = 6
        for (V, Vp) in [(10, 16), (33, 33)] {
            for weighted in [false, true] {
                let logits = twin(random(N * Vp, scale: 3)), losses = twin(zeros: N)
                let targets = tokens((0..<N).map { Int32(($0 * 7) % V) })
                let weights = twin((0..<N).map { Float($0 + 1) / 10 })
                cpu.crossEntropyForward(losses: losses.cpu, logits: logits.cpu, targets: targets.cpu, weights: weighted ? weights.cpu : nil,
                                        N: N, V: V, Vp: Vp)
                gpu.crossEntropyForward(losses: losses.gpu, logits: logits.gpu, targets: targets.gpu, weights: weighted ? weights.gpu : nil,
                                        N: N, V: V, Vp: Vp)
                assertTwin(losses, rtol: 1e-5, "crossEntropy losses V=\(V) Vp=\(Vp) weighted=\(weighted)")
                assertTwin(logits, rtol: 1e-5, "crossEntropy logits/gradient V=\(V) Vp=\(Vp) weighted=\(weighted)")
            }
        }
    }

    /// Flash attention forward and backward against the CPU's blocked attention.
    func testAttentionForwardAndBackward() {
        // T = 37: two query tiles, the second partial. (NH, KVH): plain and grouped.
        let B = 2, T = 37, C = 16
        for (NH, KVH) in [(2, 2), (4, 2), (4, 1)] {
            for dropout in [nil, DropoutSpec(probability: 0.2, seed: 99)] {
                let hs = C / NH, W = C + 2 * KVH * hs
                let label = "NH=\(NH) KVH=\(KVH) dropout=\(dropout != nil)"
                let qkv = twin(random(B * T * W)), out = twin(zeros: B * T * C), lse = twin(zeros: B * NH * T)
                cpu.attentionForward(out: out.cpu, lse: lse.cpu, qkv: qkv.cpu, B: B, T: T, C: C, NH: NH, KVH: KVH, dropout: dropout)
                gpu.attentionForward(out: out.gpu, lse: lse.gpu, qkv: qkv.gpu, B: B, T: T, C: C, NH: NH, KVH: KVH, dropout: dropout)
                assertTwin(out, atol: 1e-5, rtol: 1e-4, "attention out \(label)")
                assertTwin(lse, atol: 1e-5, rtol: 1e-5, "attention lse \(label)")
                let dout = twin(random(B * T * C)), dqkv = twin(random(B * T * W))
                cpu.attentionBackward(dqkv: dqkv.cpu, dout: dout.cpu, lse: lse.cpu, qkv: qkv.cpu, B: B, T: T, C: C, NH: NH, KVH: KVH,
                                      dropout: dropout)
                gpu.attentionBackward(dqkv: dqkv.gpu, dout: dout.gpu, lse: lse.gpu, qkv: qkv.gpu, B: B, T: T, C: C, NH: NH, KVH: KVH,
                                      dropout: dropout)
                assertTwin(dqkv, atol: 1e-4, rtol: 1e-4, "attention dqkv \(label)")
            }
        }
    }

    func testCachedAttentionAndCacheCopy() {
        let C = 16, NH = 4, KVH = 2, hs = C / NH, capacity = 150, slotsCount = 3
        let W = C + 2 * KVH * hs, cacheCount = slotsCount * KVH * capacity * hs
        let keys = twin(zeros: cacheCount), values = twin(zeros: cacheCount)
        // Prefill: slot 2 positions 0..<140 (more keys than one 128-key chunk), slot 0 positions 0..<3.
        var slotIds: [Int32] = [], positionIds: [Int32] = []
        for p in 0..<140 { slotIds.append(2); positionIds.append(Int32(p)) }
        for p in 0..<3 { slotIds.append(0); positionIds.append(Int32(p)) }
        func step(_ slotIds: [Int32], _ positionIds: [Int32]) {
            let N = slotIds.count
            let qkv = twin(random(N * W)), out = twin(zeros: N * C)
            let slots = tokens(slotIds), positions = tokens(positionIds)
            cpu.cachedAttentionForward(out: out.cpu, qkv: qkv.cpu, keys: keys.cpu, values: values.cpu, slots: slots.cpu,
                                       positions: positions.cpu, N: N, C: C, NH: NH, KVH: KVH, capacity: capacity)
            gpu.cachedAttentionForward(out: out.gpu, qkv: qkv.gpu, keys: keys.gpu, values: values.gpu, slots: slots.gpu,
                                       positions: positions.gpu, N: N, C: C, NH: NH, KVH: KVH, capacity: capacity)
            assertTwin(out, atol: 1e-5, rtol: 1e-4, "cachedAttention out (N=\(N))")
            assertTwinExact(keys, "cached keys")
            assertTwinExact(values, "cached values")
        }
        step(slotIds, positionIds)
        // Copy slot 2's first 130 positions to slot 1, then decode one token in each slot.
        cpu.copyCacheSlot(keys: keys.cpu, values: values.cpu, from: 2, to: 1, length: 130, NH: KVH, capacity: capacity, headSize: hs)
        gpu.copyCacheSlot(keys: keys.gpu, values: values.gpu, from: 2, to: 1, length: 130, NH: KVH, capacity: capacity, headSize: hs)
        assertTwinExact(keys, "copyCacheSlot keys")
        assertTwinExact(values, "copyCacheSlot values")
        step([0, 1, 2], [3, 130, 140])
    }

    func testInt8QuantisationAndMatmul() throws {
        let rows = 40, C = 50
        var w = random(rows * C)
        for c in 0..<C { w[3 * C + c] = 0 }  // an all-zero row: scale 0
        w[5 * C + 7] = 127.0 / 2 * 0.01  // exact halves exercise round-half-even
        let weight = twin(w), scales = twin(zeros: rows)
        let qc = try cpu.allocateInt8(rows * C), qg = try gpu.allocateInt8(rows * C)
        defer { cpu.deallocateInt8(qc); gpu.deallocateInt8(qg) }
        cpu.quantizeRows(weight: weight.cpu, into: qc, scales: scales.cpu, rows: rows, C: C)
        gpu.quantizeRows(weight: weight.gpu, into: qg, scales: scales.gpu, rows: rows, C: C)
        assertTwinExact(scales, "quantizeRows scales")
        var hostQ = [Int8](repeating: 0, count: rows * C)
        gpu.synchronize()
        let copied = hostQ.withUnsafeMutableBytes { gpu.driver.cuMemcpyDtoH($0.baseAddress!, UInt64(UInt(bitPattern: qg.pointer)), rows * C) }
        XCTAssertEqual(copied, 0)
        XCTAssertEqual(hostQ, Array(UnsafeBufferPointer(start: qc.pointer, count: rows * C)), "quantizeRows int8 values")
        let bias = twin(random(rows))
        for N in [1, 3, 20] {  // the warp-per-channel kernel, and dequantise + cuBLAS
            for withBias in [true, false] {
                let input = twin(random(N * C)), out = twin(zeros: N * rows)
                cpu.matmulInt8Forward(out: out.cpu, input: input.cpu, weight: qc, scales: scales.cpu, bias: withBias ? bias.cpu : nil,
                                      N: N, C: C, OC: rows)
                gpu.matmulInt8Forward(out: out.gpu, input: input.gpu, weight: qg, scales: scales.gpu, bias: withBias ? bias.gpu : nil,
                                      N: N, C: C, OC: rows)
                assertTwin(out, atol: 1e-5, rtol: 1e-4, "matmulInt8Forward N=\(N) bias=\(withBias)")
            }
        }
    }

    func testSumOfSquaresIsDeterministic() {
        for count in [1, 1000, 3 * CUDAKernelSource.sumOfSquaresChunk + 17] {
            let x = twin(random(count, scale: 3))
            let c = cpu.sumOfSquares(x.cpu), g = gpu.sumOfSquares(x.gpu)
            XCTAssertEqual(g, c, accuracy: 1e-6 * c, "sumOfSquares count=\(count)")
            XCTAssertEqual(gpu.sumOfSquares(x.gpu).bitPattern, g.bitPattern, "sumOfSquares must repeat bit for bit")
        }
    }

    func testAdamW() {
        let count = 777
        let steps = [AdamWStep(learningRate: 1e-3, step: 1),
                     AdamWStep(learningRate: 3e-3, beta1: 0.8, beta2: 0.99, weightDecay: 0.1, step: 2),
                     AdamWStep(learningRate: 1e-2, weightDecay: 0.05, step: 3, gradientScale: 0.25)]
        let params = twin(random(count)), m = twin(zeros: count), v = twin(zeros: count)
        for s in steps {
            let grads = twin(random(count, scale: 0.1))
            cpu.adamw(params: params.cpu, grads: grads.cpu, m: m.cpu, v: v.cpu, count: count, step: s)
            gpu.adamw(params: params.gpu, grads: grads.gpu, m: m.gpu, v: v.gpu, count: count, step: s)
            assertTwin(params, rtol: 1e-5, "adamw params step \(s.step)")
            assertTwin(m, atol: 1e-7, rtol: 1e-5, "adamw m step \(s.step)")
            assertTwin(v, atol: 1e-9, rtol: 1e-5, "adamw v step \(s.step)")
        }
    }

    func testMemoryOperations() {
        let a = twin(random(100)), b = twin(zeros: 120)
        cpu.copy(from: a.cpu, to: b.cpu)
        gpu.copy(from: a.gpu, to: b.gpu)
        assertTwinExact(b, "copy")
        cpu.zero(a.cpu)
        gpu.zero(a.gpu)
        assertTwinExact(a, "zero")
        XCTAssertEqual(read(try! gpu.allocate(5), gpu), [0, 0, 0, 0, 0], "allocate zero-fills")
    }
}

final class CUDALoaderTests: XCTestCase {
    func testMissingDriverSaysWhatToDo() {
        let saved = environment("SWIFTGPT_CUDA_EMULATOR")
        unsetenv("SWIFTGPT_CUDA_EMULATOR")
        setenv("SWIFTGPT_CUDA_DRIVER", "/nonexistent/libcuda.so.1", 1)
        defer {
            unsetenv("SWIFTGPT_CUDA_DRIVER")
            if let saved { setenv("SWIFTGPT_CUDA_EMULATOR", saved, 1) }
        }
        guard case .failure(let error) = CUDABackend.probe() else { return XCTFail("probe should fail without a driver") }
        let text = "\(error)"
        XCTAssertTrue(text.contains("libcuda.so.1") && text.contains("/nonexistent/libcuda.so.1"), text)
        XCTAssertTrue(text.contains("HINT") && text.contains("--device cpu"), text)
    }

    func testPTXCacheKeyDependsOnEveryPart() {
        XCTAssertNotEqual(PTXCache.key(["a", "b"]), PTXCache.key(["ab", ""]))
        XCTAssertEqual(PTXCache.key(["x"]).count, 16)
    }

    /// Compiles the whole kernel source to PTX for sm_90 with the real NVRTC when one can be found
    /// (SWIFTGPT_CUDA_LIB_PATH, the CUDA toolkit folders, the loader path); skipped otherwise.
    func testKernelSourceCompilesToPTXWithNVRTC() throws {
        let saved = environment("SWIFTGPT_CUDA_EMULATOR")
        unsetenv("SWIFTGPT_CUDA_EMULATOR")
        defer { if let saved { setenv("SWIFTGPT_CUDA_EMULATOR", saved, 1) } }
        let nvrtc: NVRTC
        do { nvrtc = try NVRTC.load() } catch {
            throw XCTSkip("no NVRTC found (pip install nvidia-cuda-nvrtc; SWIFTGPT_CUDA_LIB_PATH=<site-packages>/nvidia/cu13/lib): \(error)")
        }
        let ptx = try nvrtc.compile(CUDAKernelSource.source, name: "swiftgpt_kernels.cu",
                                    options: CUDABackend.compileOptions(architecture: "sm_90"))
        XCTAssertTrue(ptx.contains(".target sm_90"), "PTX should target sm_90")
        let kernels = CUDAKernelSource.source.components(separatedBy: "SG_EXPORT(sg_").dropFirst().map { "sg_" + $0.prefix { $0 != ")" } }
        XCTAssertEqual(kernels.count, 33)
        for kernel in kernels { XCTAssertTrue(ptx.contains(".entry \(kernel)("), "PTX lacks \(kernel)") }
    }
}

/// Whole models on both backends from the same weights: training steps and greedy generation.
final class CUDAModelTests: CUDATestCase {
    let gpt2 = GPTConfig(vocabSize: 70, contextLength: 40, layers: 2, heads: 2, width: 32, dropout: 0.1)
    let llama = GPTConfig.llama(vocabSize: 70, contextLength: 40, layers: 2, heads: 4, width: 32, kvHeads: 2)

    func testGPT2TrainingMatchesCPU() throws { try compareTraining(gpt2, dropout: true) }
    func testLlamaTrainingMatchesCPU() throws { try compareTraining(llama, dropout: false) }
    func testGPT2GreedyGenerationMatchesCPU() throws { try compareGeneration(gpt2, format: .float32) }
    func testLlamaGreedyGenerationMatchesCPU() throws { try compareGeneration(llama, format: .float32) }
    func testInt8GreedyGenerationMatchesCPU() throws { try compareGeneration(llama, format: .int8) }

    /// The f16 KV cache is CPU-only for now: asking for it on CUDA is a clear error, not a crash.
    func testHalfPrecisionCacheIsRefusedClearly() throws {
        let model = try GPT(config: gpt2, backend: gpu)
        XCTAssertThrowsError(try InferenceModel(model: model, slots: 1, kvCache: .f16)) {
            XCTAssertTrue("\($0)".contains("f16 KV cache is not available on the cuda backend"), "\($0)")
        }
    }

    /// Three forward/backward/AdamW steps: losses, every gradient after the first backward, and
    /// every parameter after the last update agree.
    func compareTraining(_ config: GPTConfig, dropout: Bool) throws {
        let models = [try GPT(config: config, backend: cpu), try GPT(config: config, backend: gpu)]
        for m in models { m.initialize(seed: 5) }
        let B = 2, T = 33  // two attention tiles, the second partial
        for step in 1...3 {
            let inputs = (0..<(B * T)).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) }
            let targets = (0..<(B * T)).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) }
            let weights = [Float](repeating: 1 / Float(B * T), count: B * T)
            var losses: [Float] = []
            for m in models {
                try m.zeroGradients()
                let loss = try inputs.withUnsafeBufferPointer { i in
                    try targets.withUnsafeBufferPointer { t in
                        try weights.withUnsafeBufferPointer { w in
                            try m.forward(tokens: i, targets: t, weights: w, batchSize: B, sequenceLength: T,
                                          dropoutSeed: dropout ? UInt64(100 + step) : nil)
                        }
                    }
                }
                losses.append(loss)
                try m.backward()
            }
            XCTAssertEqual(losses[1], losses[0], accuracy: 1e-5 * abs(losses[0]), "loss at step \(step)")
            if step == 1 {
                let c = models[0].hostTensors(models[0].gradients!), g = models[1].hostTensors(models[1].gradients!)
                for (ct, gt) in zip(c, g) {
                    assertClose(gt.values, ct.values, atol: 2e-6, rtol: 1e-3, "gradient \(ct.name)")
                }
                let normC = try models[0].gradientNorm(), normG = try models[1].gradientNorm()
                XCTAssertEqual(normG, normC, accuracy: 1e-4 * normC, "gradient norm")
            }
            for m in models { try m.update(learningRate: 1e-2, step: step) }
        }
        let c = models[0].hostTensors(models[0].parameters), g = models[1].hostTensors(models[1].parameters)
        for (ct, gt) in zip(c, g) {
            var (actual, expected) = (gt.values, ct.values)
            if ct.name.hasSuffix("attn.c_attn.bias") {
                // The key bias's true gradient is 0 (softmax ignores a shift shared by a row's scores):
                // both backends hold rounding noise there, which Adam scales to full-size steps.
                let keys = (config.width)..<(config.width + config.kvWidth)
                actual.removeSubrange(keys)
                expected.removeSubrange(keys)
            }
            assertClose(actual, expected, atol: 1e-5, rtol: 1e-4, "parameter \(ct.name) after 3 steps")
        }
    }

    /// Two sequences (different prompt lengths, prefilled in passes of 8 rows) decoded greedily with
    /// the KV cache: the same token ids, and close logits, on both backends.
    func compareGeneration(_ config: GPTConfig, format: WeightFormat) throws {
        var ids: [[Int32]] = []
        var lastLogits: [[Float]] = []
        for backend in [cpu, gpu] as [any Backend] {
            let model = try GPT(config: config, backend: backend)
            model.initialize(seed: 11)
            let engine = try InferenceModel(model: model, slots: 2, capacity: 32, rowsPerPass: 8, weightFormat: format)
            var sequences: [[Int32]] = [[5, 17, 3, 60, 2, 9, 9, 41, 12, 1, 33], [7, 7, 21]]
            var inputs = sequences.enumerated().map { SequenceInput(slot: $0.offset, tokens: $0.element, start: 0) }
            var logits: [Float] = []
            for _ in 0..<6 {
                logits = try engine.forward(inputs)
                let V = config.vocabSize
                for s in 0..<sequences.count {
                    let row = logits[(s * V)..<((s + 1) * V)]
                    let next = Int32(row.indices.max { row[$0] < row[$1] }! - s * V)
                    inputs[s] = SequenceInput(slot: s, tokens: [next], start: sequences[s].count)
                    sequences[s].append(next)
                }
            }
            ids.append(sequences.flatMap { $0 })
            lastLogits.append(logits)
        }
        XCTAssertEqual(ids[1], ids[0], "greedy token ids (\(format))")
        assertClose(lastLogits[1], lastLogits[0], atol: 1e-4, rtol: 1e-3, "logits after the last step (\(format))")
    }
}
