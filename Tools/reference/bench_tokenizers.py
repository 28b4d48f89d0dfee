#!/usr/bin/env python3
"""Encode (and optionally train) throughput of tiktoken and HF `tokenizers`.

    python3 Tools/reference/bench_tokenizers.py --input FILE --tokenizer tokenizer.json \
        [--threads N] [--json] [--train-vocab N] [--train-input FILE ...]

The tokenizer.json must be a byte-level BPE as written by tokenizer_parity.py /
SwiftGPT (Split regex + ByteLevel pre-tokenizer). The equivalent tiktoken
Encoding is built in memory from it: pat_str = the Split regex read from the
JSON, mergeable_ranks = {token bytes: id} for the non-special tokens,
special_tokens = the added tokens.

The input is read as UTF-8 and cut at blank lines into ~1,000 documents (they
concatenate back to the input exactly). Throughput is UTF-8 input bytes per
second, median of 3 timed runs after one warm-up run:
  * tiktoken 1 thread:  encode_ordinary(doc) for every document
  * tiktoken N threads: encode_ordinary_batch(docs, num_threads=N)
  * HF 1 thread:        encode_batch(docs, add_special_tokens=False) in a child
                        process started with RAYON_NUM_THREADS=1 (rayon sizes its
                        global pool once, from the environment, at first use)
  * HF N threads:       the same in a child with RAYON_NUM_THREADS=N
  * (extra) HF encode_batch_fast (no offsets), 1 and N threads, same children
With --train-vocab V, HF training (same pipeline as tokenizer_parity.py, vocab
V, special token <|endoftext|>) on the --train-input files is timed once in a
child with RAYON_NUM_THREADS=N (seconds, wall clock, file reading included).

--json: human-readable lines go to stderr; stdout's last line is one JSON object.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import regex

SPECIAL = "<|endoftext|>"


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


CHAR_TO_BYTE = bytes_to_unicode()


def split_pattern(spec: dict) -> str:
    """The Split regex of a tokenizer.json pre_tokenizer (possibly in a Sequence)."""
    def walk(pt):
        if pt is None:
            return None
        if pt.get("type") == "Sequence":
            for p in pt.get("pretokenizers", []):
                r = walk(p)
                if r is not None:
                    return r
            return None
        if pt.get("type") == "Split":
            pat = pt["pattern"]
            if "Regex" in pat:
                return pat["Regex"]
            return regex.escape(pat["String"])
        return None
    pat = walk(spec.get("pre_tokenizer"))
    if pat is None:
        raise SystemExit("tokenizer.json has no Split pre-tokenizer with a regex")
    return pat


def build_tiktoken(path: str):
    import tiktoken
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    if spec["model"]["type"] != "BPE":
        raise SystemExit("not a BPE model")
    specials = {a["content"]: a["id"] for a in spec.get("added_tokens", [])}
    ranks = {}
    for tok, i in spec["model"]["vocab"].items():
        if tok in specials:
            continue
        ranks[bytes(CHAR_TO_BYTE[c] for c in tok)] = i
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise SystemExit(f"vocabulary lacks single-byte tokens for {len(missing)} bytes")
    pat = split_pattern(spec)
    enc = tiktoken.Encoding(name="bench", pat_str=pat, mergeable_ranks=ranks, special_tokens=specials)
    return enc, pat


def read_docs(path: str, n_docs: int = 1000):
    with open(path, "r", encoding="utf-8", newline="") as f:
        text = f.read()
    target = max(1, len(text) // n_docs)
    docs, start = [], 0
    for m in regex.finditer(r"\n[ \t]*\n\s*", text):
        if m.end() - start >= target:
            docs.append(text[start:m.end()])
            start = m.end()
    if start < len(text):
        docs.append(text[start:])
    assert "".join(docs) == text
    return docs, len(text.encode("utf-8"))


def timed(fn, repeats: int = 3):
    fn()  # warm-up
    times = []
    result = None
    for _ in range(repeats):
        result = None  # free the previous output before the next run
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, result


# ---------------------------------------------------------------- children

def child_hf_encode(args):
    from tokenizers import Tokenizer
    import tokenizers
    tok = Tokenizer.from_file(args.tokenizer)
    docs, nbytes = read_docs(args.input)
    med, times, out = timed(lambda: tok.encode_batch(docs, add_special_tokens=False))
    n_tokens = sum(len(e.ids) for e in out)
    checksum = sum(sum(e.ids) for e in out)
    out = None
    fast = None
    if hasattr(tok, "encode_batch_fast"):  # no offsets (tokenizers >= 0.20)
        fmed, ftimes, fout = timed(lambda: tok.encode_batch_fast(docs, add_special_tokens=False))
        assert sum(sum(e.ids) for e in fout) == checksum
        fast = {"median_s": fmed, "times": ftimes}
    print(json.dumps({"median_s": med, "times": times, "bytes": nbytes, "tokens": n_tokens,
                      "rayon": os.environ.get("RAYON_NUM_THREADS"), "version": tokenizers.__version__,
                      "checksum": checksum, "fast": fast}))


def child_hf_train(args):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    with open(args.tokenizer, encoding="utf-8") as f:
        pat = split_pattern(json.load(f))
    t0 = time.perf_counter()
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pat), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=args.train_vocab,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[SPECIAL], show_progress=False)
    tok.train(args.train_input, trainer=trainer)
    dt = time.perf_counter() - t0
    nbytes = sum(os.path.getsize(p) for p in args.train_input)
    print(json.dumps({"seconds": dt, "bytes": nbytes, "vocab": tok.get_vocab_size(),
                      "rayon": os.environ.get("RAYON_NUM_THREADS")}))


def run_child(mode: str, threads: int, argv_extra):
    env = dict(os.environ)
    env["RAYON_NUM_THREADS"] = str(threads)
    env.pop("TOKENIZERS_PARALLELISM", None)  # parallelism on; the pool size decides
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", mode] + argv_extra
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        raise SystemExit(f"child {mode} failed ({res.returncode})")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--train-vocab", type=int, default=None)
    ap.add_argument("--train-input", nargs="+", default=None)
    ap.add_argument("--_child", choices=["hf_encode", "hf_train"], help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._child == "hf_encode":
        return child_hf_encode(args)
    if args._child == "hf_train":
        return child_hf_train(args)
    if args.train_vocab and not args.train_input:
        ap.error("--train-vocab needs --train-input")

    log = sys.stderr if args.json else sys.stdout
    import tiktoken
    import tokenizers

    enc, pat = build_tiktoken(args.tokenizer)
    docs, nbytes = read_docs(args.input)
    mb = nbytes / 1e6
    print(f"input {args.input}: {mb:.2f} MB in {len(docs)} documents; threads {args.threads}", file=log)
    print(f"pattern {pat}", file=log)

    med1, t1, out1 = timed(lambda: [enc.encode_ordinary(d) for d in docs])
    tt_tokens = sum(map(len, out1))
    print(f"tiktoken 1 thread : {mb / med1:8.2f} MB/s  ({', '.join(f'{t:.3f}' for t in t1)} s; {tt_tokens:,} tokens)", file=log)
    medn, tn, outn = timed(lambda: enc.encode_ordinary_batch(docs, num_threads=args.threads))
    assert outn == out1
    print(f"tiktoken {args.threads} threads: {mb / medn:8.2f} MB/s  ({', '.join(f'{t:.3f}' for t in tn)} s)", file=log)

    extra = ["--input", args.input, "--tokenizer", args.tokenizer]
    hf1 = run_child("hf_encode", 1, extra)
    print(f"HF 1 thread       : {mb / hf1['median_s']:8.2f} MB/s  ({', '.join(f'{t:.3f}' for t in hf1['times'])} s; {hf1['tokens']:,} tokens)", file=log)
    hfn = run_child("hf_encode", args.threads, extra)
    print(f"HF {args.threads} threads      : {mb / hfn['median_s']:8.2f} MB/s  ({', '.join(f'{t:.3f}' for t in hfn['times'])} s)", file=log)
    for label, r in (("1 thread ", hf1), (f"{args.threads} threads", hfn)):
        if r["fast"]:
            print(f"HF fast {label}: {mb / r['fast']['median_s']:8.2f} MB/s  (encode_batch_fast, no offsets; "
                  f"{', '.join(f'{t:.3f}' for t in r['fast']['times'])} s)", file=log)
    tt_checksum = sum(sum(ids) for ids in out1)
    same = hf1["tokens"] == tt_tokens and hf1["checksum"] == tt_checksum == hfn["checksum"]
    print(f"HF and tiktoken ids agree (count + checksum): {same}", file=log)

    train_s = None
    if args.train_vocab:
        tr = run_child("hf_train", args.threads,
                       ["--input", args.input, "--tokenizer", args.tokenizer,
                        "--train-vocab", str(args.train_vocab), "--train-input", *args.train_input])
        train_s = tr["seconds"]
        print(f"HF train vocab {args.train_vocab} on {tr['bytes'] / 1e6:.2f} MB: {train_s:.2f} s "
              f"({args.threads} threads)", file=log)

    result = {
        "tiktoken_mb_per_sec_1t": round(mb / med1, 3),
        "tiktoken_mb_per_sec_all": round(mb / medn, 3),
        "hf_mb_per_sec_1t": round(mb / hf1["median_s"], 3),
        "hf_mb_per_sec_all": round(mb / hfn["median_s"], 3),
        "hf_train_seconds": round(train_s, 3) if train_s is not None else None,
        "hf_fast_mb_per_sec_1t": round(mb / hf1["fast"]["median_s"], 3) if hf1["fast"] else None,
        "hf_fast_mb_per_sec_all": round(mb / hfn["fast"]["median_s"], 3) if hfn["fast"] else None,
        "train_vocab": args.train_vocab,
        "input_mb": round(mb, 3),
        "documents": len(docs),
        "tokens": tt_tokens,
        "ids_agree": same,
        "threads": args.threads,
        "versions": {"tiktoken": tiktoken.__version__, "tokenizers": tokenizers.__version__,
                     "python": sys.version.split()[0]},
    }
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
