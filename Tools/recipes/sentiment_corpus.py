#!/usr/bin/env python3
"""Build the pre-training corpus of the sentiment recipe (README, Applications).

SST-2's sentences are lower-case and tokenised the Penn Treebank way ("it 's", "does n't",
`` quotes '', spaced punctuation); the Gutenberg books are ordinary prose. A small model
pre-trained on the books learns "it's" and "Don't", and then meets "it 's" and "do n't" in every
fine-tuning row. This script writes the books in SST-2's style, so the pre-trained knowledge
applies to the task's text, and puts SST-2's training sentences (text only, no labels) first in
the file -- `swiftgpt prepare` takes its validation split from the end, and text listed last
would never be trained on. The dev set is not read.

    python3 Tools/recipes/sentiment_corpus.py --data ../shared/data --out sentiment_corpus.jsonl
    python3 Tools/recipes/sentiment_corpus.py --style raw ...   # the books as they are

Only the standard library is needed.
"""
import argparse
import gzip
import json
import random
import re

NEGATED = re.compile(r"\b(\w+)n't\b")
CLITIC = re.compile(r"(\w)'(s|re|ve|ll|d|m)\b")


def sst_style(text: str) -> str:
    """Lower-case, PTB-like tokens, one paragraph per line (hard-wrapped lines joined)."""
    t = (text.replace("\u2019", "'").replace("\u2018", "'")
             .replace("\u201c", '"').replace("\u201d", '"').replace("_", ""))
    t = t.lower()
    t = re.sub(r'(^|[\s(\[])"', r"\1 `` ", t)      # an opening quote
    t = t.replace('"', " '' ")                        # any other quote closes
    t = NEGATED.sub(r"\1 n't", t)                     # don't -> do n't, can't -> ca n't
    t = CLITIC.sub(r"\1 '\2", t)                      # it's -> it 's
    t = re.sub(r"\.\.\.+", " ... ", t)
    t = re.sub(r"--+", " -- ", t)
    t = re.sub(r"(?<!\.)\.(?!\.)", " . ", t)
    t = re.sub(r"([,;:!?()])", r" \1 ", t)
    paragraphs = (re.sub(r"[ \t]+", " ", re.sub(r"\s*\n\s*", " ", p)).strip() for p in re.split(r"\n\s*\n", t))
    return "\n".join(p for p in paragraphs if p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data", help="the shared data folder")
    ap.add_argument("--out", required=True, help="output JSONL (one {\"text\"} per document)")
    ap.add_argument("--megabytes", type=float, default=30, help="how much book text to take (characters, in millions)")
    ap.add_argument("--seed", type=int, default=16, help="seed of the book order")
    ap.add_argument("--style", choices=["sst", "raw"], default="sst", help="sst: the books in SST-2's style; raw: as they are")
    args = ap.parse_args()

    books = [json.loads(line) for line in gzip.open(f"{args.data}/pretrain/gutenberg_children_en.jsonl.gz", "rt", encoding="utf-8")]
    random.Random(args.seed).shuffle(books)
    with open(f"{args.data}/sentiment/sst2_train.tsv", encoding="utf-8") as f:
        sentences = [line.split("\t")[0] for line in f.read().splitlines()[1:]]
    taken = 0
    with open(args.out, "w", encoding="utf-8") as out:
        out.write(json.dumps({"text": "\n".join(sentences)}) + "\n")
        for book in books:
            if taken > args.megabytes * 1e6:
                break
            text = sst_style(book["text"]) if args.style == "sst" else book["text"]
            out.write(json.dumps({"text": text}) + "\n")
            taken += len(text)
    print(f"wrote {args.out}: SST-2's {len(sentences)} training sentences, then {taken / 1e6:.1f}M characters of books ({args.style} style)")


if __name__ == "__main__":
    main()
