// Fully connected layers through BLAS. Legend: N rows (B*T), C input channels, OC output channels.
// Weights are (OC, C) row-major, as in torch.nn.Linear.
//
// Determinism: a BLAS result can depend on how a product is split (OpenBLAS handles the rows at
// the edge of a tile with other kernels), so every split below depends only on the problem size,
// never on the core count. Chunks are then spread over however many cores there are.

/// How a product with `rows` output rows is cut into row chunks: at most 4 chunks, each a
/// multiple of 16 rows (at least 32), so 1, 2 or 4 cores get equal shares. Every chunk repacks the
/// whole weight matrix, so more chunks would cost more than they balance.
@inline(__always)
func rowChunkSize(_ rows: Int) -> Int {
    let target = (rows + 3) / 4
    return max(32, (target + 15) / 16 * 16)
}

/// How many fixed blocks of rows the weight gradient of an N-row product is split into: the
/// largest power of two up to 8 that leaves every block at least 192 rows (1: no split).
@inline(__always)
func dweightBlockCount(_ rows: Int) -> Int {
    var blocks = 1
    while blocks < 8 && rows / (blocks * 2) >= 192 { blocks *= 2 }
    return blocks
}

extension CPUBackend {
    public func matmulForward(out: FloatBuffer, input: FloatBuffer, weight: FloatBuffer, bias: FloatBuffer?,
                              N: Int, C: Int, OC: Int) {
        let out = out.pointer, inp = input.pointer, w = weight.pointer  // (N,OC) (N,C) (OC,C)
        let b = bias?.pointer                                           // (OC)
        if N <= smallMatmulMaxRows {
            smallMatmul(out: out, input: inp, weight: UnsafePointer(w), scales: nil, bias: b.map { UnsafePointer($0) },
                        N: N, C: C, OC: OC)
            return
        }
        if N <= blockedMatmulMaxRows {
            // Few rows: one row chunk would leave the other cores idle; split the output channels.
            let block = 128
            let chunks = max(1, min(16, (OC + block - 1) / block))
            Parallel.forEach(chunks, (out, inp, w, b, N, C, OC, chunks)) { ctx, chunk in
                let (out, inp, w, b, N, C, OC, chunks) = ctx
                let o0 = OC * chunk / chunks, o1 = OC * (chunk + 1) / chunks
                if let b { for n in 0..<N { (out + n * OC + o0).update(from: b + o0, count: o1 - o0) } }
                sgemm(transA: false, transB: true, m: N, n: o1 - o0, k: C, alpha: 1, a: inp, lda: C, b: w + o0 * C, ldb: C,
                      beta: b == nil ? 0 : 1, c: out + o0, ldc: OC)
            }
            return
        }
        rowChunkedMatmulForward(out: out, activated: nil, input: inp, weight: w, bias: b, N: N, C: C, OC: OC)
    }

    public func matmulGELUForward(preactivation: FloatBuffer, activated: FloatBuffer, input: FloatBuffer, weight: FloatBuffer,
                                  bias: FloatBuffer?, N: Int, C: Int, OC: Int) {
        guard N > blockedMatmulMaxRows else {
            matmulForward(out: preactivation, input: input, weight: weight, bias: bias, N: N, C: C, OC: OC)
            let count = N * OC
            Parallel.forEachRange(count, chunks: Parallel.chunkCount(count, minItemsPerChunk: 1 << 15),
                                  (activated.pointer, preactivation.pointer)) { c, r in
                geluKeepingDerivativeRange(out: c.0, input: c.1, r)
            }
            return
        }
        rowChunkedMatmulForward(out: preactivation.pointer, activated: activated.pointer, input: input.pointer,
                                weight: weight.pointer, bias: bias?.pointer, N: N, C: C, OC: OC)
    }

