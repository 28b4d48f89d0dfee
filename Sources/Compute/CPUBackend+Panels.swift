import CSupport

/// Output channels per panel of the packed decode layout.
let panelWidth = 24
/// Columns (of C) one panel pass covers before moving to the next group of inputs.
let panelColumnBlock = 256

/// Panels of a matrix with `rows` output channels.
@inline(__always)
func decodePanelCount(_ rows: Int) -> Int { (rows + panelWidth - 1) / panelWidth }

/// The packed layout for decoding several sequences at once. A (OC, C) weight matrix is stored as
/// ⌈OC/24⌉ panels; panel p holds output channels 24p..<24p+24 column by column (k-major: the 24
/// weights of column k are contiguous, the last panel zero-padded). A decode step with N inputs
/// then reads each panel front to back once per group of four inputs while it is in L1/L2, and each
/// column of weights is three vectors that multiply one broadcast input value: a 4 inputs × 24
/// channels tile of twelve accumulators, with no horizontal sums. In the row layout the same tile
/// is three rows × four inputs and every accumulator needs a horizontal sum at the end, and the
/// three rows are three DRAM streams instead of one.
///
/// Measured (C prototype, 2 threads, 8 inputs × (3072×768), weights from memory): row layout with
/// the prefetch spread 624–700 µs, 24-channel panels 489–564 µs; 16-channel panels 544–608 µs.
/// With one input both layouts stream at the same rate, so N = 1 keeps the row kernel.
extension CPUBackend {
    public var supportsPanelWeights: Bool { true }

    public func panelFloats(rows: Int, C: Int) -> Int { decodePanelCount(rows) * panelWidth * C }

    public func packPanels(weight: FloatBuffer, into panels: FloatBuffer, rows OC: Int, C: Int) {
        let count = decodePanelCount(OC)
        Parallel.forEachRange(count, chunks: min(count, 64), (weight.pointer, panels.pointer, OC, C)) { ctx, range in
            let (w, out, OC, C) = ctx
            for p in range {
                let panel = out + p * C * panelWidth
                for j in 0..<panelWidth {
                    let o = p * panelWidth + j
                    if o < OC {
                        let row = w + o * C
                        for k in 0..<C { panel[k * panelWidth + j] = row[k] }
                    } else {
                        for k in 0..<C { panel[k * panelWidth + j] = 0 }
                    }
                }
            }
        }
    }

    public func matmulPanelForward(out: FloatBuffer, input: FloatBuffer, weight: FloatBuffer, panels: FloatBuffer,
                                   bias: FloatBuffer?, N: Int, C: Int, OC: Int) {
        guard N >= 2 && N <= smallMatmulMaxRows else {
            return matmulForward(out: out, input: input, weight: weight, bias: bias, N: N, C: C, OC: OC)
        }
        panelMatmul(out: out.pointer, input: input.pointer, panels: panels.pointer, bias: bias?.pointer, N: N, C: C, OC: OC)
    }

