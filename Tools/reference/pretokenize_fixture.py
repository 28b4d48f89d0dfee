#!/usr/bin/env python3
"""Generate the pre-tokenizer (regex split) reference fixture for SwiftGPT.

Writes Tests/TokenizerTests/Fixtures/pretokenize.json: the expected splits of an
adversarial corpus under the GPT-2 and GPT-4 (cl100k_base) split patterns,
computed with the Python `regex` package (`regex.findall`).

Inputs are byte strings. Each one is decoded with errors="surrogateescape" so
that invalid UTF-8 bytes become lone surrogates U+DC80..U+DCFF (which are
neither letters, numbers nor whitespace for the pattern), split, and every
piece is encoded back with surrogateescape. All bytes are stored as lowercase
hex strings.

Patterns:
  * gpt2: the pattern of the original GPT-2 release (encoder.py).
  * gpt4: tiktoken's cl100k_base `pat_str`, copied verbatim from
    tiktoken_ext/openai_public.py (tiktoken 0.14.0). It differs textually
    from the often-quoted form
      '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+
    by extra possessive quantifiers, an added `\s++$` alternative (a
    whitespace run that reaches the end of the text is one piece) and a final
    `\s` instead of `\s+`. Only the `\s++$` alternative changes results.

Deterministic: fixed seeds, no network. Usage:
    python3 -m pip install regex
    python3 Tools/reference/pretokenize_fixture.py
"""
import argparse
import json
import random
import unicodedata
from pathlib import Path

import regex

GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT4 = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""

# Variants, used only for the diagnostic printed at the end (not stored).
GPT2_TIKTOKEN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT4_BRIEF = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "Tests" / "TokenizerTests" / "Fixtures" / "pretokenize.json"


def split(pattern, data: bytes):
    text = data.decode("utf-8", errors="surrogateescape")
    pieces = regex.findall(pattern, text)
    assert "".join(pieces) == text, (pattern, data)
    out = [p.encode("utf-8", errors="surrogateescape") for p in pieces]
    assert b"".join(out) == data
    assert all(out), "empty piece"
    return out


# --------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------

def u(s: str) -> bytes:
    return s.encode("utf-8")


