// Corpus BLEU and chrF as sacrebleu defines them (BLEU: 13a tokenisation, 4-grams, exponential
// smoothing, brevity penalty; chrF: character 6-grams without whitespace, β = 2, averaged over the
// orders that occur), so scores are comparable with published numbers. One reference per segment.
// Strings are sequences of Unicode scalars (Python's str), and "whitespace" is Python's.

import Foundation

/// Python's `str.isspace()` for one scalar (what `str.split()` splits on).
@inline(__always)
func isPythonSpace(_ s: Unicode.Scalar) -> Bool {
    switch s.value {
    case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
    default: return false
    }
}

/// `s.split()` in Python: runs of whitespace separate words, none are empty.
func pythonWords(_ scalars: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
    var words: [[Unicode.Scalar]] = []
    var current: [Unicode.Scalar] = []
    for s in scalars {
        if isPythonSpace(s) {
            if !current.isEmpty { words.append(current); current.removeAll(keepingCapacity: true) }
        } else {
            current.append(s)
        }
    }
    if !current.isEmpty { words.append(current) }
    return words
}

public struct BLEUScore: Sendable, Codable, Equatable {
    /// Corpus BLEU, 0–100.
    public var score: Double
    /// Modified n-gram precisions for n = 1…4 (0–100, smoothed where a count is zero).
    public var precisions: [Double]
    public var brevityPenalty: Double
    public var hypothesisLength: Int
    public var referenceLength: Int
}

public enum BLEU {
    /// The mteval-v13a tokenisation sacrebleu uses by default: punctuation and symbols become
    /// tokens, '.' and ',' split off unless between digits, '-' split off after a digit.
    public static func tokenize13a(_ line: String) -> [String] {
        var text = line
        text = text.replacingAll("<skipped>", with: "")
        text = text.replacingAll("-\n", with: "")
        text = text.replacingAll("\n", with: " ")
        if text.unicodeScalars.contains("&") {
            text = text.replacingAll("&quot;", with: "\"")
            text = text.replacingAll("&amp;", with: "&")
            text = text.replacingAll("&lt;", with: "<")
            text = text.replacingAll("&gt;", with: ">")
        }
        let space: Unicode.Scalar = " "
        func isDigit(_ s: Unicode.Scalar) -> Bool { s.value >= 0x30 && s.value <= 0x39 }
        func isPeriodOrComma(_ s: Unicode.Scalar) -> Bool { s == "." || s == "," }
        // 1. Symbols and ASCII punctuation other than . , - ' (the ranges of the reference regex).
        var a: [Unicode.Scalar] = [space]
        for s in text.unicodeScalars {
            let v = s.value
            let symbol = (0x7B...0x7E).contains(v) || (0x5B...0x60).contains(v) || (0x20...0x26).contains(v)
                || (0x28...0x2B).contains(v) || (0x3A...0x40).contains(v) || v == 0x2F
            if symbol { a.append(space); a.append(s); a.append(space) } else { a.append(s) }
        }
        a.append(space)
        // 2–4. Pairwise rules, each one left-to-right over non-overlapping matches like re.sub.
        func rewrite(_ input: [Unicode.Scalar], _ matches: (Unicode.Scalar, Unicode.Scalar) -> Bool,
                     _ emit: (Unicode.Scalar, Unicode.Scalar, inout [Unicode.Scalar]) -> Void) -> [Unicode.Scalar] {
            var out: [Unicode.Scalar] = []
            out.reserveCapacity(input.count + input.count / 4)
            var i = 0
            while i < input.count {
                if i + 1 < input.count && matches(input[i], input[i + 1]) {
                    emit(input[i], input[i + 1], &out)
                    i += 2
                } else {
                    out.append(input[i])
                    i += 1
                }
            }
            return out
        }
        a = rewrite(a, { !isDigit($0) && isPeriodOrComma($1) }) { x, y, out in out += [x, space, y, space] }
        a = rewrite(a, { isPeriodOrComma($0) && !isDigit($1) }) { x, y, out in out += [space, x, space, y] }
        a = rewrite(a, { isDigit($0) && $1 == "-" }) { x, y, out in out += [x, space, y, space] }
        return pythonWords(a).map { String(String.UnicodeScalarView($0)) }
    }

    /// Corpus BLEU of hypotheses against one reference each (sacrebleu's `corpus_bleu` defaults).
    public static func corpusScore(hypotheses: [String], references: [String]) -> BLEUScore {
        precondition(hypotheses.count == references.count, "one reference per hypothesis")
        let order = 4
        var correct = [Int](repeating: 0, count: order), total = [Int](repeating: 0, count: order)
        var hypLength = 0, refLength = 0
        for (hyp, ref) in zip(hypotheses, references) {
            let h = tokenize13a(hyp.trimmingPythonTrailingSpace()), r = tokenize13a(ref.trimmingPythonTrailingSpace())
            hypLength += h.count
            refLength += r.count
            for n in 1...order {
                let hc = ngramCounts(h, n), rc = ngramCounts(r, n)
                for (g, c) in hc {
                    total[n - 1] += c
                    if let m = rc[g] { correct[n - 1] += min(c, m) }
                }
            }
        }
        var bp = 1.0
        if hypLength < refLength { bp = hypLength > 0 ? exp(1 - Double(refLength) / Double(hypLength)) : 0 }
        var precisions = [Double](repeating: 0, count: order)
        if correct.allSatisfy({ $0 == 0 }) {
            return BLEUScore(score: 0, precisions: precisions, brevityPenalty: bp, hypothesisLength: hypLength, referenceLength: refLength)
        }
        var smooth = 1.0
        for n in 0..<order {
            if total[n] == 0 { break }
            if correct[n] == 0 {
                smooth *= 2
                precisions[n] = 100 / (smooth * Double(total[n]))
            } else {
                precisions[n] = 100 * Double(correct[n]) / Double(total[n])
            }
        }
        let logSum = precisions.reduce(0.0) { $0 + ($1 == 0 ? -9_999_999_999 : log($1)) }
        return BLEUScore(score: bp * exp(logSum / Double(order)), precisions: precisions, brevityPenalty: bp,
                         hypothesisLength: hypLength, referenceLength: refLength)
    }