    /// out (N, OC) = input (N, C) · Wᵀ + bias with W in panels, for 2...8 inputs. The panels are
    /// split over the cores; within a panel the columns go in blocks of 256 (24 KB of weights, which
    /// stay in L1/L2 while every group of four inputs uses them), and each group prefetches its
    /// share of the next block, so the DRAM requests are spread over the whole block.
    func panelMatmul(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, panels: UnsafePointer<Float>,
                     bias: UnsafePointer<Float>?, N: Int, C: Int, OC: Int) {
        let count = decodePanelCount(OC)
        let chunks = max(1, min(64, count / 2))
        Parallel.forEachRange(count, chunks: chunks, (out, input, panels, bias, N, C, OC)) { ctx, range in
            let (out, input, panels, bias, N, C, OC) = ctx
            let groups = (N + 3) / 4
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 4 * panelWidth) { buffer in
                let tile = buffer.baseAddress!
                for p in range {
                    let column = p * panelWidth, width = min(panelWidth, OC - column)
                    for n in 0..<N {
                        let o = out + n * OC + column
                        if let bias { o.update(from: bias + column, count: width) } else { o.update(repeating: 0, count: width) }
                    }
                    let panel = panels + p * C * panelWidth
                    var k0 = 0
                    while k0 < C {
                        let kc = min(panelColumnBlock, C - k0)
                        let w = panel + k0 * panelWidth
                        var n = 0
                        while n < N {
                            let x0 = input + n * C + k0
                            let x1 = input + min(n + 1, N - 1) * C + k0, x2 = input + min(n + 2, N - 1) * C + k0
                            let x3 = input + min(n + 3, N - 1) * C + k0
                            // The next block of this panel (or the start of the next panel), this
                            // group's share of it.
                            let ahead = w + kc * panelWidth + (n / 4) * (kc * panelWidth / groups)
                            panelTile4Inputs(w, count: kc, x0, x1, x2, x3, prefetch: ahead, groups: groups, into: tile)
                            for i in 0..<min(4, N - n) {
                                let o = out + (n + i) * OC + column, t = tile + i * panelWidth
                                if width == panelWidth {
                                    store8(load8(o) + load8(t), o)
                                    store8(load8(o + 8) + load8(t + 8), o + 8)
                                    store8(load8(o + 16) + load8(t + 16), o + 16)
                                } else {
                                    for j in 0..<width { o[j] += t[j] }
                                }
                            }
                            n += 4
                        }
                        k0 += kc
                    }
                }
            }
        }
    }
}

/// Four inputs × one panel's 24 channels over `K` columns: tile[i * 24 + j] = Σₖ w[k * 24 + j] · xᵢ[k].
/// Twelve accumulators (three weight vectors per column times four broadcast input values) and the
/// three weight vectors fill the sixteen AVX registers. Every four columns (96 weights, six cache
/// lines) the call prefetches 6 / groups lines of the block after this one into L2.
@inline(__always)
func panelTile4Inputs(_ w: UnsafePointer<Float>, count K: Int, _ x0: UnsafePointer<Float>, _ x1: UnsafePointer<Float>,
                      _ x2: UnsafePointer<Float>, _ x3: UnsafePointer<Float>, prefetch: UnsafePointer<Float>,
                      groups: Int, into tile: UnsafeMutablePointer<Float>) {
    var a0 = Float8(), a1 = Float8(), a2 = Float8(), a3 = Float8()
    var b0 = Float8(), b1 = Float8(), b2 = Float8(), b3 = Float8()
    var c0 = Float8(), c1 = Float8(), c2 = Float8(), c3 = Float8()
    @inline(__always) func step(_ k: Int) {
        let wk = w + k * panelWidth
        let wa = load8(wk), wb = load8(wk + 8), wc = load8(wk + 16)
        var y = Float8(repeating: x0[k])
        a0 = a0.addingProduct(wa, y); b0 = b0.addingProduct(wb, y); c0 = c0.addingProduct(wc, y)
        y = Float8(repeating: x1[k])
        a1 = a1.addingProduct(wa, y); b1 = b1.addingProduct(wb, y); c1 = c1.addingProduct(wc, y)
        y = Float8(repeating: x2[k])
        a2 = a2.addingProduct(wa, y); b2 = b2.addingProduct(wb, y); c2 = c2.addingProduct(wc, y)
        y = Float8(repeating: x3[k])
        a3 = a3.addingProduct(wa, y); b3 = b3.addingProduct(wb, y); c3 = c3.addingProduct(wc, y)
    }
    var k = 0
    var ahead = prefetch
    let lines = 6 / groups
    while k + 4 <= K {
        for line in 0..<lines { sgpt_prefetch_l2(ahead + 16 * line) }
        ahead += 16 * lines
        step(k); step(k + 1); step(k + 2); step(k + 3)
        k += 4
    }
    while k < K { step(k); k += 1 }
    store8(a0, tile); store8(b0, tile + 8); store8(c0, tile + 16)
    store8(a1, tile + 24); store8(b1, tile + 32); store8(c1, tile + 40)
    store8(a2, tile + 48); store8(b2, tile + 56); store8(c2, tile + 64)
    store8(a3, tile + 72); store8(b3, tile + 80); store8(c3, tile + 88)
}
