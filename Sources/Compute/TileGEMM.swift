// SwiftGPT's own matrix product for the small, short products of training a small model
// (K ≤ 1024, weights up to 1M floats: a width-128 layer multiplies 768 × 128 by 128 × 384).
//
// Why not OpenBLAS for these: each BLAS call packs both operands again, and on these shapes the
// library's kernel ran at ~85 GFLOP/s of a core's ~105 on the Zen 2 machine, where a C prototype
// of the kernel below reached ~102 with B packed once. Here op(B) is packed once per product
// (before the row chunks split the work, so the chunks share it) into panels of 16 columns, and
// op(A) is read in place: the kernel broadcasts one element of each of six rows per step. The
// weight gradient's A, doutᵀ, is packed into row tiles instead (`packRowTiles`): read in place it
// steps a whole row of dout per k step. The 6 × 16 register tile keeps twelve independent
// accumulators, enough to cover the fused multiply-add latency on both pipes.
//
// Every element of C is one sum over k in order, in one accumulator, so results do not depend on how
// rows or panels are split over cores.
//
// On CPUs with AVX-512 the kernel takes two panels at a time as one 6 × 32 tile of 16-lane vectors
// (module TileKernelAVX512, the only code compiled for AVX-512): on the Zen 5 machine, whose
// vector units are 512 bits wide, a char-baby training step went from 41.8 to 26.5 ms. Each element
// is the same chain of fused multiply-adds, so the two kernels give the same bits.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import TileKernelAVX512

/// Columns of C per tile (two 8-lane vectors); op(B) is packed in panels this wide.
let tilePanelWidth = 16
/// Rows of C per tile.
let tileRows = 6

/// Whether the tile kernel takes a product with shared dimension `k` and `n` output columns
/// (B is k × n): short shared dimensions and a packed B of at most 1M floats (4 MB), where it was
/// measured faster than OpenBLAS; larger products go to BLAS.
@inline(__always)
func tileGEMMApplies(k: Int, n: Int) -> Bool {
    tileGEMMEnabled && k >= 8 && k <= 1024 && n >= 16 && k * n <= (1 << 20)
}

/// Whether the tile kernel takes two panels at a time with AVX-512 (`tile6x32AVX512`): on CPUs
/// with AVX-512 enabled, unless SWIFTGPT_AVX512=0. Same results bit for bit as the AVX2 kernel.
nonisolated(unsafe) var tileAVX512Enabled: Bool = {
    if let value = getenv("SWIFTGPT_AVX512"), String(cString: value) == "0" { return false }
    #if arch(x86_64)
    return CPUFeatures.current.avx512
    #else
    return false
    #endif
}()

/// Whether training products use the tile kernel. Off in debug builds, where unoptimised SIMD code
/// runs ~50× slower than OpenBLAS and would stretch the test suite from under a minute to minutes;
/// the tests that check the kernel through the training entry points switch it on.
/// SWIFTGPT_TILE_GEMM=0 hands every product to BLAS (to compare the two), =1 forces the kernel on.
nonisolated(unsafe) var tileGEMMEnabled: Bool = {
    if let value = getenv("SWIFTGPT_TILE_GEMM") { return String(cString: value) != "0" }
    #if DEBUG
    return false
    #else
    return true
    #endif
}()

/// Floats that `packColumnPanels` writes for a k × n op(B): a multiple of 16, so packed operands
/// laid out one after another in 64-byte aligned scratch all stay aligned.
@inline(__always)
func packedPanelFloats(k: Int, n: Int) -> Int { panelCount(n) * tilePanelWidth * k }

/// Panels of `tilePanelWidth` columns that cover n columns.
@inline(__always)
func panelCount(_ n: Int) -> Int { (n + tilePanelWidth - 1) / tilePanelWidth }

/// `packColumnPanels` of the whole of op(B), its panels spread over the cores: the packing before a
/// product whose row chunks all share the packed B.
func packColumnPanelsInParallel(_ b: UnsafePointer<Float>, ld: Int, transposed: Bool, k: Int, n: Int,
                                into dst: UnsafeMutablePointer<Float>) {
    let panels = panelCount(n)
    Parallel.forEachRange(panels, chunks: min(panels, 4), (b, dst, ld, transposed, k, n)) { ctx, r in
        let (b, dst, ld, transposed, k, n) = ctx
        packColumnPanels(b, ld: ld, transposed: transposed, k: k, n: n, panels: r, into: dst)
    }
}

/// `count` rounded up to a whole number of 64-byte lines of floats.
@inline(__always)
func cacheLineFloats(_ count: Int) -> Int { (count + 15) / 16 * 16 }