    /// out = input · weightᵀ + bias in chunks of rows; with `activated`, each chunk's GELU too while
    /// its rows are in cache.
    private func rowChunkedMatmulForward(out: UnsafeMutablePointer<Float>, activated: UnsafeMutablePointer<Float>?,
                                         input inp: UnsafeMutablePointer<Float>, weight w: UnsafeMutablePointer<Float>,
                                         bias b: UnsafeMutablePointer<Float>?, N: Int, C: Int, OC: Int) {
        let rows = rowChunkSize(N)
        if tileGEMMApplies(k: C, n: OC) {
            // Wᵀ packed once for all row chunks, the bias padded to whole panels after it.
            let size = packedPanelFloats(k: C, n: OC), paddedWidth = panelCount(OC) * tilePanelWidth
            let packed = scratchFloats(size + (b == nil ? 0 : paddedWidth))
            packColumnPanelsInParallel(w, ld: C, transposed: true, k: C, n: OC, into: packed)
            var output = TileOutput.overwrite
            if let b {
                let padded = packed + size
                padded.update(from: b, count: OC)
                (padded + OC).update(repeating: 0, count: paddedWidth - OC)
                output = .bias(padded)
            }
            Parallel.forEach((N + rows - 1) / rows, (out, activated, inp, packed, output, N, C, OC, rows)) { ctx, chunk in
                let (out, activated, inp, packed, output, N, C, OC, rows) = ctx
                let r0 = chunk * rows, r1 = min(N, r0 + rows)
                tileProduct(a: inp, rowStride: C, kStride: 1, rows: r0..<r1, k: C, packedB: packed, n: OC,
                            output: output, c: out, ldc: OC)
                if let activated { geluKeepingDerivativeRange(out: activated, input: out, (r0 * OC)..<(r1 * OC)) }
            }
            return
        }
        Parallel.forEach((N + rows - 1) / rows, (out, activated, inp, w, b, N, C, OC, rows)) { ctx, chunk in
            let (out, activated, inp, w, b, N, C, OC, rows) = ctx
            let r0 = chunk * rows, m = min(N, r0 + rows) - r0
            let o = out + r0 * OC
            if let b {
                for r in 0..<m { (o + r * OC).update(from: b, count: OC) }
            }
            sgemm(transA: false, transB: true, m: m, n: OC, k: C, alpha: 1, a: inp + r0 * C, lda: C, b: w, ldb: C,
                  beta: b == nil ? 0 : 1, c: o, ldc: OC)
            if let activated { geluKeepingDerivativeRange(out: activated, input: out, (r0 * OC)..<((r0 + m) * OC)) }
        }
    }

    public func matmulGELUBackward(dpreactivation: FloatBuffer, dactivated: FloatBuffer, dweight: FloatBuffer,
                                   dbias: FloatBuffer?, dout: FloatBuffer, preactivation: FloatBuffer, activated: FloatBuffer,
                                   weight: FloatBuffer, N: Int, C: Int, OC: Int) {
        if rowBlockedMatmulBackward(dinput: dactivated.pointer, gelu: (preactivation.pointer, dpreactivation.pointer),
                                    overwrite: true, dweight: dweight, dbias: dbias, dout: dout, input: activated, weight: weight,
                                    N: N, C: C, OC: OC) {
            return
        }
        zero(dactivated)
        matmulBackward(dinput: dactivated, dweight: dweight, dbias: dbias, dout: dout, input: activated, weight: weight,
                       N: N, C: C, OC: OC)
        let count = N * C
        Parallel.forEachRange(count, chunks: Parallel.chunkCount(count, minItemsPerChunk: 1 << 15),
                              (dpreactivation.pointer, preactivation.pointer, dactivated.pointer)) { c, r in
            geluDerivativeBackwardRange(dinput: c.0, derivative: c.1, dout: c.2, r)
        }
    }

    public func matmulBackwardOverwritingInput(dinput: FloatBuffer, dweight: FloatBuffer, dbias: FloatBuffer?, dout: FloatBuffer,
                                               input: FloatBuffer, weight: FloatBuffer, N: Int, C: Int, OC: Int) {
        if rowBlockedMatmulBackward(dinput: dinput.pointer, gelu: nil, overwrite: true, dweight: dweight, dbias: dbias,
                                    dout: dout, input: input, weight: weight, N: N, C: C, OC: OC) {
            return
        }
        zero(dinput)
        matmulBackward(dinput: dinput, dweight: dweight, dbias: dbias, dout: dout, input: input, weight: weight, N: N, C: C, OC: OC)
    }

