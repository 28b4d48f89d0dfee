#!/usr/bin/env python3
"""Train reference byte-level BPE tokenizers and write HF/tiktoken parity fixtures.

Writes into Tests/TokenizerTests/Fixtures/:
  hf_bpe_gpt4.json        HF `tokenizers` byte-level BPE, vocab 2048, GPT-4 (cl100k) split
  hf_bpe_gpt2.json        the same training with the GPT-2 split pattern
  parity_text.txt         ~150 KB varied UTF-8 text (prose, code, numbers, many
                          scripts, emoji, whitespace oddities, long unbroken runs)
  parity_ids.json         {"tokenizer", "cases": [{name, text, hf, tiktoken}]}:
                          ~80 cases plus "whole_file" (the whole parity text)
  parity_ids_gpt2.json    ~30 cases for hf_bpe_gpt2.json

Pipeline (what SwiftGPT also writes): normalizer none; pre_tokenizer
Sequence([Split(Regex(P), behavior="isolated", invert=False),
ByteLevel(add_prefix_space=False, use_regex=False)]); decoder ByteLevel; model
BPE (no unk, byte_fallback False, fuse_unk False); BpeTrainer(vocab_size=2048,
initial_alphabet=ByteLevel.alphabet(), special_tokens=["<|endoftext|>"]).

GPT-4 pattern and Oniguruma: HF `tokenizers` compiles Split regexes with
Oniguruma (Ruby syntax), where `{n,m}+` is NOT possessive but "{n,m} repeated
one or more times": the verbatim cl100k pattern's `\\p{N}{1,3}+` would make HF
split "12345678" as one piece instead of "123","456","78". The tokenizer.json
therefore stores the pattern with that one quantifier written `\\p{N}{1,3}`
(GPT4_HF below), which means exactly the same in Python `regex`, fancy-regex
(tiktoken) and Oniguruma (a possessive {1,3} with nothing after it in its
branch matches the same text as a greedy one). The other possessives (`?+`,
`++`, `*+`) are possessive in Oniguruma too, and `\\s++$` only matches at the
very end because the possessive run eats every newline. tiktoken gets the
verbatim GPT4 pattern.

The training sample is deterministic (~2.3 MB): tinyshakespeare_train.txt +
tinystories_train_head.txt + the first ~1,000,000 characters of the Gutenberg
corpus (books concatenated in file order, separated by a blank line, cut back
to a paragraph boundary). Each source is cut into ~8 KB documents at blank
lines (the documents concatenate back to the source exactly).

Usage:  python3 Tools/reference/tokenizer_parity.py [--data DIR] [--out DIR]
Deterministic; no network (tiktoken Encoding objects are built in memory).
"""
import argparse
import base64
import gzip
import json
import os
import random
import sys
import time
from pathlib import Path

import regex
import tiktoken
import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT4 = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
# Same language as GPT4 in every engine; safe for Oniguruma (see module docstring).
GPT4_HF = GPT4.replace(r"\p{N}{1,3}+", r"\p{N}{1,3}")
assert GPT4_HF != GPT4

SPECIAL = "<|endoftext|>"
VOCAB_SIZE = 2048
GUTENBERG_TRAIN_CHARS = 1_000_000

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = Path("/work/shared/data/pretrain")
DEFAULT_OUT = ROOT / "Tests" / "TokenizerTests" / "Fixtures"


# --------------------------------------------------------------------------
# Byte-level helpers
# --------------------------------------------------------------------------

