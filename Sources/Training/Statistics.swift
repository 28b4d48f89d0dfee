// How far an accuracy measured on n held-out examples can be trusted: the Wilson score interval
// (a 95% range that stays inside [0, 1] and behaves near 0% and 100%, unlike ± 1.96 standard
// errors) and the exact one-sided binomial test against chance. Small held-out sets move by a few
// points between evaluations; these say when a gain is more than that.

import Foundation
#if canImport(Glibc)
import Glibc
private func logGamma(_ x: Double) -> Double { Glibc.lgamma(x) }
#elseif canImport(Darwin)
import Darwin
private func logGamma(_ x: Double) -> Double { Darwin.lgamma(x) }
#endif

public enum BinomialStatistics {
    /// z of a two-sided 95% interval (the 0.975 quantile of the standard normal).
    public static let z95 = 1.959963984540054

    /// Wilson score interval for `successes` out of `total` (E. B. Wilson, 1927); `0...1` when total is 0.
    public static func wilsonInterval(successes: Int, total: Int, z: Double = z95) -> ClosedRange<Double> {
        precondition(successes >= 0 && successes <= total, "successes must lie in 0...total")
        guard total > 0 else { return 0...1 }
        let n = Double(total), p = Double(successes) / n, z2 = z * z
        let centre = (p + z2 / (2 * n)) / (1 + z2 / n)
        let half = z / (1 + z2 / n) * (p * (1 - p) / n + z2 / (4 * n * n)).squareRoot()
        return max(0, centre - half)...min(1, centre + half)
    }

    /// P(X ≥ successes) for X ~ Binomial(total, chance): the one-sided p-value of "better than chance".
    /// Summed in log space, so it holds for large totals.
    public static func pValueAbove(successes: Int, total: Int, chance: Double = 0.5) -> Double {
        precondition(successes >= 0 && successes <= total, "successes must lie in 0...total")
        precondition(chance > 0 && chance < 1, "chance must lie strictly between 0 and 1")
        if successes == 0 { return 1 }
        let n = Double(total), logP = Foundation.log(chance), logQ = Foundation.log1p(-chance)
        let lgn = logGamma(n + 1)
        let terms = (successes...total).map { i -> Double in
            let k = Double(i)
            return lgn - logGamma(k + 1) - logGamma(n - k + 1) + k * logP + (n - k) * logQ
        }
        let top = terms.max()!
        let sum = terms.reduce(0) { $0 + Foundation.exp($1 - top) }
        return min(1, Foundation.exp(top) * sum)
    }

    /// "95% interval 50.7–55.1%" for a proportion.
    public static func describeInterval(successes: Int, total: Int) -> String {
        let r = wilsonInterval(successes: successes, total: total)
        return "95% interval " + String(format: "%.1f–%.1f%%", 100 * r.lowerBound, 100 * r.upperBound)
    }

    /// A p-value to two significant digits, or "< 0.0001".
    public static func formatP(_ p: Double) -> String {
        p < 1e-4 ? "< 0.0001" : String(format: "%.2g", p)
    }
}
