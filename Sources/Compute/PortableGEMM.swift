// The matrix product SwiftGPT uses when the machine has no system BLAS (a fresh Debian or Ubuntu
// without libopenblas), so that training still runs at a useful speed rather than at the ~1 GFLOP/s
// of a textbook triple loop.
//
// Structure (the classic Goto/BLIS layering): C is computed in column blocks of `nc`, the shared
// dimension in blocks of `kc`, rows in blocks of `mc`. Each (kc × nc) block of op(B) is copied once
// into panels of 16 columns and each (mc × kc) block of op(A) into panels of 6 rows, so the inner
// kernel always reads both operands contiguously whatever the transposes were. The kernel
// (`tile6x16` in TileGEMM.swift, shared with the training products) keeps a 6 × 16 tile of C in
// twelve 8-lane registers and, per step of the shared dimension, does two loads of B, six
// broadcasts of A and twelve fused multiply-adds. One B panel (kc × 16, 16 KB)
// stays in L1 while the A panels of a row block (mc × kc, 96 KB) stream from L2.
//
// Single-threaded, like a BLAS call from one of SwiftGPT's workers. Edge tiles are computed in
// full on zero-padded panels and only their valid part is written back.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Rows of C per register tile.
let portableGemmMR = 6
/// Columns of C per register tile (two 8-lane vectors).
let portableGemmNR = 16
/// Block of the shared dimension: one packed B panel (kc × 16 floats) fits in L1.
let portableGemmKC = 256
/// Rows per block: the packed A block (mc × kc floats, 96 KB) fits in L2.
let portableGemmMC = 96
/// Columns per block: the packed B block (kc × nc floats, 2 MB) is read from L3.
let portableGemmNC = 2048

/// Row-major C[m,n] = alpha · op(A) · op(B) + beta · C, op(X) = X or Xᵀ, on one thread.
public func portableSgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if m <= 0 || n <= 0 { return }
    if k <= 0 || alpha == 0 {
        for i in 0..<m {
            let row = c + i * ldc
            if beta == 0 { row.update(repeating: 0, count: n) } else if beta != 1 { for j in 0..<n { row[j] *= beta } }
        }
        return
    }
    // The kernel (TileGEMM.swift's 6 × 16 tile) only overwrites or adds: a general beta scales C
    // first, and alpha is applied while A is packed.
    var beta = beta
    if beta != 0 && beta != 1 {
        for i in 0..<m {
            let row = c + i * ldc
            for j in 0..<n { row[j] *= beta }
        }
        beta = 1
    }
    let MR = portableGemmMR, NR = portableGemmNR
    let kcMax = min(portableGemmKC, k)
    let ncMax = min(portableGemmNC, (n + NR - 1) / NR * NR)
    let mcMax = min(portableGemmMC, (m + MR - 1) / MR * MR)
    let packedB = alignedFloats(kcMax * ncMax), packedA = alignedFloats(mcMax * kcMax)
    defer { free(packedB); free(packedA) }

    var jc = 0
    while jc < n {
        let nc = min(portableGemmNC, n - jc)
        var pc = 0
        while pc < k {
            let kc = min(portableGemmKC, k - pc)
            // The first block of the shared dimension applies beta; the later ones accumulate.
            let blockBeta: Float = pc == 0 ? beta : 1
            packPanelsOfB(transB: transB, b: b, ldb: ldb, row0: pc, col0: jc, kc: kc, nc: nc, into: packedB)
            var ic = 0
            while ic < m {
                let mc = min(portableGemmMC, m - ic)
                packPanelsOfA(transA: transA, a: a, lda: lda, row0: ic, col0: pc, mc: mc, kc: kc, alpha: alpha,
                              into: packedA)
                var jr = 0
                while jr < nc {
                    let bPanel = UnsafePointer(packedB + jr * kc)
                    var ir = 0
                    while ir < mc {
                        tile6x16(a: UnsafePointer(packedA + ir * kc), rowStride: 1, kStride: MR, validRows: min(MR, mc - ir),
                                 k: kc, panel: bPanel, output: blockBeta == 0 ? .overwrite : .accumulate, column: 0,
                                 c: c + (ic + ir) * ldc + jc + jr, ldc: ldc, validColumns: min(NR, nc - jr))
                        ir += MR
                    }
                    jr += NR
                }
                ic += mc
            }
            pc += kc
        }
        jc += nc
    }
}

/// 64-byte aligned scratch (freed with `free`).
private func alignedFloats(_ count: Int) -> UnsafeMutablePointer<Float> {
    var raw: UnsafeMutableRawPointer?
    guard posix_memalign(&raw, 64, max(count, 1) * MemoryLayout<Float>.stride) == 0, let raw else {
        fatalError("out of memory: the portable matrix kernel could not allocate \(count * 4) bytes of scratch")
    }
    return raw.bindMemory(to: Float.self, capacity: max(count, 1))
}

/// Copies op(B)[row0 ..< row0+kc, col0 ..< col0+nc] into panels of 16 columns: panel j holds
/// columns 16j ..< 16j+16 as kc consecutive groups of 16 floats (zeros past the last column).
@inline(__always)
private func packPanelsOfB(transB: Bool, b: UnsafePointer<Float>, ldb: Int, row0: Int, col0: Int, kc: Int, nc: Int,
                           into dst: UnsafeMutablePointer<Float>) {
    let NR = portableGemmNR
    var j0 = 0
    while j0 < nc {
        let width = min(NR, nc - j0)
        let panel = dst + j0 * kc
        if !transB {
            for p in 0..<kc {
                let src = b + (row0 + p) * ldb + col0 + j0, out = panel + p * NR
                if width == NR {
                    store8(load8(src), out)
                    store8(load8(src + 8), out + 8)
                } else {
                    for j in 0..<width { out[j] = src[j] }
                    for j in width..<NR { out[j] = 0 }
                }
            }
        } else {
            for j in 0..<NR {
                if j < width {
                    let src = b + (col0 + j0 + j) * ldb + row0
                    for p in 0..<kc { panel[p * NR + j] = src[p] }
                } else {
                    for p in 0..<kc { panel[p * NR + j] = 0 }
                }
            }
        }
        j0 += NR
    }
}

/// Copies alpha · op(A)[row0 ..< row0+mc, col0 ..< col0+kc] into panels of 6 rows: panel i holds rows
/// 6i ..< 6i+6 as kc consecutive groups of 6 floats (zeros past the last row).
@inline(__always)
private func packPanelsOfA(transA: Bool, a: UnsafePointer<Float>, lda: Int, row0: Int, col0: Int, mc: Int, kc: Int, alpha: Float,
                           into dst: UnsafeMutablePointer<Float>) {
    let MR = portableGemmMR
    var i0 = 0
    while i0 < mc {
        let height = min(MR, mc - i0)
        let panel = dst + i0 * kc
        if !transA {
            for i in 0..<MR {
                if i < height {
                    let src = a + (row0 + i0 + i) * lda + col0
                    for p in 0..<kc { panel[p * MR + i] = alpha * src[p] }
                } else {
                    for p in 0..<kc { panel[p * MR + i] = 0 }
                }
            }
        } else {
            for p in 0..<kc {
                let src = a + (col0 + p) * lda + row0 + i0, out = panel + p * MR
                for i in 0..<height { out[i] = alpha * src[i] }
                for i in height..<MR { out[i] = 0 }
            }
        }
        i0 += MR
    }
}
