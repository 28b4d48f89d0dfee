"""Reference next-token distributions from Hugging Face transformers' logits processors.

For fixed random logits and a set of sampling settings, applies the processors `generate` uses
(RepetitionPenalty, Temperature, TopK, TopP, MinP, in that order) and writes the resulting
probabilities. Presence/frequency penalties and logit bias (not in transformers) follow OpenAI's
definition, computed here with torch. The Swift tests (Tests/EngineTests) compare the
distributions of `Sampler` against this file.

    python3 Tools/reference/sampling_fixture.py Tests/EngineTests/Fixtures/sampling.json
"""
import json
import sys

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList, MinPLogitsWarper, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
    TopKLogitsWarper, TopPLogitsWarper)

V = 64
gen = torch.Generator().manual_seed(7)
cases = []
settings = [
    dict(temperature=1.0),
    dict(temperature=0.7),
    dict(temperature=1.3, top_k=5),
    dict(temperature=1.0, top_k=1),
    dict(temperature=1.0, top_p=0.9),
    dict(temperature=0.8, top_p=0.5),
    dict(temperature=1.0, min_p=0.1),
    dict(temperature=1.2, top_k=20, top_p=0.8, min_p=0.05),
    dict(temperature=1.0, repetition_penalty=1.3),
    dict(temperature=0.9, repetition_penalty=0.8, top_p=0.95),
    dict(temperature=1.0, presence_penalty=0.5, frequency_penalty=0.25),
    dict(temperature=1.0, logit_bias={3: 2.5, 10: -100.0}),
    dict(temperature=0.0, repetition_penalty=1.5),
]
for i, s in enumerate(settings):
    logits = torch.round(torch.randn(V, generator=gen) * 2.5 * 1e4) / 1e4
    prompt = torch.randint(0, V, (6,), generator=gen).tolist()
    generated = torch.randint(0, V, (5,), generator=gen).tolist()
    scores = logits.clone()[None, :]
    for tok, b in s.get("logit_bias", {}).items():
        scores[0, tok] += b
    ids = torch.tensor([prompt + generated])
    procs = LogitsProcessorList()
    if s.get("repetition_penalty", 1.0) != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(s["repetition_penalty"]))
    scores = procs(ids, scores)
    counts = torch.bincount(torch.tensor(generated), minlength=V).float()
    scores = scores - s.get("presence_penalty", 0.0) * (counts > 0).float() - s.get("frequency_penalty", 0.0) * counts
    t = s["temperature"]
    if t == 0:
        probs = torch.zeros(V)
        probs[int(scores[0].argmax())] = 1.0
    else:
        warp = LogitsProcessorList([TemperatureLogitsWarper(t)])
        if "top_k" in s:
            warp.append(TopKLogitsWarper(s["top_k"]))
        if "top_p" in s:
            warp.append(TopPLogitsWarper(s["top_p"]))
        if "min_p" in s:
            warp.append(MinPLogitsWarper(s["min_p"]))
        scores = warp(ids, scores)
        probs = torch.softmax(scores, dim=-1)[0]
    cases.append(dict(
        settings={k: (v if k != "logit_bias" else {str(a): b for a, b in v.items()}) for k, v in s.items()},
        logits=[round(float(x), 6) for x in logits], prompt=prompt, generated=generated,
        probs=[float(x) for x in probs]))

out = sys.argv[1] if len(sys.argv) > 1 else "sampling.json"
with open(out, "w") as f:
    json.dump(dict(vocab_size=V, cases=cases), f)
print(f"wrote {len(cases)} cases to {out}")
