#!/usr/bin/env python3
"""Simple yardsticks for hh-rlhf preference accuracy on the held-out split of Tools/recipes/hh_corpus.py.

What can a model learn from 7,000 hh-rlhf pairs without understanding them? Two logistic regressions
on pair differences (chosen minus rejected, trained symmetrically, no intercept), fitted on the
training pairs and scored on the held-out ones:

  * bag of words: binary word counts of the two replies (best of a few regularisation strengths);
  * length per subset: log(1 + length) differences times a one-hot of the hh-rlhf subset, with the
    replies cut to N tokens as a context of 128 or 256 would cut them (tokens approximated as 4.2
    characters, about what the recipe's 4,096-token vocabulary gives).

    python3 Tools/reference/preference_baselines.py --data ../shared/data

Needs numpy, scipy and scikit-learn (Tools/reference/requirements.txt).
"""
import argparse
import json
import random

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

CHARS_PER_TOKEN = 4.2


def fit_pairwise(x_train, x_held, c=1.0):
    stack = sp.vstack if sp.issparse(x_train) else np.vstack
    x = stack([x_train, -x_train])
    y = np.r_[np.ones(x_train.shape[0]), np.zeros(x_train.shape[0])]
    model = LogisticRegression(C=c, max_iter=3000, fit_intercept=False).fit(x, y)
    return float(np.mean(model.decision_function(x_held) > 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--heldout", type=int, default=800)
    ap.add_argument("--seed", type=int, default=6)
    args = ap.parse_args()
    with open(f"{args.data}/dpo/hh_rlhf_pairs.jsonl", encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f if line.strip()]
    order = list(range(len(pairs)))
    random.Random(args.seed).shuffle(order)  # the same split as Tools/recipes/hh_corpus.py
    held = [pairs[i] for i in order[:args.heldout]]
    openings = {p["prompt_messages"][0]["content"].strip() for p in held}
    train = [pairs[i] for i in order[args.heldout:] if pairs[i]["prompt_messages"][0]["content"].strip() not in openings]
    print(f"{len(train)} training pairs, {len(held)} held out")

    words = CountVectorizer(binary=True, min_df=2).fit([p["chosen"] for p in train] + [p["rejected"] for p in train])
    diff = lambda ps: words.transform([p["chosen"] for p in ps]) - words.transform([p["rejected"] for p in ps])
    for c in (0.003, 0.01, 0.1, 1.0):
        print(f"bag of words, C={c}: {100 * fit_pairwise(diff(train), diff(held), c):.1f}%")

    subsets = sorted({p["subset"] for p in pairs})
    for cap in (112, 236, None):
        def features(ps):
            rows = []
            for p in ps:
                lc, lr = (len(p[k]) / CHARS_PER_TOKEN for k in ("chosen", "rejected"))
                if cap is not None:
                    lc, lr = min(lc, cap), min(lr, cap)
                rows.append([(np.log1p(lc) - np.log1p(lr)) * (p["subset"] == s) for s in subsets])
            return np.array(rows)
        name = f"replies cut to {cap} tokens" if cap else "whole replies"
        print(f"length per subset, {name}: {100 * fit_pairwise(features(train), features(held)):.1f}%")


if __name__ == "__main__":
    main()
