#!/usr/bin/env python3
"""Build the files of the hh-rlhf DPO recipe (README, "Recipe: the real data").

The preference pairs are split once, at random, into training pairs and held-out pairs; nothing
below reads the held-out pairs except to write them out:

  dpo_train.jsonl    the training pairs (all four hh-rlhf subsets)
  dpo_heldout.jsonl  the held-out pairs, for `swiftgpt eval --task preference` and `dpo`'s held-out log
  sft.jsonl          the chosen side of every training pair as a conversation (prompt turns + chosen
                     reply): the "SFT on the preferred replies" step of the DPO paper
  pretrain.jsonl     pre-training text in the dialogues' style: the training pairs' conversations as
                     plain "Human: ... Assistant: ..." text (the rejected replies too -- unlabelled, so
                     they say nothing about which reply was preferred), the Alpaca and GPTeacher
                     role-play instructions in the same form, then Gutenberg books. The dialogues come
                     first: `swiftgpt prepare` takes its validation split from the end of the text.

    python3 Tools/recipes/hh_corpus.py --data ../shared/data --out hh

Only the standard library is needed.
"""
import argparse
import gzip
import json
import os
import random


def as_text(messages, reply=None):
    turns = [("Human: " if m["role"] == "user" else "Assistant: ") + m["content"].strip() for m in messages]
    if reply is not None:
        turns.append("Assistant: " + reply.strip())
    return "\n\n".join(turns)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data", help="the shared data folder")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--heldout", type=int, default=800, help="how many pairs to hold out")
    ap.add_argument("--seed", type=int, default=6, help="seed of the held-out split and the book order")
    ap.add_argument("--book-megabytes", type=float, default=16, help="how much book text to add (characters, in millions)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    with open(f"{args.data}/dpo/hh_rlhf_pairs.jsonl", encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f if line.strip()]
    order = list(range(len(pairs)))
    random.Random(args.seed).shuffle(order)
    held = [pairs[i] for i in order[:args.heldout]]
    train = [pairs[i] for i in order[args.heldout:]]
    # A conversation that starts like a held-out one stays out of every training file.
    held_openings = {p["prompt_messages"][0]["content"].strip() for p in held}
    train = [p for p in train if p["prompt_messages"][0]["content"].strip() not in held_openings]

    def write(name, rows):
        with open(f"{args.out}/{name}", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    write("dpo_train.jsonl", train)
    write("dpo_heldout.jsonl", held)
    write("sft.jsonl", ({"messages": p["prompt_messages"] + [{"role": "assistant", "content": p["chosen"]}]} for p in train))

    docs = [as_text(p["prompt_messages"], p["chosen"]) for p in train]
    docs += ["Assistant: " + p["rejected"].strip() for p in train]
    for name in ("alpaca_gpt4_en_demo.jsonl", "gpteacher_roleplay.jsonl"):
        with open(f"{args.data}/sft/{name}", encoding="utf-8") as f:
            docs += [as_text(json.loads(line)["messages"]) for line in f if line.strip()]
    random.Random(args.seed).shuffle(docs)
    books = [json.loads(line)["text"] for line in gzip.open(f"{args.data}/pretrain/gutenberg_children_en.jsonl.gz", "rt", encoding="utf-8")]
    random.Random(args.seed).shuffle(books)
    budget, taken = int(args.book_megabytes * 1e6), 0
    with open(f"{args.out}/pretrain.jsonl", "w", encoding="utf-8") as f:
        dialogue_chars = 0
        for d in docs:
            f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
            dialogue_chars += len(d)
        for b in books:
            if taken >= budget:
                break
            f.write(json.dumps({"text": b}, ensure_ascii=False) + "\n")
            taken += len(b)
    print(f"{len(train)} training pairs ({len(pairs) - len(held) - len(train)} more left out: they open like a held-out one), "
          f"{len(held)} held out; pre-training text: {dialogue_chars / 1e6:.1f}M characters of dialogues, {taken / 1e6:.1f}M of books")


if __name__ == "__main__":
    main()
