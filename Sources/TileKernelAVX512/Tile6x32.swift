// The tile kernel's AVX-512 form: one 6 × 32 tile of C from two adjacent 16-column panels of the
// packed B (the same panels the AVX2 kernel reads one at a time), twelve 16-lane accumulators.
//
// This module alone is compiled for AVX-512 (Package.swift); Compute calls it only on a CPU that
// has AVX-512 enabled (CPUFeatures.avx512). Each element of C is still one fused multiply-add per
// k step in k order in one accumulator, as in the AVX2 kernel, so both give the same bits.
// Its edge-tile copy mirrors `tile6x16`'s on purpose: code shared with Compute would have to live
// here or be compiled here, and anything compiled here may use instructions an AVX2 CPU lacks.

public typealias Float16x = SIMD16<Float>

@inline(__always)
func load16(_ p: UnsafePointer<Float>) -> Float16x { UnsafeRawPointer(p).loadUnaligned(as: Float16x.self) }

@inline(__always)
func store16(_ v: Float16x, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: Float16x.self) }

/// C[0..<validRows, 0..<validColumns] (row stride `ldc`) = (or +=, with `accumulate`) op(A) · B for
/// the 32 columns of panels `panel` and `panel + 16k`. op(A) row r, step p is at
/// `a + r · rowStride + p · kStride`; rows past `validRows` read the last valid row again and are
/// not stored. `bias` (32 floats) starts the accumulators.
@inline(never)
public func tile6x32AVX512(a: UnsafePointer<Float>, rowStride: Int, kStride: Int, validRows: Int, k: Int,
                           panel: UnsafePointer<Float>, bias: UnsafePointer<Float>?, accumulate: Bool,
                           c: UnsafeMutablePointer<Float>, ldc: Int, validColumns: Int) {
    let last = validRows - 1
    let a0 = a, a1 = a + min(1, last) * rowStride, a2 = a + min(2, last) * rowStride
    let a3 = a + min(3, last) * rowStride, a4 = a + min(4, last) * rowStride, a5 = a + min(5, last) * rowStride
    var c00 = Float16x(), c01 = Float16x()
    if let bias {
        c00 = load16(bias)
        c01 = load16(bias + 16)
    }
    var c10 = c00, c11 = c01, c20 = c00, c21 = c01, c30 = c00, c31 = c01, c40 = c00, c41 = c01, c50 = c00, c51 = c01
    var bp = panel
    let second = 16 * k
    var o = 0
    for _ in 0..<k {
        let b0 = load16(bp), b1 = load16(bp + second)
        var x = Float16x(repeating: a0[o])
        c00 = c00.addingProduct(x, b0); c01 = c01.addingProduct(x, b1)
        x = Float16x(repeating: a1[o])
        c10 = c10.addingProduct(x, b0); c11 = c11.addingProduct(x, b1)
        x = Float16x(repeating: a2[o])
        c20 = c20.addingProduct(x, b0); c21 = c21.addingProduct(x, b1)
        x = Float16x(repeating: a3[o])
        c30 = c30.addingProduct(x, b0); c31 = c31.addingProduct(x, b1)
        x = Float16x(repeating: a4[o])
        c40 = c40.addingProduct(x, b0); c41 = c41.addingProduct(x, b1)
        x = Float16x(repeating: a5[o])
        c50 = c50.addingProduct(x, b0); c51 = c51.addingProduct(x, b1)
        o += kStride
        bp += 16
    }
    if validRows == 6 && validColumns == 32 {
        put(c, c00, c01)
        put(c + ldc, c10, c11)
        put(c + 2 * ldc, c20, c21)
        put(c + 3 * ldc, c30, c31)
        put(c + 4 * ldc, c40, c41)
        put(c + 5 * ldc, c50, c51)
        return
    }
    // Edge tile: the whole tile into a local buffer, then only its valid part into C.
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 192) { buffer in
        let t = buffer.baseAddress!
        store16(c00, t); store16(c01, t + 16); store16(c10, t + 32); store16(c11, t + 48)
        store16(c20, t + 64); store16(c21, t + 80); store16(c30, t + 96); store16(c31, t + 112)
        store16(c40, t + 128); store16(c41, t + 144); store16(c50, t + 160); store16(c51, t + 176)
        for r in 0..<validRows {
            let row = c + r * ldc, tr = t + r * 32
            if accumulate {
                for j in 0..<validColumns { row[j] += tr[j] }
            } else {
                for j in 0..<validColumns { row[j] = tr[j] }
            }
        }
    }

    @inline(__always) func put(_ row: UnsafeMutablePointer<Float>, _ lo: Float16x, _ hi: Float16x) {
        if accumulate {
            store16(load16(row) + lo, row)
            store16(load16(row + 16) + hi, row + 16)
        } else {
            store16(lo, row)
            store16(hi, row + 16)
        }
    }
}