    public func matmulBackward(dinput: FloatBuffer?, dweight: FloatBuffer, dbias: FloatBuffer?, dout: FloatBuffer,
                               input: FloatBuffer, weight: FloatBuffer, N: Int, C: Int, OC: Int) {
        let dw = dweight.pointer, inp = input.pointer, w = weight.pointer
        if rowBlockedMatmulBackward(dinput: dinput?.pointer, gelu: nil, overwrite: false, dweight: dweight, dbias: dbias, dout: dout,
                                    input: input, weight: weight, N: N, C: C, OC: OC) {
            return
        }
        let dout = dout.pointer
        if let dinput {
            // dinput (N,C) += dout (N,OC) · weight (OC,C), split over rows.
            let di = dinput.pointer
            let rows = rowChunkSize(N)
            Parallel.forEach((N + rows - 1) / rows, (di, dout, w, N, C, OC, rows)) { ctx, chunk in
                let (di, dout, w, N, C, OC, rows) = ctx
                let r0 = chunk * rows, m = min(N, r0 + rows) - r0
                sgemm(transA: false, transB: false, m: m, n: C, k: OC, alpha: 1, a: dout + r0 * OC, lda: OC, b: w, ldb: C,
                      beta: 1, c: di + r0 * C, ldc: C)
            }
        }
        let rows = rowChunkSize(OC)
        Parallel.forEach((OC + rows - 1) / rows, (dw, dout, inp, N, C, OC, rows)) { ctx, chunk in
            let (dw, dout, inp, N, C, OC, rows) = ctx
            let o0 = chunk * rows, m = min(OC, o0 + rows) - o0
            sgemm(transA: true, transB: false, m: m, n: C, k: N, alpha: 1, a: dout + o0, lda: OC, b: inp, ldb: C,
                  beta: 1, c: dw + o0 * C, ldc: C)
        }
        guard let db = dbias?.pointer else { return }
        // dbias += Σ_n dout[n, :], each slice of channels summed over rows in order.
        let width = 64
        Parallel.forEach((OC + width - 1) / width, (db, dout, N, OC, width)) { ctx, s in
            let (db, dout, N, OC, width) = ctx
            let o0 = s * width, o1 = min(OC, o0 + width)
            for n in 0..<N {
                let d = dout + n * OC
                var o = o0
                while o + 8 <= o1 { store8(load8(db + o) + load8(d + o), db + o); o += 8 }
                while o < o1 { db[o] += d[o]; o += 1 }
            }
        }
    }

