// Fully connected layers through BLAS. Legend: N rows (B*T), C input channels, OC output channels.
// Weights are (OC, C) row-major, as in torch.nn.Linear.
//
// Rows are split into chunks that each call single-threaded BLAS; a row of a GEMM result does not
// depend on how the rows were split, so results are identical on any core count.

extension CPUBackend {
    /// Row chunks for a GEMM with `rows` output rows: one per core, with at least 16 rows each.
    @inline(__always)
    func gemmChunks(_ rows: Int) -> Int { max(1, min(Parallel.threadCount, rows / 16)) }

    public func matmulForward(out: FloatBuffer, input: FloatBuffer, weight: FloatBuffer, bias: FloatBuffer?,
                              N: Int, C: Int, OC: Int) {
        let out = out.pointer, inp = input.pointer, w = weight.pointer  // (N,OC) (N,C) (OC,C)
        let b = bias?.pointer                                           // (OC)
        Parallel.forEachRange(N, chunks: gemmChunks(N)) { rows in
            let o = out + rows.lowerBound * OC
            if let b {
                for r in 0..<rows.count { (o + r * OC).update(from: b, count: OC) }
            }
            sgemm(transA: false, transB: true, m: rows.count, n: OC, k: C, alpha: 1,
                  a: inp + rows.lowerBound * C, lda: C, b: w, ldb: C,
                  beta: b == nil ? 0 : 1, c: o, ldc: OC)
        }
    }

    public func matmulBackward(dinput: FloatBuffer?, dweight: FloatBuffer, dbias: FloatBuffer?, dout: FloatBuffer,
                               input: FloatBuffer, weight: FloatBuffer, N: Int, C: Int, OC: Int) {
        let dw = dweight.pointer, dout = dout.pointer, inp = input.pointer, w = weight.pointer
        if let dinput {
            let di = dinput.pointer  // (N,C) += (N,OC)·(OC,C)
            Parallel.forEachRange(N, chunks: gemmChunks(N)) { rows in
                sgemm(transA: false, transB: false, m: rows.count, n: C, k: OC, alpha: 1,
                      a: dout + rows.lowerBound * OC, lda: OC, b: w, ldb: C,
                      beta: 1, c: di + rows.lowerBound * C, ldc: C)
            }
        }
        let db = dbias?.pointer
        // dweight (OC,C) += doutᵀ (OC,N) · inp (N,C), split over output channels.
        Parallel.forEachRange(OC, chunks: gemmChunks(OC)) { ocs in
            sgemm(transA: true, transB: false, m: ocs.count, n: C, k: N, alpha: 1,
                  a: dout + ocs.lowerBound, lda: OC, b: inp, ldb: C,
                  beta: 1, c: dw + ocs.lowerBound * C, ldc: C)
            if let db {
                for n in 0..<N {
                    let d = dout + n * OC
                    var o = ocs.lowerBound
                    while o + 8 <= ocs.upperBound { store8(load8(db + o) + load8(d + o), db + o); o += 8 }
                    while o < ocs.upperBound { db[o] += d[o]; o += 1 }
                }
            }
        }
    }
}
