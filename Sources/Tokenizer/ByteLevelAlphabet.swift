// GPT-2's byte <-> printable character mapping, used by byte-level BPE files (tokenizer.json,
// encoder.json): printable Latin-1 bytes stand for themselves, the other 68 bytes are shifted to
// U+0100 and up, so every token is a printable string.

public enum ByteLevelAlphabet {
    /// Character (Unicode scalar value) that stands for each byte.
    public static let byteToScalar: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var shifted: UInt32 = 256
        for b in 0..<256 {
            if (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b) {
                table[b] = UInt32(b)
            } else {
                table[b] = shifted
                shifted += 1
            }
        }
        return table
    }()

    /// Inverse of `byteToScalar` (nil for scalars that stand for no byte).
    public static let scalarToByte: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { map[s] = UInt8(b) }
        return map
    }()

    /// The printable string for a byte string.
    public static func encode(_ bytes: [UInt8]) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(Unicode.Scalar(byteToScalar[Int(b)])!) }
        return String(s)
    }

    /// The bytes of a printable string, or nil if it contains a character outside the alphabet.
    public static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.unicodeScalars.count)
        for s in text.unicodeScalars {
            guard let b = scalarToByte[s.value] else { return nil }
            out.append(b)
        }
        return out
    }
}
