// loss.svg: train and val loss against step, as a self-contained SVG (no dependencies).

public enum LossPlot {
    public static func svg(train: [(Int, Double)], val: [(Int, Double)], title: String) -> String {
        let w = 720.0, h = 420.0, left = 60.0, right = 20.0, top = 40.0, bottom = 50.0
        let all = train + val
        guard !all.isEmpty else { return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"420\"></svg>" }
        let maxStep = Double(max(1, all.map { $0.0 }.max()!))
        let losses = all.map { $0.1 }.filter { $0.isFinite }
        var lo = losses.min() ?? 0, hi = losses.max() ?? 1
        if hi - lo < 1e-6 { hi = lo + 1 }
        let pad = (hi - lo) * 0.05
        lo -= pad; hi += pad
        func x(_ s: Int) -> Double { left + Double(s) / maxStep * (w - left - right) }
        func y(_ l: Double) -> Double { top + (hi - l) / (hi - lo) * (h - top - bottom) }
        func f(_ v: Double) -> String { String(Int((v * 10).rounded())) .withDecimal }
        // Downsample the train curve to at most ~800 points by averaging.
        var points: [(Int, Double)] = []
        let stride = max(1, train.count / 800)
        var i = 0
        while i < train.count {
            let chunk = train[i..<min(train.count, i + stride)]
            points.append((chunk.last!.0, chunk.map { $0.1 }.reduce(0, +) / Double(chunk.count)))
            i += stride
        }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(Int(w / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(escape(title))</text>\n"
        for k in 0...4 {
            let l = lo + (hi - lo) * Double(k) / 4
            s += "<line x1=\"\(f(left))\" y1=\"\(f(y(l)))\" x2=\"\(f(w - right))\" y2=\"\(f(y(l)))\" stroke=\"#ddd\"/>"
            s += "<text x=\"\(f(left - 6))\" y=\"\(f(y(l) + 4))\" text-anchor=\"end\">\(String(format3(l)))</text>\n"
        }
        for k in 0...4 {
            let st = Int(maxStep * Double(k) / 4)
            s += "<text x=\"\(f(x(st)))\" y=\"\(f(h - bottom + 18))\" text-anchor=\"middle\">\(st)</text>\n"
        }
        s += "<text x=\"\(Int(w / 2))\" y=\"\(Int(h - 10))\" text-anchor=\"middle\">step</text>\n"
        if !points.isEmpty {
            s += "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\""
            s += points.filter { $0.1.isFinite }.map { "\(f(x($0.0))),\(f(y($0.1)))" }.joined(separator: " ") + "\"/>\n"
        }
        if !val.isEmpty {
            s += "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\""
            s += val.filter { $0.1.isFinite }.map { "\(f(x($0.0))),\(f(y($0.1)))" }.joined(separator: " ") + "\"/>\n"
            for p in val where p.1.isFinite { s += "<circle cx=\"\(f(x(p.0)))\" cy=\"\(f(y(p.1)))\" r=\"3\" fill=\"#d62728\"/>" }
            s += "\n"
        }
        s += "<text x=\"\(Int(w - right - 150))\" y=\"\(Int(top + 14))\" fill=\"#1f77b4\">— train loss</text>"
        s += "<text x=\"\(Int(w - right - 150))\" y=\"\(Int(top + 30))\" fill=\"#d62728\">● val loss</text>\n"
        s += "</svg>\n"
        return s
    }

    static func escape(_ t: String) -> String {
        t.replacingAll("&", "&amp;").replacingAll("<", "&lt;").replacingAll(">", "&gt;")
    }

    static func format3(_ v: Double) -> String {
        let r = (v * 1000).rounded() / 1000
        return "\(r)"
    }
}

extension String {
    /// "123" (tenths) -> "12.3"
    var withDecimal: String {
        var digits = self
        let negative = digits.hasPrefix("-")
        if negative { digits.removeFirst() }
        while digits.count < 2 { digits = "0" + digits }
        let out = String(digits.dropLast()) + "." + String(digits.last!)
        return negative ? "-" + out : out
    }

    func replacingAll(_ a: String, _ b: String) -> String { split(separator: a, omittingEmptySubsequences: false).joined(separator: b) }
}