def bytes_to_unicode():
    """GPT-2 / HF ByteLevel byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def token_bytes(tok: str) -> bytes:
    return bytes(CHAR_TO_BYTE[c] for c in tok)


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------

def read_text(path: Path) -> str:
    with open(path, "r", encoding="utf-8", newline="") as f:
        return f.read()


def gutenberg_books(data: Path):
    with gzip.open(data / "gutenberg_children_en.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            yield d["id"], d["title"], d["text"]


def chunk_text(text: str, target: int):
    """Cut text after blank-line runs into chunks of >= target characters.
    "".join(result) == text."""
    out, start, pos = [], 0, 0
    for m in regex.finditer(r"\n[ \t]*\n\s*", text):
        pos = m.end()
        if pos - start >= target:
            out.append(text[start:pos])
            start = pos
    if start < len(text):
        out.append(text[start:])
    assert "".join(out) == text
    return out


def training_sample(data: Path):
    sources = [
        ("tinyshakespeare_train.txt", read_text(data / "tinyshakespeare_train.txt")),
        ("tinystories_train_head.txt", read_text(data / "tinystories_train_head.txt")),
    ]
    parts, used, total = [], [], 0
    for gid, _title, text in gutenberg_books(data):
        parts.append(text)
        used.append(gid)
        total += len(text) + 2
        if total >= GUTENBERG_TRAIN_CHARS:
            break
    gtext = "\n\n".join(parts)[:GUTENBERG_TRAIN_CHARS]
    cut = gtext.rfind("\n\n")
    gtext = gtext[:cut + 2]
    sources.append(("gutenberg[:%d] (%s)" % (len(gtext), ",".join(used)), gtext))
    docs = []
    for _name, text in sources:
        docs.extend(chunk_text(text, 8000))
    return sources, docs, set(used)


# --------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------

def train_hf(docs, hf_pattern: str, vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(hf_pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[SPECIAL],
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    return tok


def check_and_build_tiktoken(tok: Tokenizer, pat_str: str, name: str):
    """Verify the vocabulary and build the equivalent tiktoken Encoding."""
    spec = json.loads(tok.to_str())
    model = spec["model"]
    vocab = model["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    special_id = vocab[SPECIAL]
    added = {a["content"]: a["id"] for a in spec["added_tokens"]}
    assert added == {SPECIAL: special_id}, added

    # every byte has a token
    missing = [b for b in range(256) if BYTE_TO_CHAR[b] not in vocab]
    assert not missing, f"bytes without a token: {missing}"

    ranks = {}
    for s, i in vocab.items():
        if s == SPECIAL:
            continue
        b = token_bytes(s)
        assert b not in ranks, f"duplicate token bytes {b!r}"
        ranks[b] = i
    assert len(ranks) + 1 == len(vocab) == VOCAB_SIZE, (len(ranks), len(vocab))
    assert sorted(list(ranks.values()) + [special_id]) == list(range(len(vocab))), "ids not contiguous"

    # rank consistency: merge i creates token id (first_merge_id + i), strictly
    # larger than both parts; every multi-byte token comes from exactly one merge.
    first_merge_id = 1 + 256
    made = {}
    for i, (a, b) in enumerate(merges):
        ab = a + b
        assert ab in vocab, (a, b)
        assert vocab[ab] == first_merge_id + i, (a, b, vocab[ab], first_merge_id + i)
        assert vocab[a] < vocab[ab] and vocab[b] < vocab[ab]
        assert ab not in made, f"token {ab!r} made twice"
        made[ab] = (a, b)
    multi = [s for s in vocab if s != SPECIAL and len(token_bytes(s)) > 1]
    assert len(multi) == len(merges) == len(made), (len(multi), len(merges))

    enc = tiktoken.Encoding(
        name=name,
        pat_str=pat_str,
        mergeable_ranks=ranks,
        special_tokens={SPECIAL: special_id},
    )
    merge_rank = {(token_bytes(a), token_bytes(b)): i for i, (a, b) in enumerate(merges)}
    return enc, ranks, merge_rank, spec


def bpe_hf_style(piece: bytes, merge_rank):
    """HF BPE: repeatedly apply the lowest-ranked merge (leftmost on ties)."""
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best, bi = None, -1
        for i in range(len(parts) - 1):
            r = merge_rank.get((parts[i], parts[i + 1]))
            if r is not None and (best is None or r < best):
                best, bi = r, i
        if best is None:
            break
        parts[bi:bi + 2] = [parts[bi] + parts[bi + 1]]
    return parts


def bpe_tiktoken_style(piece: bytes, ranks):
    """tiktoken: whole piece in the vocab -> one token; else repeatedly merge
    the adjacent pair whose concatenation has the lowest rank."""
    if piece in ranks:
        return [piece]
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best, bi = None, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and (best is None or r < best):
                best, bi = r, i
        if best is None:
            break
        parts[bi:bi + 2] = [parts[bi] + parts[bi + 1]]
    return parts


def algorithm_check(pattern: str, texts, ranks, merge_rank):
    """Compare the two BPE algorithms on every vocab token and every distinct
    pre-token piece of `texts`. Returns the list of disagreeing pieces."""
    pieces = set(ranks)
    for t in texts:
        for p in regex.findall(pattern, t):
            pieces.add(p.encode("utf-8"))
    bad = [p for p in sorted(pieces) if bpe_hf_style(p, merge_rank) != bpe_tiktoken_style(p, ranks)]
    return len(pieces), bad


# --------------------------------------------------------------------------
# Parity text
# --------------------------------------------------------------------------

PYTHON_SNIPPET = '''\
import json
from dataclasses import dataclass, field


@dataclass
class Batch:
    """A batch of token ids."""
    ids: list[int] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def load(path: str, *, limit: int | None = None) -> list[Batch]:
    out = []
    with open(path, "r", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if limit is not None and i >= limit:
                break
            row = json.loads(line)
            out.append(Batch(ids=row["ids"], weights={"w": 1.0 / (i + 1)}))
    return out  # TODO(perf): stream instead of materialising


if __name__ == "__main__":
    batches = load("data.jsonl", limit=1_000)
    print(f"{len(batches):,} batches; mean={sum(map(len, batches)) / max(1, len(batches)):.3f}")
'''

SWIFT_SNIPPET = '''\
import Foundation

/// A tiny byte-level tokenizer protocol.
public protocol Tokenizing: Sendable {
    func encode(_ text: String) -> [Int32]
    func decode(_ ids: [Int32]) throws -> String
}

public struct Vocabulary: Codable, Equatable {
    public var tokens: [String: Int32] = [:]
    public let specialTokens: Set<String>

    public init(tokens: [String: Int32], specialTokens: Set<String> = ["<|pad|>"]) {
        self.tokens = tokens
        self.specialTokens = specialTokens
    }

    @inlinable
    public func id(for token: String) -> Int32? { tokens[token] }
}

extension Array where Element == Int32 {
    var histogram: [Int32: Int] {
        reduce(into: [:]) { counts, id in counts[id, default: 0] += 1 }
    }
}

let ids: [Int32] = [15496, 11, 995, 0]
guard let first = ids.first, first >= 0 else { fatalError("empty") }
print("first=\\(first) count=\\(ids.count) hist=\\(ids.histogram)")
'''

JSON_SNIPPET = '''\
{
  "model": {"type": "gpt2", "n_layer": 12, "n_head": 12, "n_embd": 768, "vocab_size": 50257},
  "optimizer": {"name": "AdamW", "lr": 6e-4, "betas": [0.9, 0.95], "eps": 1e-08, "weight_decay": 0.1},
  "schedule": {"warmup_steps": 715, "max_steps": 19073, "min_lr_ratio": 0.1},
  "data": {"paths": ["/data/shard_000.bin", "/data/shard_001.bin"], "seq_len": 1024, "shuffle": true},
  "tags": ["baseline", "fp32", null],
  "notes": "unicode \\u00e9 escapes \\"quoted\\" and a tab\\tinside"
}
'''

C_SNIPPET = '''\
#include <stdio.h>
#include <stdint.h>

static inline uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

int main(int argc, char **argv) {
\tuint32_t h = 0x811C9DC5u;
\tfor (int i = 1; i < argc; ++i) {
\t\tfor (const char *p = argv[i]; *p; ++p) {
\t\t\th ^= (uint8_t)*p;
\t\t\th *= 16777619u;   /* FNV-1a */
\t\t}
\t}
\tprintf("%08x\\n", rotl32(h, 13));
\treturn h == 0 ? -1 : 0;
}
'''

SHELL_SNIPPET = '''\
#!/usr/bin/env bash
set -euo pipefail
for f in ./runs/*.log; do
  grep -E '^step [0-9]+: loss=[0-9.]+' "$f" | awk '{print $2, $3}' >> /tmp/losses.txt || true
done
export RAYON_NUM_THREADS=${THREADS:-4}
swift build -c release && .build/release/swiftgpt train --config char-small --steps 5000 2>&1 | tee out.log
'''

MARKUP_SNIPPET = '''\
<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Caf&eacute; &amp; Co.</title></head>
<body>
  <p class="intro">Hello, <b>world</b>! &lt;not a tag&gt; &#x1F600;</p>
  <a href="https://example.org/path?query=1&amp;x=y#frag">link</a>
</body>
</html>

| name | tokens/s | MFU  |
|------|---------:|-----:|
| char-baby | 1,234,567 | 12.5% |
| gpt2-124m |    45,678 |  3.1% |

SELECT u.id, COUNT(*) AS n FROM users u JOIN orders o ON o.user_id = u.id WHERE o.total > 100.50 GROUP BY u.id HAVING n >= 3;
'''

MULTILINGUAL = [
    ("french", "Le cœur a ses raisons que la raison ne connaît point. L'été dernier, nous sommes allés à "
               "Aix-en-Provence ; « c'est magnifique ! » s'écria-t-elle. Où est l'hôtel ? Ça coûte 12,50 €.\n"
               "Les élèves étudièrent jusqu'à minuit, puis ils dînèrent d'une crêpe flambée.\n"),
    ("german", "Die Straßenbahn fährt über die Brücke. Größenwahn, Übermut und Äpfel – „Das ist ja schön!“, "
               "sagte der Müller. Donaudampfschifffahrtsgesellschaftskapitän.\n"
               "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.\n"),
    ("spanish", "¿Dónde está la biblioteca? ¡Qué día tan bonito! El niño comió piñata y jalapeños en "
                "Cañón del Sumidero.\n"),
    ("italian_portuguese", "Perché non è già finito? Così è, se vi pare. — Não há nada mais bonito "
                           "do que o pôr-do-sol em São Paulo; ações, corações, pães.\n"),
    ("polish_czech_turkish", "Zażółć gęślą jaźń. Příliš žluťoučký kůň úpěl ďábelské ódy. "
                             "İstanbul'da ılık bir gün; ĞÜŞİÖÇ ğüşıöç.\n"),
    ("chinese", "今天天气很好，我们去公园散步吧。机器学习是人工智能的一个分支，它使计算机能够从数据中学习。"
                "“你好，世界！”他说道。第3章：共有12,345个字。\n"),
    ("japanese", "東京は日本の首都です。ひらがな、カタカナ、そして漢字を混ぜて書きます。"
                 "ｶﾀｶﾅ（半角）やＡＢＣ１２３（全角）もあります。吾輩は猫である。名前はまだ無い。\n"),
    ("korean", "안녕하세요, 만나서 반갑습니다. 한국어 문장은 띄어쓰기를 합니다. 2024년 3월 15일.\n"),
    ("russian", "Съешь же ещё этих мягких французских булок, да выпей чаю. Москва — столица России. "
                "«Ёлка» и ЁЖИК; В 1812 году было 3-е сражение.\n"),
    ("ukrainian_bulgarian", "Ґанок, їжак, єнот і Йосип. Щастя — це шлях. Българският език използва кирилица.\n"),
    ("greek", "Καλημέρα κόσμε· η γλώσσα μου έδωσαν ελληνική. Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. ΑΒΓΔ αβγδ.\n"),
    ("arabic", "مرحبا بالعالم. اللغة العربية جميلة جداً، وتُكتب من اليمين إلى اليسار. "
               "الأرقام: ١٢٣٤٥٦٧ و٨٩٠، والسنة 2024.\n"),
    ("hebrew", "שלום עולם! זה משפט בעברית עם ניקוד: בְּרֵאשִׁית בָּרָא. מספר 42.\n"),
    ("hindi", "नमस्ते दुनिया। हिन्दी में लिखा गया यह वाक्य है। संख्याएँ: १२३४५६ और 789। "
              "क्षत्रिय, ज्ञान, श्री।\n"),
    ("thai_vietnamese", "สวัสดีครับ ภาษาไทยไม่มีช่องว่างระหว่างคำ ๑๒๓๔ — Tiếng Việt có nhiều dấu: "
                        "ắ ằ ẳ ẵ ặ, Hà Nội, Thành phố Hồ Chí Minh.\n"),
    ("other_scripts", "ქართული ენა · Հայերեն · አማርኛ · ᏣᎳᎩ · ᠮᠣᠩᠭᠣᠯ · ꦗꦮ · 𐌰𐌱𐌲 (Gothic) · 𝐀𝐁𝐂 𝑥𝑦𝑧\n"),
    ("emoji", "Family: 👨‍👩‍👧‍👦, couple 👩‍❤️‍👨, rainbow flag 🏳️‍🌈, coder 👩🏽‍💻, firefighter 🧑🏿‍🚒, "
              "flags 🇫🇷🇩🇪🇯🇵🇺🇸, 🏴󠁧󠁢󠁳󠁣󠁴󠁿, heart ❤️, keycaps 1️⃣ #️⃣ *️⃣, thumbs 👍🏻👍🏼👍🏽👍🏾👍🏿!!\n"
              "😀😃😄😁😆😅🤣😂🙂🙃 party🎉time 🚀→🌕 ok👌\n"),
    ("combining", "e\u0301 vs é, n\u0303 vs ñ, A\u030a vs Å; Zalgo: Z̴̡̪͕͎a̶̛͉l̷̰̈́g̸͖̍o̵̹͝; "
                  "Hangul jamo \u1112\u1161\u11ab\u1100\u1173\u11af; ﬁ ﬂ ligatures; ǅ ǈ titlecase.\n"),
    ("math_symbols", "∀x∈ℝ: x² ≥ 0; ∑ᵢ₌₁ⁿ i = n(n+1)/2; π ≈ 3.14159; ½ ¼ ¾ ⅓ Ⅻ ①②③ ⑩; "
                     "∫₀^∞ e^(−x²) dx = √π/2; ℃ ℉ № ™ © ®; ≠ ≤ ≥ ± × ÷ ∞ ∅ ∇.\n"),
    ("punctuation_mix", "“Curly quotes” and ‘single ones’, ‹angles› «guillemets»; dashes - – — ―; "
                        "ellipsis… bullets • ◦ ‣; ¿¡; 「かぎ括弧」『二重』【隅付き】〜\n"),
]

NUMBERS_FIXED = """\
Invoice #2024-0042 dated 2024-03-15T09:41:07Z (Fri, 15 Mar 2024 09:41:07 +0000), due 04/15/2024 or 15.04.2024.
Subtotal: $1,234,567.89; tax (8.875%): $109,567.90; total: $1,344,135.79. Paid €99,95 + £3.50 + ¥10000 + ₹2,50,000 + ₩1,000,000.
Constants: π=3.141592653589793, e=2.718281828459045, c=299792458 m/s, N_A=6.02214076e23 mol⁻¹, h=6.62607015E-34 J·s.
Integers: 0 7 42 100 999 1000 1001 65535 65536 2147483647 -2147483648 18446744073709551615 12345678901234567890.
Versions v1.2.3, 10.15.7, 2.0.0-rc.1+build.5; IPv4 192.168.0.1:8080; IPv6 2001:db8::ff00:42:8329; MAC 00:1A:2B:3C:4D:5E.
Phone +1 (555) 123-4567, +44 20 7946 0958; ISBN 978-3-16-148410-0; card 4111 1111 1111 1111; 1st 2nd 3rd 4th 21st 102nd.
Ratios 3:2, 16:9, 1/3, 22/7; ranges 1-10, 1..<10, 1…10; hex 0xDEADBEEF 0x1f; bin 0b1010_1010; oct 0o755; 1_000_000.
Times 00:00, 12:30:45.678, 23:59:59; durations 1h30m, 2d 4h, 90s, 1.5e-3s; temperatures -40°C = -40°F, 98.6°F.
"""


def numbers_generated(rng: random.Random, n_lines: int) -> str:
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    lines = []
    for i in range(n_lines):
        y, m, d = rng.randint(1800, 2099), rng.randint(1, 12), rng.randint(1, 28)
        amount = rng.randint(0, 10 ** rng.randint(1, 9)) / 100
        pct = rng.random() * 100
        big = rng.randint(0, 10 ** rng.randint(1, 25))
        neg = -rng.randint(1, 99999)
        sci = rng.random() * 10 ** rng.randint(-12, 12)
        lines.append(
            f"row {i:03d}: {y:04d}-{m:02d}-{d:02d} | {d} {months[m - 1]} {y} | ${amount:,.2f} | {pct:.3f}% | "
            f"{big} | {neg} | {sci:.6g} | {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
        )
    return "\n".join(lines) + "\n"


WHITESPACE_CASES = [
    ("ws_tabs", "name\tage\tcity\nAlice\t30\tParis\nBob\t\t\tBerlin\n\t\tindented with tabs\n \t mixed \t\n"),
    ("ws_trailing_spaces", "trailing spaces   \nline two  \t \nline three \n    \n  end with spaces   "),
    ("ws_crlf", "Windows line endings\r\nsecond line\r\n\r\nafter a blank line\r\n  indented\r\n\r\n\r\n"),
    ("ws_blank_runs", "para one\n\n\n\n\n\npara two after five blank lines\n\n\n\n\n\n\n\n\n\npara three\n   \n\t\n \n"),
    ("ws_nbsp", "price:\u00a0100\u00a0€; a\u00a0\u00a0b; \u00a0leading nbsp; trailing nbsp\u00a0\nnbsp then newline\u00a0\n"),
    ("ws_ideographic", "全角\u3000スペース\u3000\u3000です。\u3000段落の始め。 a\u3000b \u3000c\n"),
    ("ws_unicode_spaces", "thin\u2009space en\u2002space em\u2003space narrow\u202fnbsp figure\u2007space "
                          "hair\u200aspace line\u2028sep para\u2029sep ogham\u1680mark\n"),
    ("ws_controls", "vertical\x0btab form\x0cfeed; next\x85line; zero\u200bwidth; bom\ufeffmark; "
                    "cr\ronly; mixed \r\n \n\r end\n"),
    ("ws_leading_and_only", "        eight leading spaces\n\t\t\ttabs\n  \n    \n"),
    ("ws_space_before_punct", "word , word ; word ! word ?  !!  ...   x  -  y \n! \n !\n"),
]


def long_runs(rng: random.Random):
    blob = bytes(rng.getrandbits(8) for _ in range(3000))
    url = ("https://example.com/api/v2/users/123456/repos/swift-gpt/commits?since=2024-01-01T00:00:00Z"
           "&until=2024-12-31T23:59:59Z&per_page=100&page=7&sort=committer-date&order=desc&token="
           + "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(160))
           + "#L120-L245/" + "/".join(f"segment{i:03d}" for i in range(30)))
    digits = "".join(rng.choice("0123456789") for _ in range(1000))
    hexes = " ".join("".join(rng.choice("0123456789abcdef") for _ in range(64)) for _ in range(8))
    return [
        ("long_aaaa", "a" * 2000),
        ("long_url", url + "\n"),
        ("long_base64", base64.b64encode(blob).decode("ascii") + "\n"),
        ("long_digits", digits + "\n"),
        ("long_hex", hexes + "\n"),
        ("long_punct", "=" * 300 + "\n" + "-*" * 150 + "\n" + "!?" * 100 + "..." * 50 + "\n"),
        ("long_mixed", ("ab" * 300) + ("aaaa1111" * 60) + "\n" + "x" * 700 + "1" * 301 + "\n"),
        ("long_nonascii", "🙂" * 200 + "\n" + "漢字" * 250 + "\n" + "é" * 500 + "\n"),
        ("long_spaces", "start" + " " * 500 + "middle" + "\t" * 100 + "end" + "\n" * 50),
        ("long_camel", "".join(rng.choice(["Get", "Set", "Async", "Token", "Buffer", "Manager", "Factory", "Impl"])
                               for _ in range(150)) + "\n"),
    ]


ADVERSARIAL = [
    ("contractions", "I'm sure you're right; they'll say we've done it, he'd agree and she's fine. "
                     "DON'T SHOUT, I'M HERE, THEY'LL HEAR, WE'VE, YOU'RE, HE'D, SHE'S. "
                     "Don'T mIxEd'Ll cAsE'Ve. 'tis 'twas rock'n'roll O'Neil y'all'd've can't've.\n"),
    ("apostrophes", "the dog's bone, the dogs' bones, ’curly’ it’s don’t, ``latex'' quotes, 's at start, "
                    "x 's, x  's, '' and ''' and 'x'y'z'.\n"),
    ("punct_newlines", "Hello!!!\n\nWhat?!\r\n\r\nOK.\n...\n\n\n---\n***\n)\n  (\n"),
    ("letters_digits", "abc123def 123abc a1b2c3 H2O CO2 x86_64 arm64e mp3 4K 1080p 3D 2x 10x iPhone15 COVID-19 "
                       "A1B2C3D4E5F6 ÀÉÎ123ØÜ\n"),
    ("identifiers", "__init__ self._cache snake_case_name camelCaseName PascalCase SCREAMING_CASE kebab-case "
                    "dot.separated.name a::b::c $var @attr #tag %fmt &ref *ptr ~dtor\n"),
    ("quotes_brackets", "(\"nested [brackets {and} (parens)]\") '{\"json\": [1, 2, 3]}' <tag attr=\"v\"/> "
                        "`code` ```fenced``` <<EOF >> 2>&1 || && ;; ::\n"),
]


def select_paragraph_chunks(text: str, count: int, chunk_chars: int, rng: random.Random):
    """`count` chunks of about chunk_chars characters starting at paragraph
    boundaries spread evenly over text."""
    out = []
    for k in range(count):
        pos = int(len(text) * (k + 0.5) / count)
        start = text.find("\n\n", pos)
        if start < 0:
            continue
        start += 2
        while start < len(text) and text[start] == "\n":
            start += 1
        end = text.find("\n\n", start + chunk_chars)
        if end < 0:
            end = len(text)
        out.append(text[start:end + 2])
    return out


def build_parity_blocks(data: Path, train_books: set):
    """Returns a list of (case_name or None, text); the parity text is their
    concatenation. Blocks with a name become cases."""
    rng = random.Random(20240611)
    blocks = []

    # TinyStories validation: 8 chunks; the first ~1 KB paragraph group of
    # each is a case, the rest is bulk text.
    stories = read_text(data / "tinystories_valid_head.txt")
    for i, chunk in enumerate(select_paragraph_chunks(stories, 8, 4500, rng)):
        head_end = chunk.find("\n\n", 900) + 2 if chunk.find("\n\n", 900) > 0 else len(chunk)
        blocks.append((f"tinystories_{i}", chunk[:head_end]))
        if chunk[head_end:]:
            blocks.append((None, chunk[head_end:]))

    # Gutenberg books that are not in the training sample.
    books = [(gid, title, text) for gid, title, text in gutenberg_books(data) if gid not in train_books]
    picks = [books[int(len(books) * k / 8) + 3] for k in range(8)]
    for gid, title, text in picks:
        chunk = select_paragraph_chunks(text, 1, 8000, rng)[0]
        head_end = chunk.find("\n\n", 1200) + 2 if chunk.find("\n\n", 1200) > 0 else len(chunk)
        blocks.append((f"gutenberg_{gid}", chunk[:head_end]))
        if chunk[head_end:]:
            blocks.append((None, chunk[head_end:]))

    for name, snippet in [("code_python", PYTHON_SNIPPET), ("code_swift", SWIFT_SNIPPET),
                          ("code_json", JSON_SNIPPET), ("code_c_tabs", C_SNIPPET),
                          ("code_shell", SHELL_SNIPPET), ("code_markup_sql", MARKUP_SNIPPET)]:
        blocks.append((name, snippet + "\n"))

    blocks.append(("numbers_fixed", NUMBERS_FIXED + "\n"))
    gen = numbers_generated(rng, 120)
    gen_lines = gen.splitlines(keepends=True)
    blocks.append(("numbers_generated", "".join(gen_lines[:20])))
    blocks.append((None, "".join(gen_lines[20:]) + "\n"))

    for name, line in MULTILINGUAL:
        blocks.append((f"lang_{name}", line))
    blocks.append((None, "\n"))
    for name, s in WHITESPACE_CASES:
        blocks.append((name, s))
    blocks.append((None, "\n\n"))
    for name, s in long_runs(rng):
        blocks.append((name, s))
    for name, s in ADVERSARIAL:
        blocks.append((name, s))

    # More multilingual bulk: sentences recombined deterministically.
    sentences = [s for _, line in MULTILINGUAL for s in regex.split(r"(?<=[.!?。！？।])\s*", line) if s.strip()]
    for i in range(12):
        rng.shuffle(sentences)
        blocks.append((f"lang_mix_{i}" if i < 4 else None, " ".join(sentences[:8]) + "\n\n"))

    # A final case whose text ends in whitespace (exercises `\s++$`).
    blocks.append(("ends_with_whitespace", "The end.  \n\t \n\n   "))
    return blocks


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------

def dump_cases(path: Path, header: dict, cases):
    """One case per line; compact; UTF-8 without \\u escapes."""
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":"))
    assert head.endswith("}")
    lines = [json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases]
    text = head[:-1] + ',"cases":[\n' + ",\n".join(lines) + "\n]}\n"
    json.loads(text)
    path.write_text(text, encoding="utf-8", newline="")


def encode_case(tok: Tokenizer, enc, name: str, text: str):
    assert SPECIAL not in text, name
    hf = tok.encode(text, add_special_tokens=False).ids
    assert tok.decode(hf, skip_special_tokens=False) == text, f"HF decode(encode(x)) != x for {name}"
    tt = enc.encode_ordinary(text)
    assert enc.decode(tt) == text, f"tiktoken decode(encode(x)) != x for {name}"
    return {"name": name, "text": text, "hf": hf, "tiktoken": tt}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    versions = {"tokenizers": tokenizers.__version__, "tiktoken": tiktoken.__version__,
                "regex": regex.__version__, "python": sys.version.split()[0]}
    print("versions:", versions)

    sources, docs, train_books = training_sample(args.data)
    sample_chars = sum(len(t) for _, t in sources)
    sample_bytes = sum(len(t.encode("utf-8")) for _, t in sources)
    print(f"training sample: {len(docs)} documents, {sample_chars:,} chars, {sample_bytes:,} bytes")
    for name, t in sources:
        print(f"  {name}: {len(t):,} chars")

    blocks = build_parity_blocks(args.data, train_books)
    parity_text = "".join(t for _, t in blocks)
    assert SPECIAL not in parity_text
    names = [n for n, _ in blocks if n]
    assert len(names) == len(set(names))
    (args.out / "parity_text.txt").write_bytes(parity_text.encode("utf-8"))
    print(f"parity text: {len(parity_text):,} chars, {len(parity_text.encode('utf-8')):,} bytes, {len(names)} named blocks")

    summary = {}
    for flavor, hf_pattern, tt_pattern in [("gpt4", GPT4_HF, GPT4), ("gpt2", GPT2, GPT2)]:
        t0 = time.time()
        tok = train_hf(docs, hf_pattern)
        # Determinism check: a second training gives the same file.
        tok2 = train_hf(docs, hf_pattern)
        assert tok.to_str() == tok2.to_str(), "training is not deterministic"
        print(f"\n[{flavor}] trained vocab {tok.get_vocab_size()} in {(time.time() - t0) / 2:.1f} s")
        tok_path = args.out / f"hf_bpe_{flavor}.json"
        tok.save(str(tok_path), pretty=True)
        tok = Tokenizer.from_file(str(tok_path))  # use exactly what was written

        enc, ranks, merge_rank, spec = check_and_build_tiktoken(tok, tt_pattern, f"swiftgpt_bpe_{flavor}")
        print(f"[{flavor}] 256 byte tokens present; {len(merge_rank)} merges; merge i -> id 257+i; "
              f"special {SPECIAL!r} = {tok.token_to_id(SPECIAL)}")
        byte_ids = [tok.token_to_id(BYTE_TO_CHAR[b]) for b in range(256)]
        print(f"[{flavor}] byte->id: bytes 0..4 -> {byte_ids[:5]}, bytes 251..255 -> {byte_ids[-5:]}; "
              f"ids 1..5 are bytes {[CHAR_TO_BYTE[tok.id_to_token(i)] for i in range(1, 6)]}, "
              f"ids 252..256 are bytes {[CHAR_TO_BYTE[tok.id_to_token(i)] for i in range(252, 257)]}")

        # HF pre-tokenizer (Oniguruma) vs Python `regex` on all texts.
        split = pre_tokenizers.Split(Regex(hf_pattern), behavior="isolated", invert=False)
        texts = [parity_text] + [t for _, t in blocks] + docs
        pre_bad = sum(1 for t in texts if [p for p, _ in split.pre_tokenize_str(t)] != regex.findall(tt_pattern, t))
        print(f"[{flavor}] HF Split vs Python regex.findall: {pre_bad} of {len(texts)} texts differ")
        if flavor == "gpt4":
            verb = pre_tokenizers.Split(Regex(GPT4), behavior="isolated", invert=False)
            vb = sum(1 for t in texts if [p for p, _ in verb.pre_tokenize_str(t)] != regex.findall(GPT4, t))
            print(f"[{flavor}] (verbatim GPT4 in HF/Oniguruma would differ on {vb} of {len(texts)} texts: "
                  f"'12345678' -> {[p for p, _ in verb.pre_tokenize_str('12345678')]})")

        # BPE algorithm equivalence (HF merge order vs tiktoken rank order).
        n_pieces, algo_bad = algorithm_check(tt_pattern, [parity_text] + docs, ranks, merge_rank)
        print(f"[{flavor}] HF-style vs tiktoken-style BPE on {n_pieces:,} distinct pieces: {len(algo_bad)} differ"
              + (f" e.g. {algo_bad[:5]}" if algo_bad else ""))

        # Whole training sample through both real encoders.
        hf_ids = [e.ids for e in tok.encode_batch(docs, add_special_tokens=False)]
        tt_ids = enc.encode_ordinary_batch(docs, num_threads=os.cpu_count() or 1)
        sample_bad = sum(1 for a, b in zip(hf_ids, tt_ids) if a != b)
        n_tok = sum(map(len, hf_ids))
        print(f"[{flavor}] training sample: {n_tok:,} tokens ({sample_bytes / n_tok:.2f} bytes/token); "
              f"HF vs tiktoken differ on {sample_bad} of {len(docs)} documents")

        # Cases.
        if flavor == "gpt4":
            chosen = [(n, t) for n, t in blocks if n]
        else:
            keep = {"tinystories_0", "tinystories_3", "code_python", "code_swift", "code_json", "code_c_tabs",
                    "numbers_fixed", "lang_french", "lang_german", "lang_chinese", "lang_japanese",
                    "lang_russian", "lang_arabic", "lang_hindi", "lang_emoji", "lang_combining",
                    "lang_math_symbols", "ws_tabs", "ws_trailing_spaces", "ws_crlf", "ws_blank_runs",
                    "ws_nbsp", "ws_ideographic", "ws_unicode_spaces", "ws_controls", "long_digits",
                    "long_mixed", "long_spaces", "contractions", "apostrophes", "punct_newlines",
                    "ends_with_whitespace"}
            keep.add([n for n, _ in blocks if n and n.startswith("gutenberg_")][2])
            chosen = [(n, t) for n, t in blocks if n in keep]
            assert len(chosen) == len(keep)
        cases = [encode_case(tok, enc, n, t) for n, t in chosen]
        if flavor == "gpt4":
            cases.append(encode_case(tok, enc, "whole_file", parity_text))
        mism = [c["name"] for c in cases if c["hf"] != c["tiktoken"]]
        print(f"[{flavor}] {len(cases)} cases, {sum(len(c['hf']) for c in cases):,} HF tokens; "
              f"HF/tiktoken mismatches: {mism if mism else 'none'}")
        assert not mism, mism

        header = {
            "tokenizer": tok_path.name,
            "pattern": tt_pattern,
            "hf_pattern": hf_pattern,
            "special_tokens": {SPECIAL: tok.token_to_id(SPECIAL)},
            "versions": versions,
        }
        if flavor == "gpt4":
            header["whole_file"] = "parity_text.txt"
        ids_path = args.out / ("parity_ids.json" if flavor == "gpt4" else "parity_ids_gpt2.json")
        dump_cases(ids_path, header, cases)
        summary[flavor] = (tok_path, ids_path)

    print("\nfiles:")
    total = 0
    for p in [args.out / "parity_text.txt"] + [p for f in summary.values() for p in f]:
        sz = p.stat().st_size
        total += sz
        print(f"  {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}: {sz:,} bytes")
    print(f"  total: {total:,} bytes")


if __name__ == "__main__":
    main()
