// Small vectorised helpers shared by the CPU kernels: unaligned SIMD8 loads/stores, exp, tanh.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public typealias Float8 = SIMD8<Float>

@inline(__always)
func load8(_ p: UnsafePointer<Float>) -> Float8 {
    UnsafeRawPointer(p).loadUnaligned(as: Float8.self)
}

@inline(__always)
func load8(_ p: UnsafeMutablePointer<Float>) -> Float8 {
    UnsafeRawPointer(p).loadUnaligned(as: Float8.self)
}

@inline(__always)
func store8(_ v: Float8, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Float8.self)
}

/// e^x for 8 lanes: range reduction x = n·ln2 + r, a degree-6 polynomial for e^r, then 2^n from
/// the exponent bits. Relative error below 2e-7 on [-87, 88]; inputs are clamped to that range
/// (so e^-inf gives ~1e-38 rather than 0, which callers that sum probabilities never notice).
@inline(__always)
public func exp8(_ x: Float8) -> Float8 {
    let lo = Float8(repeating: -87.0), hi = Float8(repeating: 88.0)
    let clamped = x.replacing(with: lo, where: x .< lo).replacing(with: hi, where: x .> hi)
    // Adding 1.5·2^23 rounds to the nearest integer n and leaves n in the low mantissa bits, which
    // avoids generic float→int conversions (slow in Swift's SIMD) entirely.
    let magic = Float8(repeating: 12_582_912.0)
    let shifted = clamped * 1.44269504088896341 + magic
    let n = shifted - magic
    let r = clamped - n * 0.693359375 + n * 2.12194440e-4
    var p = Float8(repeating: 1.9875691500e-4)
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    p = p * (r * r) + r + 1
    let integer = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
    let bits = (integer &+ 127) &<< 23
    return p * unsafeBitCast(bits, to: Float8.self)
}

/// Scalar e^x with the same polynomial as `exp8` (so vector bodies and scalar tails agree).
@inline(__always)
public func expScalar(_ x: Float) -> Float {
    exp8(Float8(repeating: x))[0]
}

/// tanh for 8 lanes via 1 - 2/(e^{2x} + 1).
@inline(__always)
public func tanh8(_ x: Float8) -> Float8 {
    let e = exp8(x + x)
    return 1 - 2 / (e + 1)
}

@inline(__always)
func horizontalSum(_ v: Float8) -> Float { v.sum() }

@inline(__always)
func horizontalMax(_ v: Float8) -> Float {
    // Written out in halves: the generic SIMD `max()` is an out-of-line call in the hot loops.
    // (pointwiseMax is generic and out of line too, hence the selects.)
    let lo = v.lowHalf, hi = v.highHalf
    let a = lo.replacing(with: hi, where: hi .> lo)
    let b = a.lowHalf.replacing(with: a.highHalf, where: a.highHalf .> a.lowHalf)
    return max(b[0], b[1])
}

/// The largest of `count` (> 0) floats and the smallest index holding it (NaN-free input).
public func firstArgmax(_ x: UnsafePointer<Float>, _ count: Int) -> (index: Int, value: Float) {
    var best = Float8(repeating: -.infinity)
    var i = 0
    while i + 8 <= count { let v = load8(x + i); best = best.replacing(with: v, where: v .> best); i += 8 }
    var mx = horizontalMax(best)
    while i < count { mx = max(mx, x[i]); i += 1 }
    for j in 0..<count where x[j] == mx { return (j, mx) }
    return (0, x[0])
}

/// log Σ e^x over `count` (> 0) floats: the maximum first, then e^(x - max) eight lanes at a time
/// in two single-precision accumulators, whose totals go into a double every 128 elements.
public func logSumExp(_ x: UnsafePointer<Float>, _ count: Int) -> Float {
    let mx = firstArgmax(x, count).value
    guard mx > -.infinity else { return mx }
    let m8 = Float8(repeating: mx)
    var sum: Double = 0
    var i = 0
    while i + 128 <= count {
        var a = Float8(), b = Float8()
        for k in stride(from: i, to: i + 128, by: 16) {
            a += exp8(load8(x + k) - m8)
            b += exp8(load8(x + k + 8) - m8)
        }
        sum += Double((a + b).sum())
        i += 128
    }
    while i + 8 <= count { sum += Double(exp8(load8(x + i) - m8).sum()); i += 8 }
    while i < count { sum += Double(expScalar(x[i] - mx)); i += 1 }
    return mx + Float(log(sum))
}