    static func ngramCounts(_ tokens: [String], _ n: Int) -> [String: Int] {
        var counts: [String: Int] = [:]
        if tokens.count >= n {
            for i in 0...(tokens.count - n) { counts[tokens[i..<(i + n)].joined(separator: " "), default: 0] += 1 }
        }
        return counts
    }
}

public enum CHRF {
    /// Corpus chrF (0–100) with sacrebleu's defaults: character n-grams of order 1…6 with
    /// whitespace removed, statistics summed over the corpus, β = 2, precision and recall averaged
    /// over the orders where both sides have n-grams.
    public static func corpusScore(hypotheses: [String], references: [String], order: Int = 6, beta: Double = 2) -> Double {
        precondition(hypotheses.count == references.count, "one reference per hypothesis")
        var hypCount = [Int](repeating: 0, count: order), refCount = hypCount, matches = hypCount
        for (hyp, ref) in zip(hypotheses, references) {
            let h = Array(hyp.unicodeScalars).filter { !isPythonSpace($0) }
            let r = Array(ref.unicodeScalars).filter { !isPythonSpace($0) }
            for n in 1...order {
                let hc = charNgrams(h, n), rc = charNgrams(r, n)
                var hypTotal = 0, matched = 0
                for (g, c) in hc {
                    hypTotal += c
                    if let m = rc[g] { matched += min(c, m) }
                }
                // A hypothesis n-gram is not counted when the reference has none of that order.
                hypCount[n - 1] += rc.isEmpty ? 0 : hypTotal
                refCount[n - 1] += rc.values.reduce(0, +)
                matches[n - 1] += matched
            }
        }
        let factor = beta * beta
        var avgPrecision = 0.0, avgRecall = 0.0, effective = 0
        for n in 0..<order where hypCount[n] > 0 && refCount[n] > 0 {
            avgPrecision += Double(matches[n]) / Double(hypCount[n])
            avgRecall += Double(matches[n]) / Double(refCount[n])
            effective += 1
        }
        guard effective > 0 else { return 0 }
        avgPrecision /= Double(effective)
        avgRecall /= Double(effective)
        guard avgPrecision + avgRecall > 0 else { return 0 }
        return 100 * (1 + factor) * avgPrecision * avgRecall / (factor * avgPrecision + avgRecall)
    }

    static func charNgrams(_ s: [Unicode.Scalar], _ n: Int) -> [String: Int] {
        var counts: [String: Int] = [:]
        if s.count >= n {
            for i in 0...(s.count - n) { counts[String(String.UnicodeScalarView(s[i..<(i + n)])), default: 0] += 1 }
        }
        return counts
    }
}

/// Accuracy, per-class precision/recall/F1, macro F1 and the confusion matrix of a classifier.
public struct ClassificationReport: Sendable, Codable, Equatable {
    public struct ClassScores: Sendable, Codable, Equatable {
        public var label: String
        public var precision: Double
        public var recall: Double
        public var f1: Double
        /// Examples whose gold label is this class.
        public var support: Int
    }
    public var accuracy: Double
    /// Macro-averaged F1 over the classes.
    public var f1: Double
    public var perClass: [ClassScores]
    /// confusion[gold][predicted].
    public var confusion: [[Int]]
    public var examples: Int

    public init(labels: [String], gold: [Int], predicted: [Int]) {
        precondition(gold.count == predicted.count, "one prediction per example")
        let k = labels.count
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: k), count: k)
        for (g, p) in zip(gold, predicted) { confusion[g][p] += 1 }
        var correct = 0
        for i in 0..<k { correct += confusion[i][i] }
        var perClass: [ClassScores] = []
        for c in 0..<k {
            let tp = Double(confusion[c][c])
            let predictedAs = Double((0..<k).reduce(0) { $0 + confusion[$1][c] })
            let actual = Double(confusion[c].reduce(0, +))
            let precision = predictedAs > 0 ? tp / predictedAs : 0
            let recall = actual > 0 ? tp / actual : 0
            let f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
            perClass.append(ClassScores(label: labels[c], precision: precision, recall: recall, f1: f1, support: Int(actual)))
        }
        self.accuracy = gold.isEmpty ? 0 : Double(correct) / Double(gold.count)
        self.f1 = k > 0 ? perClass.reduce(0) { $0 + $1.f1 } / Double(k) : 0
        self.perClass = perClass
        self.confusion = confusion
        self.examples = gold.count
    }
}

extension String {
    /// Python's `str.replace`: on Unicode scalars, not on grapheme clusters (so "\r\n" holds a "\n").
    func replacingAll(_ target: String, with replacement: String) -> String {
        let t = Array(target.unicodeScalars), r = Array(replacement.unicodeScalars), s = Array(unicodeScalars)
        guard !t.isEmpty, s.count >= t.count else { return self }
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count)
        var i = 0
        while i < s.count {
            if i + t.count <= s.count && s[i] == t[0] && Array(s[i..<(i + t.count)]) == t {
                out += r
                i += t.count
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return String(String.UnicodeScalarView(out))
    }

    func trimmingPythonTrailingSpace() -> String {
        var scalars = Array(unicodeScalars)
        while let last = scalars.last, isPythonSpace(last) { scalars.removeLast() }
        return String(String.UnicodeScalarView(scalars))
    }
}