    /// The backward of a product with a small weight and many rows (see the comment inside); false,
    /// doing nothing, for other shapes. With `gelu` (preactivation, dpreactivation), the input was
    /// GELU(preactivation) and the preactivation buffer holds GELU'(preactivation) (what this
    /// backend's matmulGELUForward leaves there): each block's dinput rows are written (not added)
    /// into `dinput` as scratch and turned into dpreactivation = GELU' ⊙ dinput, overwritten.
    /// Without it, `overwrite` says whether dinput is overwritten or added to.
    private func rowBlockedMatmulBackward(dinput di: UnsafeMutablePointer<Float>?,
                                          gelu: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)?, overwrite: Bool,
                                          dweight: FloatBuffer, dbias: FloatBuffer?, dout: FloatBuffer, input: FloatBuffer,
                                          weight: FloatBuffer, N: Int, C: Int, OC: Int) -> Bool {
        // dweight (OC,C) += doutᵀ (OC,N) · input (N,C). Both operands run along N, so splitting the
        // output would repack the whole of one of them per chunk. When the weight is small, split N
        // into fixed blocks instead: each block computes its rows of dinput, its own partial dweight
        // and partial dbias while its rows of dout are in cache, and one pass then adds the partials
        // in block order. The block count is a power of two (2, 4 or 8), so 2, 4 or 8 cores get
        // equal shares. Huge weights (the vocabulary head) split their rows instead.
        let blocks = dweightBlockCount(N)
        guard blocks >= 2 && OC * C <= (1 << 22) else { return false }
        let dw = dweight.pointer, dout = dout.pointer, inp = input.pointer, w = weight.pointer
        let hasBias = dbias != nil
        let stride = OC * C + (hasBias ? OC : 0)  // one block's partial dweight, then partial dbias
        // With the tile kernel (TileGEMM.swift), the weight is packed once for every block's dinput
        // rows and each block packs its own input rows for its partial dweight.
        let maxRows = (N + blocks - 1) / blocks
        let tileDinput = di != nil && tileGEMMApplies(k: OC, n: C), tileDweight = tileGEMMApplies(k: maxRows, n: C)
        let weightPack = tileDinput ? packedPanelFloats(k: OC, n: C) : 0
        // Per block: its input rows packed, then its dout rows transposed into row tiles.
        let rowsPack = tileDweight ? packedPanelFloats(k: maxRows, n: C) + packedRowTileFloats(k: maxRows, m: OC) : 0
        let partials = cacheLineFloats(blocks * stride)
        let partial = scratchFloats(partials + weightPack + blocks * rowsPack)
        let packedWeight = partial + partials, packedRows = packedWeight + weightPack
        if tileDinput { packColumnPanelsInParallel(w, ld: C, transposed: false, k: OC, n: C, into: packedWeight) }
        let plan = (tileDinput, tileDweight, rowsPack)
        Parallel.forEach(blocks, (partial, packedWeight, packedRows, plan, di, gelu, overwrite, dout, inp, w, N, C, OC, blocks,
                                  stride, hasBias)) { ctx, k in
            let (partial, packedWeight, packedRows, plan, di, gelu, overwrite, dout, inp, w, N, C, OC, blocks, stride, hasBias) = ctx
            let (tileDinput, tileDweight, rowsPack) = plan
            let n0 = N * k / blocks, n1 = N * (k + 1) / blocks
            if let di {
                // dinput rows n0..<n1 += dout · weight (through GELU: = dout · weight, then GELU')
                if tileDinput {
                    tileProduct(a: dout, rowStride: OC, kStride: 1, rows: n0..<n1, k: OC, packedB: packedWeight, n: C,
                                output: overwrite ? .overwrite : .accumulate, c: di, ldc: C)
                } else {
                    sgemm(transA: false, transB: false, m: n1 - n0, n: C, k: OC, alpha: 1, a: dout + n0 * OC, lda: OC,
                          b: w, ldb: C, beta: overwrite ? 0 : 1, c: di + n0 * C, ldc: C)
                }
                if let (pre, dpre) = gelu {
                    geluDerivativeBackwardRange(dinput: dpre, derivative: pre, dout: di, (n0 * C)..<(n1 * C))
                }
            }
            let pw = partial + k * stride
            if tileDweight {
                // Both operands packed per block: the block's input rows into column panels, its
                // dout rows, transposed, into row tiles.
                let rows = packedRows + k * rowsPack, tiles = rows + packedPanelFloats(k: n1 - n0, n: C)
                packColumnPanels(inp + n0 * C, ld: C, transposed: false, k: n1 - n0, n: C,
                                 panels: 0..<panelCount(C), into: rows)
                packRowTiles(transposedFrom: dout + n0 * OC, ld: OC, k: n1 - n0, m: OC, into: tiles)
                tileProduct(a: tiles, rowStride: 1, kStride: tileRows, rows: 0..<OC, k: n1 - n0, packedB: rows, n: C,
                            output: .overwrite, c: pw, ldc: C, packedA: true)
            } else {
                sgemm(transA: true, transB: false, m: OC, n: C, k: n1 - n0, alpha: 1, a: dout + n0 * OC, lda: OC,
                      b: inp + n0 * C, ldb: C, beta: 0, c: pw, ldc: C)
            }
            if hasBias {
                let pb = pw + OC * C
                pb.initialize(repeating: 0, count: OC)
                for n in n0..<n1 { addInPlace(pb, dout + n * OC, OC) }
            }
        }
        Parallel.forEachRange(stride, chunks: Parallel.chunkCount(stride, minItemsPerChunk: 1 << 14),
                              (partial, dw, dbias?.pointer, OC * C, stride, blocks)) { ctx, r in
            let (partial, dw, db, weights, stride, blocks) = ctx
            // Elements below `weights` belong to dweight, the rest to dbias.
            if r.lowerBound < weights {
                sumPartials(into: dw, partial, stride: stride, blocks: blocks, range: r.lowerBound..<min(r.upperBound, weights))
            }
            if let db, r.upperBound > weights {
                let lo = max(r.lowerBound, weights)
                sumPartials(into: db, partial + weights, stride: stride, blocks: blocks,
                            range: (lo - weights)..<(r.upperBound - weights))
            }
        }
        return true
    }
}

/// a[0..<n] += b[0..<n]
@inline(__always)
func addInPlace(_ a: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) {
    var i = 0
    while i + 8 <= n { store8(load8(a + i) + load8(b + i), a + i); i += 8 }
    while i < n { a[i] += b[i]; i += 1 }
}

/// out[i] += Σ_k partial[k·stride + i] for i in range, the blocks added in order.
@inline(__always)
func sumPartials(into out: UnsafeMutablePointer<Float>, _ partial: UnsafePointer<Float>, stride: Int, blocks: Int,
                 range r: Range<Int>) {
    var i = r.lowerBound
    while i + 8 <= r.upperBound {
        var acc = load8(partial + i)
        for k in 1..<blocks { acc += load8(partial + k * stride + i) }
        store8(load8(out + i) + acc, out + i)
        i += 8
    }
    while i < r.upperBound {
        var acc = partial[i]
        for k in 1..<blocks { acc += partial[k * stride + i] }
        out[i] += acc
        i += 1
    }
}
