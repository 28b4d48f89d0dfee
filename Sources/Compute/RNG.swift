// Random numbers: a seeded generator for initialisation and a counter-based hash for dropout masks.

/// SplitMix64 finaliser: a strong 64-bit mix, used as a counter-based generator.
@inline(__always)
public func mix64(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// Whether dropout keeps element `index` under `seed`: a pure function, so forward and backward
/// agree without storing a mask, on every machine.
@inline(__always)
public func dropoutKeeps(seed: UInt64, index: UInt64, probability: Float) -> Bool {
    let bits = mix64(seed ^ mix64(index))
    let u = Float(bits >> 40) * (1.0 / 16_777_216.0)  // 24 random bits -> [0, 1)
    return u >= probability
}

/// A seeded, portable random generator (xoshiro256**), same sequence on every platform.
public struct SeededRandom: RandomNumberGenerator, Sendable, Codable, Equatable {
    public var state: [UInt64]

    public init(seed: UInt64) {
        var s = seed
        var st: [UInt64] = []
        for _ in 0..<4 {
            s = s &+ 0x9E37_79B9_7F4A_7C15
            st.append(mix64(s))
        }
        state = st
    }

    public mutating func next() -> UInt64 {
        let result = rotl(state[1] &* 5, 7) &* 9
        let t = state[1] << 17
        state[2] ^= state[0]
        state[3] ^= state[1]
        state[1] ^= state[2]
        state[0] ^= state[3]
        state[2] ^= t
        state[3] = rotl(state[3], 45)
        return result
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1) with 24 bits.
    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1p-53 }

    public mutating func nextUniform() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Standard normal (Box–Muller, one value per call).
    public mutating func nextNormal() -> Float {
        var u1 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        if u1 < 1e-300 { u1 = 1e-300 }
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2))
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#elseif canImport(Darwin)
import Darwin
@inline(__always) func _log(_ x: Double) -> Double { Darwin.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Darwin.cos(x) }
#endif
