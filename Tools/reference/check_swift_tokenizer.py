"""Checks that a tokenizer trained by SwiftGPT loads in Hugging Face `tokenizers` and encodes
exactly as SwiftGPT does.

    python3 Tools/reference/check_swift_tokenizer.py [--swiftgpt .build/release/swiftgpt]

Trains a GPT-4-pattern tokenizer (vocab 1024) with `swiftgpt tokenizer train` on tinyshakespeare,
saves it as Tests/TokenizerTests/Fixtures/swift_trained_gpt4.json, encodes the parity text with HF
`tokenizers` and with `swiftgpt tokenizer encode`, and writes the HF ids and the verdict to
Tests/TokenizerTests/Fixtures/swift_trained_in_hf.json (the Swift test checks the ids again).
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys

from tokenizers import Tokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "Tests", "TokenizerTests", "Fixtures")
DATA = os.path.join(ROOT, "..", "shared", "data", "pretrain", "tinyshakespeare_train.txt")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--swiftgpt", default=os.path.join(ROOT, ".build", "release", "swiftgpt"))
    args = ap.parse_args()
    tok_path = os.path.join(FIXTURES, "swift_trained_gpt4.json")
    subprocess.run([args.swiftgpt, "tokenizer", "train", "--input", DATA, "--vocab-size", "1024",
                    "--pattern", "gpt4", "--output", tok_path], check=True, stderr=subprocess.DEVNULL)
    text_path = os.path.join(FIXTURES, "parity_text.txt")
    text = open(text_path, encoding="utf-8", newline="").read()
    hf = Tokenizer.from_file(tok_path)
    hf_ids = hf.encode(text, add_special_tokens=False).ids
    out = subprocess.run([args.swiftgpt, "tokenizer", "encode", "--tokenizer", tok_path, "--input", text_path, "--json"],
                         check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    swift_ids = json.loads(out)["ids"]
    identical = hf_ids == swift_ids
    result = {
        "tokenizer": "swift_trained_gpt4.json",
        "tokenizer_sha256": hashlib.sha256(open(tok_path, "rb").read()).hexdigest(),
        "text": "parity_text.txt",
        "text_bytes": len(text.encode("utf-8")),
        "tokens": len(hf_ids),
        "identical_ids": identical,
        "hf_decode_roundtrip": hf.decode(hf_ids) == text,
        "hf_ids": hf_ids,
    }
    with open(os.path.join(FIXTURES, "swift_trained_in_hf.json"), "w") as f:
        json.dump(result, f, separators=(",", ":"))
    print(f"{len(hf_ids)} tokens; identical ids: {identical}; HF round trip: {result['hf_decode_roundtrip']}")
    return 0 if identical and result["hf_decode_roundtrip"] else 1


if __name__ == "__main__":
    sys.exit(main())