/// Copies panels `panels` of op(B) (k × n) into `dst`: panel j holds columns 16j ..< 16j+16 as k
/// consecutive groups of 16 floats, zeros past column n. Not transposed: B is (k, n) with row stride
/// `ld`. Transposed: op(B) = Wᵀ with W (n, k) of row stride `ld` (a torch.nn.Linear weight).
func packColumnPanels(_ b: UnsafePointer<Float>, ld: Int, transposed: Bool, k: Int, n: Int, panels: Range<Int>,
                      into dst: UnsafeMutablePointer<Float>) {
    let W = tilePanelWidth
    for panel in panels {
        let j0 = panel * W, width = min(W, n - j0)
        let out = dst + j0 * k
        if !transposed {
            if width == W {
                for p in 0..<k {
                    let src = b + p * ld + j0, o = out + p * W
                    store8(load8(src), o)
                    store8(load8(src + 8), o + 8)
                }
            } else {
                for p in 0..<k {
                    let src = b + p * ld + j0, o = out + p * W
                    for j in 0..<width { o[j] = src[j] }
                    for j in width..<W { o[j] = 0 }
                }
            }
        } else {
            // Sixteen rows of W become the columns of the panel: gather one element of each row
            // per step (the panel, 16 × k floats, stays in L1 while it fills).
            for j in 0..<W {
                if j < width {
                    let src = b + (j0 + j) * ld
                    for p in 0..<k { out[p * W + j] = src[p] }
                } else {
                    for p in 0..<k { out[p * W + j] = 0 }
                }
            }
        }
    }
}

/// Packs op(A) = Xᵀ for X (k, m) with row stride `ld` (k rows of m floats: dout in the weight
/// gradient) into row tiles of six: tile t starts at t · `packedRowTileStride(k)` and holds rows
/// 6t ..< 6t+6 of op(A) as k consecutive groups of 6 floats, zeros past row m. Reading X in place
/// instead would step one row of X per k step (k cache lines per tile, which for power-of-two
/// widths fall into a few L1 sets and evict each other); here X is read once, row by row.
func packRowTiles(transposedFrom x: UnsafePointer<Float>, ld: Int, k: Int, m: Int, into dst: UnsafeMutablePointer<Float>) {
    let whole = m / tileRows, stride = packedRowTileStride(k)
    // Tiles whose eight floats from r0 stay inside the row take one vector copy each: six of its
    // floats, and two that land where the next step of k (or the tile's padding) goes.
    let vectorTiles = m >= 8 ? min(whole, (m - 8) / tileRows + 1) : 0
    for p in 0..<k {
        let src = x + p * ld, out = dst + p * tileRows
        for t in 0..<vectorTiles { store8(load8(src + t * tileRows), out + t * stride) }
        for t in vectorTiles..<((m + tileRows - 1) / tileRows) {
            let o = out + t * stride, r0 = t * tileRows
            for r in 0..<tileRows { o[r] = r0 + r < m ? src[r0 + r] : 0 }
        }
    }
}

/// Distance in floats between the row tiles `packRowTiles` writes: 6k, plus room for the last
/// step's two extra floats.
@inline(__always)
func packedRowTileStride(_ k: Int) -> Int { tileRows * k + 2 }

/// Floats that `packRowTiles` writes for m rows of k.
@inline(__always)
func packedRowTileFloats(k: Int, m: Int) -> Int { cacheLineFloats((m + tileRows - 1) / tileRows * packedRowTileStride(k)) }

/// How a tile product writes C.
enum TileOutput {
    /// C = A·B
    case overwrite
    /// C += A·B
    case accumulate
    /// C = A·B + bias (one value per column; `bias` padded to whole panels)
    case bias(UnsafePointer<Float>)
}

/// Rows `rows` of C (m × n, row stride `ldc`) = op(A) · op(B) with op(B) packed by
/// `packColumnPanels` (k × n). op(A) element (i, p) is at `a[i * rowStride + p * kStride]`: (1, lda)
/// reads a transposed A in place. With `packedA` (from `packRowTiles`; `rows` then starts at 0, and
/// the strides are 1 and 6), tile t's rows are read from a + t·`packedRowTileStride(k)`.
func tileProduct(a: UnsafePointer<Float>, rowStride: Int, kStride: Int, rows: Range<Int>, k: Int,
                 packedB: UnsafePointer<Float>, n: Int, output: TileOutput, c: UnsafeMutablePointer<Float>, ldc: Int,
                 packedA: Bool = false) {
    // Panels in groups whose packed B fits in L2 beside everything else; within a group, row
    // tiles outer and panels inner: the tile's six rows of A (6 × k floats) stay in L1 while the
    // group's panels stream through from L2 in order. (Panels outer, which keeps one panel in L1
    // and re-reads all rows of A per panel, was ~25% slower on the Zen 2 machine for
    // 192 × 128 · 128 × 384. Groups only matter for packed Bs larger than L2; on char-baby's
    // shapes groups of 64 KB to 512 KB measured alike.)
    let W = tilePanelWidth
    let panelsPerGroup = max(1, tileGroupFloats / (k * W))
    let wide = tileAVX512Enabled
    var accumulate = false
    if case .accumulate = output { accumulate = true }
    var g0 = 0
    while g0 < n {
        let g1 = min(n, g0 + panelsPerGroup * W)
        var i = rows.lowerBound
        while i < rows.upperBound {
            let valid = min(tileRows, rows.upperBound - i)
            var j0 = g0
            let tileA = packedA ? a + (i / tileRows) * packedRowTileStride(k) : a + i * rowStride
            if wide {
                // Two panels at a time while both lie in the group (and in B).
                while j0 + W < g1 {
                    var bias: UnsafePointer<Float>? = nil
                    if case .bias(let b) = output { bias = b + j0 }
                    tile6x32AVX512(a: tileA, rowStride: rowStride, kStride: kStride, validRows: valid, k: k,
                                   panel: packedB + j0 * k, bias: bias, accumulate: accumulate, c: c + i * ldc + j0, ldc: ldc,
                                   validColumns: min(2 * W, n - j0))
                    j0 += 2 * W
                }
            }
            while j0 < g1 {
                tile6x16(a: tileA, rowStride: rowStride, kStride: kStride, validRows: valid, k: k,
                         panel: packedB + j0 * k, output: output, column: j0, c: c + i * ldc + j0, ldc: ldc,
                         validColumns: min(W, n - j0))
                j0 += W
            }
            i += tileRows
        }
        g0 = g1
    }
}