def build_corpus():
    cases = []  # (name, bytes)
    names = set()

    def add(name, data):
        if isinstance(data, str):
            data = u(data)
        assert name not in names, name
        names.add(name)
        cases.append((name, data))

    def group(prefix, items):
        for i, s in enumerate(items):
            add(f"{prefix}_{i:02d}", s)

    add("empty", b"")

    group("contraction", [
        "I'm", "I'M", "DON'T", "don't", "Don'T", "it's", "IT'S", "It'S",
        "they'LL", "they'll", "THEY'LL", "we've", "WE'VE", "We'Ve", "you're",
        "YOU'RE", "you'Re", "he'd", "HE'D", "'s", "'S", "'s at start",
        "'t'm'd", "''", "'''s", "' s", "O'Neil", "O'NEIL", "o'neil",
        "rock'n'roll", "Ma'am", "y'all'd've", "the dog's bone", "the dogs' bones",
        "'ll'LL'lL'Ll", "'ve'VE're'RE", "I\u2019m", "DON\u2019T", "it\u2019s",
        "\u2018quoted\u2019 \u201cdouble\u201d", "x 's", "x  's", "x\n's",
        "'sa", "'tis", "'re-", "'1", "''s''", "can't've", "I'm'm", "'\u0301s",
        "Ö'S", "'ſ", "'K", "'x'y'z", "'D'M'T", "shouldn't", "'",
    ])

    group("digits", [
        "1", "12", "123", "1234", "12345", "123456", "1234567", "12345678",
        "123456789", "1234567890", "12345678901", "123456789012",
        " 1", " 1234", "  12345", "a1", "abc123def", "123abc", "abc 123 def",
        "2024-11-22", "3.14159", "-3.14", "1,000,000", "1_000_000", "0x1F",
        "1e-10", "v1.2.3", "$100.00", "50%", "#1", "12:30:45", "+1 (555) 123-4567",
        "\uff11\uff12\uff13\uff14", "\u0661\u0662\u0663\u0664\u0665",
        "\u0967\u0968\u0969\u096a", "\u0e51\u0e52\u0e53", "1\u00b2", "x\u00b2+y\u00b2",
        "\u00bd\u00bc\u00be", "\u2155 cup", "\u216b", "\u2160\u2161\u2162\u2163\u2164",
        "\u2460\u2461\u2462", "\u2070\u00b9\u00b2\u00b3\u2074", "\u2080\u2081\u2082",
        "1\u00bd", "H\u2082O", "\u3007\u4e00\u4e8c",
    ])

    group("spaces", [
        " ", "  ", "   ", " a", "  a", "   a", "a ", "a  ", "a   ", " a ",
        "a b", "a  b", "a   b", "a    b", "  hello  world  ", "\t", "\ta", "a\tb",
        "a\t\tb", " \ta", "\t a", "a \t", "\r\n", "a\r\nb", "a\r\n\r\nb", "\n",
        "\n\n\n", "a\n\n\nb", " \n ", "a \n b", "a  \nb", "a   \n\n  b", "a \r\n b",
        "a\n", "a\n ", "a \n", "a  ", "a\t", "a \t\n ", "\r", "a\rb", "\r\r\n",
        "\n\r", " \r\n\r\n ", "a\n\tb", "a\n  b", "a\n\n  \n b", "x  !", "x \n!",
        "!\n\n", "!  \n", "x\n", "\n x", " \n\n", "  \t\n\r\n  end",
        "a\u0085b", "a \n\u0085\r\n", "a\x0b\x0cb", "a \x0c\nb",
    ])

    group("uspace", [
        "a\u00a0b", "a\u00a0\u00a0b", "\u00a0a", "a\u00a0", "a\u2003b",
        "a\u2003\u2003b", "\u3000\u65e5\u672c", "a\u3000b", "a\u2028b",
        "a\u2029b", "a\u0085b", " \u0085 ", "\u0085", "a\x0bb", "a\x0cb",
        "a\x1cb", "a\x1db", "a\x1eb", "a\x1fb", "\x1c\x1d\x1e\x1f",
        " \x1c", "\x1f ", "a\u2000\u2001\u2002\u2004\u2005\u2006\u2007\u2008\u2009\u200a b",
        "a\u200bb", "a\u200cb\u200d", "a\u202fb", "a\u205fb", "a\u180eb",
        "a\ufeffb", "\u1680x", "x \u00a0", "x\u00a0 y", "x \u3000y", "x \u2028\n",
        "\u2028\u2028", "\u00a0\n", "\n\u00a0",
    ])

    group("punct", [
        "!!!", "...", "?!", "--->", "(x)", "[1]", "#$%", "hello!!!",
        "wait... what?!", "a->b", "<=>", "x==y", "a, b; c: d.", " !!!",
        "  !!!", "!!! ", "!\n", "!\r\n\r\n", "!\n\nx", ". \n", "@user #tag",
        "foo@bar.com", "https://example.com/a?b=c&d=e#f", "C:\\path\\to",
        "\u2014dash\u2014", "\u00ab\u00bb", "\u300c\u300d\u3002\u3001",
        "\u00bf\u00a1Hola!?", "***bold***", "__init__", "a_b_c", "~/.bashrc",
        "`code`", "'quoted'", "\"dq\"", "(((", ")))", "{}[]()", "%%%%", "\u2026",
        "$", " $ ", "\u2122\u00a9\u00ae", "+-*/", "\\n", "!!\t!!",
    ])

    group("script", [
        "\u4f60\u597d\u4e16\u754c", "\u4f60\u597d\uff0c\u4e16\u754c\uff01",
        "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
        "\u3072\u3089\u304c\u306a \u30ab\u30bf\u30ab\u30ca", "\uff76\uff80\uff76\uff85",
        "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
        "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd", "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
        "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5",
        "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
        "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01",
        "abc\u4e2d\u6587def", "Hello\u4e16\u754c123", "\u041cosc\u043ew",
        "\u0627\u0644\u0639\u0631\u0628\u064a\u0629123", "\u00e9t\u00e9 \u00c9T\u00c9",
        "Stra\u00dfe STRASSE", "\u0130stanbul \u0131", "\u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0",
        "\u0531\u0562\u0563", "\u1200\u1208\u121b", "\U00010348\U00010330",
        "\U0001d400\U0001d401\U0001d402", "\U00020000\U0002a6d6",
    ])

    group("emoji", [
        "\U0001f600", "\U0001f600\U0001f601\U0001f602", "hi \U0001f44b", "\U0001f44b hi",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
        "\U0001f3f3\ufe0f\u200d\U0001f308", "\U0001f1fa\U0001f1f8", "\U0001f1ef\U0001f1f5\U0001f1eb\U0001f1f7",
        "\U0001f44d\U0001f3fd", "\U0001f44d\U0001f3ff thumbs", "\u2764\ufe0f", "\u263a",
        "#\ufe0f\u20e3", "1\ufe0f\u20e3", "a\U0001f600b", "a \U0001f600 b",
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
        "\U0001f9d1\u200d\U0001f4bb coding", "!\U0001f600", "\U0001f600\n",
    ])

    group("combining", [
        "e\u0301", "caf\u00e9 cafe\u0301", "e\u0301\u0301\u0301", "\u0301", " \u0301",
        "\u0301a", "a\u0301 b\u0302", "\u1100\u1161\u11a8", "\u1112\u1161\u11ab\u1100\u1173\u11af",
        "\u0915\u093f", "\u0915\u094d\u0937", "\u0939\u093f\u0928\u094d\u0926\u0940",
        "\u0643\u064e\u062a\u064e\u0628\u064e", "\u0628\u0650\u0633\u0652\u0645\u0650",
        "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357",
        "1\u0301", "!\u0301", "\u20dd", "a\u20dd", "\u0e01\u0e34\u0e48",
        "\u05e9\u05c1\u05b8", "x\u0308y", "\u3099\u304b\u3099",
    ])

    group("letterlike", [
        "\u2122", "\u2113", "\u2116", "\u2102\u210d\u2115", "\u212b", "\u2126",
        "\u00aa\u00ba", "\u00b5", "\u2160x", "\ufb01le", "\u00df", "\u01c5",
        "\u02b0\u02b2", "\u2090", "\U0001d49c\U0001d4b8", "\u2103 \u2109",
        "\u03c0r\u00b2", "\u221e", "\u2200x\u2203y", "\u00b0C",
    ])

    group("control", [
        "\x00", "a\x00b", "\x00\x00\x00", "\x07", "bell\x07", "\x1b[31mred\x1b[0m",
        "\x1b[1;32m OK \x1b[0m", "\x7f", "a\x7fb", "\x01\x02\x03", "\x08\x08",
        " \x00", "\x00 ", "\x00\n", "\x0e\x0f", "\x80\x85\x9f",
        "\u200e\u200f", "\u202e\u202d", "\u2066x\u2069", "\ufffd", "\ufffe",
        "\U0010ffff", "\ue000", "'\x00s",
    ])

    group("invalid", [
        b"\x80", b"\xbf", b"\x80\x80\x80", b"a\x80b", b" \x80", b"\x80 ",
        b"\xc3", b"a\xc3", b"\xc3 a", b"\xe2\x82", b"\xe2\x82a", b"\xe2",
        b"\xf0\x9f\x98", b"\xf0\x9f", b"\xf0", b"\xf0\x9f\x98 x",
        b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf",
        b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xa0\xbd\xed\xb8\x80",
        b"\xf5", b"\xf8\x88\x80\x80\x80", b"\xfc", b"\xfe\xff", b"\xff",
        b"\xf4\x90\x80\x80", b"\xff\xfe\x00a", b"abc\xffdef",
        b"don\xe2\x80t", b"I\x80m", b"'\xe2\x80\x99s", b"caf\xc3\xa9\xc3",
        b"123\x80456", b"\x80123", b"!!\xff!!", b"\xc3\xa9\x80\xc3\xa9",
        b" \xff \xfe ", b"\n\xff\n", b"\xe4\xbd\xa0\xe5\xa5", b"\xc2\xa0\xc2",
        b"\xef\xbb\xbfBOM",
    ])

    group("code", [
        "def f(x):\n    return x ** 2\n",
        "import os\n\nclass Foo(object):\n    def __init__(self, a=1):\n        self.a = a  # comment\n\n\nif __name__ == '__main__':\n    print(f\"{os.getcwd()!r}\")\n",
        "for i in range(10):\n\tif i % 2 == 0:\n\t\tcontinue\n\tyield i\n",
        "let x: Int = 42\nvar names = [String]()\nfunc greet(_ name: String) -> String {\n    return \"Hello, \\(name)!\"\n}\n",
        "struct Point: Equatable {\n    var x, y: Double\n}\nguard let p = points.first else { fatalError() }\n",
        "{\"name\": \"SwiftGPT\", \"version\": 1.0, \"tags\": [\"a\", \"b\"], \"nested\": {\"k\": null, \"t\": true}}",
        "{\n  \"key\": \"value\\n\\u00e9\",\n  \"n\": -12345678\n}\n",
        "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 0x7fffffff); return 0; }\n",
        "SELECT * FROM users WHERE id = 1;",
        "<div class=\"a\">&nbsp;&lt;b&gt;</div>",
        "x = [1,2,3]\r\ny = {'a': 1}\r\n",
        "    \n    \n\n",
        "// TODO: fix\n/* block */\n",
    ])

    group("prose", [
        "It was the best of times, it was the worst of times, it was the age of wisdom, "
        "it was the age of foolishness, it was the epoch of belief, it was the epoch of "
        "incredulity, it was the season of Light, it was the season of Darkness.",
        "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX JUMPS OVER THE "
        "LAZY DOG! Isn't it? I'd say it's 100% true \u2014 they've said so since 1999.\n\n"
        "Second paragraph:\tindented,  double-spaced.  \nEnd.",
        "Call me Ishmael. Some years ago\u2014never mind how long precisely\u2014having little or "
        "no money in my purse, and nothing particular to interest me on shore, I thought "
        "I would sail about a little and see the watery part of the world.\n",
        "\u201cWe\u2019re here,\u201d she said. \u201cDon\u2019t worry; we\u2019ll manage.\u201d\r\n\r\n"
        "He didn't answer. The clock read 11:59 p.m. on 31/12/2024.",
        "L'\u00e9t\u00e9 dernier, nous sommes all\u00e9s \u00e0 Z\u00fcrich et \u00e0 S\u00e3o Paulo. "
        "\u00a1Qu\u00e9 bonito! Gr\u00fc\u00dfe aus M\u00fcnchen.",
        "\u5e8a\u524d\u660e\u6708\u5149\uff0c\u7591\u662f\u5730\u4e0a\u971c\u3002"
        "\u4e3e\u5934\u671b\u660e\u6708\uff0c\u4f4e\u5934\u601d\u6545\u4e61\u3002",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
        "incididunt ut labore et dolore magna aliqua.   \n  Ut enim ad minim veniam.  ",
    ])

    # ---- random cases --------------------------------------------------
    rng = random.Random(20241122)
    for i in range(50):
        n = rng.randint(0, 40)
        add(f"random_bytes_{i:02d}", bytes(rng.randrange(256) for _ in range(n)))

    pool = (
        list("aZz'sStTlLdDmMvVrReE019 ") + [" ", " ", "  ", "\t", "\n", "\r", "\r\n"]
        + list("!?.,-()[]#$%_\"`")
        + ["'", "\u2019", "\u00a0", "\u2003", "\u3000", "\u2028", "\u0085", "\x0b",
           "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x00", "\x07", "\x1b", "\x7f",
           "\u4e2d", "\u3042", "\u30ab", "\ud55c", "\u1100", "\u1161", "\u0645",
           "\u064e", "\u05e9", "\u0416", "\u03a9", "\u0915", "\u093f", "\u094d",
           "\u0e01", "\u0e34", "e\u0301", "\u0301", "\u00b2", "\u00bd", "\u216b",
           "\u2122", "\u2113", "\U0001f600", "\u200d", "\U0001f3fd", "\U0001f1fa",
           "\ufe0f", "\u00e9", "\u00df", "\uff11", "\u0661"]
    )
    invalid = [b"\x80", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xc0\xaf",
               b"\xed\xa0\x80", b"\xf5", b"\xff"]
    for i in range(60):
        n = rng.randint(0, 30)
        parts = []
        for _ in range(n):
            if rng.random() < 0.08:
                parts.append(rng.choice(invalid))
            else:
                parts.append(u(rng.choice(pool)))
        add(f"random_mix_{i:02d}", b"".join(parts))

    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    cases = build_corpus()
    diff_gpt2 = diff_gpt4 = 0
    lines = []
    for name, data in cases:
        g2 = split(GPT2, data)
        g4 = split(GPT4, data)
        diff_gpt2 += g2 != split(GPT2_TIKTOKEN, data)
        diff_gpt4 += g4 != split(GPT4_BRIEF, data)
        lines.append(json.dumps({
            "name": name,
            "text": data.hex(),
            "gpt2": [p.hex() for p in g2],
            "gpt4": [p.hex() for p in g4],
        }, ensure_ascii=True))

    header = {
        "patterns": {"gpt2": GPT2, "gpt4": GPT4},
        "regex_version": regex.__version__,
        "unicode_version": unicodedata.unidata_version,
    }
    body = json.dumps(header, ensure_ascii=True, indent=1)[:-2]
    text = body + ',\n "cases": [\n' + ",\n".join(lines) + "\n ]\n}\n"
    assert json.loads(text)["cases"][0]["name"] == cases[0][0]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="ascii")
    print(f"wrote {args.out} ({len(text)} bytes, {len(cases)} cases)")
    print(f"cases where tiktoken's r50k pattern differs from gpt2: {diff_gpt2}")
    print(f"cases where the \\s+-tail cl100k variant differs from gpt4: {diff_gpt4}")


if __name__ == "__main__":
    main()
