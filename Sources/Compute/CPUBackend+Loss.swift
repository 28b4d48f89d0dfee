// Fused softmax + cross-entropy with per-token loss weights. Legend: N rows (B*T), V vocabulary,
// Vp padded vocabulary (row stride of the logits).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension CPUBackend {
    public func crossEntropyForward(losses: FloatBuffer, logits: FloatBuffer, targets: TokenBuffer,
                                    weights: FloatBuffer?, N: Int, V: Int, Vp: Int) {
        let losses = losses.pointer, logits = logits.pointer, targets = targets.pointer  // (N) (N,Vp) (N)
        let weights = weights?.pointer                                                  // (N)
        Parallel.forEachRange(N, chunks: Parallel.chunkCount(N, minItemsPerChunk: 4), (losses, logits, targets, weights, V, Vp)) { c, rows in
            let (losses, logits, targets, weights, V, Vp) = c
            for n in rows {
                let row = logits + n * Vp
                let target = Int(targets[n])
                var mx8 = Float8(repeating: -.greatestFiniteMagnitude)
                var j = 0
                while j + 8 <= V { let v = load8(row + j); mx8 = mx8.replacing(with: v, where: v .> mx8); j += 8 }
                var mx = horizontalMax(mx8)
                while j < V { mx = max(mx, row[j]); j += 1 }
                var s8 = Float8()
                j = 0
                while j + 8 <= V { s8 += exp8(load8(row + j) - mx); j += 8 }
                var sum = s8.sum()
                while j < V { sum += expScalar(row[j] - mx); j += 1 }
                let lse = mx + logf(sum)
                losses[n] = lse - row[target]
                guard let weights else { continue }
                let w = weights[n]
                j = 0
                while j + 8 <= V { store8(w * exp8(load8(row + j) - lse), row + j); j += 8 }
                while j < V { row[j] = w * expScalar(row[j] - lse); j += 1 }
                for z in V..<Vp { row[z] = 0 }
                row[target] -= w
            }
        }
    }
}