/// Floats of packed B per group of panels (128 KB, a quarter of the Zen 2 L2).
let tileGroupFloats = 32768

/// One 6 × 16 tile of C. Rows past `validRows` read the last valid row of A again (no
/// out-of-bounds reads) and are not stored; columns past `validColumns` are zero in the panel and
/// not stored.
@inline(__always)
func tile6x16(a: UnsafePointer<Float>, rowStride: Int, kStride: Int, validRows: Int, k: Int,
                      panel: UnsafePointer<Float>, output: TileOutput, column: Int, c: UnsafeMutablePointer<Float>,
                      ldc: Int, validColumns: Int) {
    let last = validRows - 1
    let a0 = a, a1 = a + min(1, last) * rowStride, a2 = a + min(2, last) * rowStride
    let a3 = a + min(3, last) * rowStride, a4 = a + min(4, last) * rowStride, a5 = a + min(5, last) * rowStride
    var c00 = Float8(), c01 = Float8()
    if case .bias(let bias) = output {
        c00 = load8(bias + column)
        c01 = load8(bias + column + 8)
    }
    var c10 = c00, c11 = c01, c20 = c00, c21 = c01, c30 = c00, c31 = c01, c40 = c00, c41 = c01, c50 = c00, c51 = c01
    var bp = panel
    var o = 0
    for _ in 0..<k {
        let b0 = load8(bp), b1 = load8(bp + 8)
        var x = Float8(repeating: a0[o])
        c00 = c00.addingProduct(x, b0); c01 = c01.addingProduct(x, b1)
        x = Float8(repeating: a1[o])
        c10 = c10.addingProduct(x, b0); c11 = c11.addingProduct(x, b1)
        x = Float8(repeating: a2[o])
        c20 = c20.addingProduct(x, b0); c21 = c21.addingProduct(x, b1)
        x = Float8(repeating: a3[o])
        c30 = c30.addingProduct(x, b0); c31 = c31.addingProduct(x, b1)
        x = Float8(repeating: a4[o])
        c40 = c40.addingProduct(x, b0); c41 = c41.addingProduct(x, b1)
        x = Float8(repeating: a5[o])
        c50 = c50.addingProduct(x, b0); c51 = c51.addingProduct(x, b1)
        o += kStride
        bp += 16
    }
    var accumulate = false
    if case .accumulate = output { accumulate = true }
    if validRows == tileRows && validColumns == tilePanelWidth {
        put(c, c00, c01)
        put(c + ldc, c10, c11)
        put(c + 2 * ldc, c20, c21)
        put(c + 3 * ldc, c30, c31)
        put(c + 4 * ldc, c40, c41)
        put(c + 5 * ldc, c50, c51)
        return
    }
    // Edge tile: the whole tile into a local buffer, then only its valid part into C.
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 96) { buffer in
        let t = buffer.baseAddress!
        store8(c00, t); store8(c01, t + 8); store8(c10, t + 16); store8(c11, t + 24)
        store8(c20, t + 32); store8(c21, t + 40); store8(c30, t + 48); store8(c31, t + 56)
        store8(c40, t + 64); store8(c41, t + 72); store8(c50, t + 80); store8(c51, t + 88)
        for r in 0..<validRows {
            let row = c + r * ldc, tr = t + r * 16
            if accumulate {
                for j in 0..<validColumns { row[j] += tr[j] }
            } else {
                for j in 0..<validColumns { row[j] = tr[j] }
            }
        }
    }

    @inline(__always) func put(_ row: UnsafeMutablePointer<Float>, _ lo: Float8, _ hi: Float8) {
        if accumulate {
            store8(load8(row) + lo, row)
            store8(load8(row + 8) + hi, row + 8)
        } else {
            store8(lo, row)
            store8(hi, row + 8)
        }
    }
}

