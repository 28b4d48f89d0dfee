#!/usr/bin/env python3
"""Break a preference evaluation down by hh-rlhf subset, and relate it to the replies' lengths.

`swiftgpt eval --task preference --data PAIRS --reference SFT --output SCORES` writes one JSON line
per pair; this script joins them with PAIRS (which carry a `subset` field in ../shared/data's
hh-rlhf file) and prints, per subset: the log-probability accuracy (chosen more likely), the
implicit-reward accuracy (chosen's log-ratio to the reference higher), how often the chosen reply
is the longer one, and the correlation between the reward difference and the length difference
(positive: the model's reward favours longer replies).

    python3 Tools/recipes/preference_by_subset.py --pairs hh/dpo_heldout.jsonl --scores scores.jsonl

Only the standard library is needed.
"""
import argparse
import json
import math
from collections import defaultdict


def correlation(xs, ys):
    n = len(xs)
    if n < 2:
        return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", required=True, help="the preference pairs that were scored (JSONL)")
    ap.add_argument("--scores", required=True, help="swiftgpt eval --task preference --output file")
    args = ap.parse_args()
    with open(args.pairs, encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f if line.strip()]
    with open(args.scores, encoding="utf-8") as f:
        scores = [json.loads(line) for line in f if line.strip()]
    groups = defaultdict(list)
    for s in scores:
        groups["(all)"].append(s)
        subset = pairs[s["index"]].get("subset")
        if subset:
            groups[subset].append(s)
    print(f"{'subset':28s} {'pairs':>5s} {'log-prob acc':>12s} {'reward acc':>10s} {'chosen longer':>13s} {'corr(reward, Δlength)':>22s}")
    for name, group in sorted(groups.items()):
        n = len(group)
        logp = sum(s["chosen_logp"] > s["rejected_logp"] for s in group) / n
        longer = sum(s["chosen_tokens"] > s["rejected_tokens"] for s in group) / n
        rewards = [s.get("reward") for s in group]
        if all(r is not None for r in rewards):
            reward = f"{100 * sum(r > 0 for r in rewards) / n:9.1f}%"
            corr = f"{correlation(rewards, [s['chosen_tokens'] - s['rejected_tokens'] for s in group]):+22.3f}"
        else:
            reward, corr = f"{'-':>10s}", f"{'- (no --reference)':>22s}"
        print(f"{name:28s} {n:5d} {100 * logp:11.1f}% {reward} {100 * longer:12.1f}% {corr}")


if __name__ == "__main__":
    main()
