#!/usr/bin/env python3
"""Fixture for the Swift BLEU/chrF implementation: sacrebleu's corpus scores (default settings:
BLEU with 13a tokenisation and exponential smoothing, chrF with character 6-grams and beta 2) and
its 13a tokenisation of tricky strings.

    pip install sacrebleu
    python3 Tools/reference/metrics_fixture.py > Tests/EvaluationTests/Fixtures/metrics.json
"""
import json
import sacrebleu
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

# Hypothesis/reference pairs: translations with typical errors, punctuation and numbers, German and
# French accents, empty and one-word outputs, HTML entities, whitespace runs.
PAIRS = [
    ("Ein Mann schläft in einem grünen Raum auf einem Sofa.", "Ein Mann schläft in einem grünen Raum auf einem Sofa."),
    ("Ein Mann schläft auf einem Sofa.", "Ein Mann schläft in einem grünen Raum auf einem Sofa."),
    ("Zwei Hunde laufen durch den Schnee", "Zwei Hunde rennen durch den Schnee."),
    ("Une femme, en robe rouge, marche dans la rue.", "Une femme en robe rouge marche dans la rue."),
    ("The price is 3,50 euros (about $3.80) - cheap!", "The price is 3,50 euros, about $3.80 -- cheap!"),
    ("Kinder spielen im Park", "Ein Kind spielt im Park mit einem Ball."),
    ("", "Ein Hund."),
    ("Hund", "Ein brauner Hund springt über einen Zaun."),
    ("He said &quot;yes&quot; &amp; left at 10-11 o'clock.", 'He said "yes" & left at 10-11 o\'clock.'),
    ("  Mehrere   Leute  stehen\tvor einem Gebäude. ", "Mehrere Leute stehen vor einem Gebäude."),
    ("Ein Mädchen in einem rosa Kleid klettert eine Treppe hinauf.", "Ein kleines Mädchen klettert in ein Spielhaus aus Holz."),
    ("l'homme à la veste bleue regarde l'océan", "L'homme en veste bleue regarde l'océan."),
]

TOKENIZE = [
    "Hello, world. 3.14 and 1,000 - 2-3 items; (a) [b] {c} <d> e/f g@h",
    "end.", "U.S.A.", "x..y", "a,b,c", "5-", "-5", "naïve café — “quoted” …",
    "&lt;tag&gt; &quot;x&quot; &amp;amp;", "line one-\nline two\nthree", "tabs\tand  spaces  ",
]

def corpus(pairs):
    hyps = [h for h, _ in pairs]
    refs = [r for _, r in pairs]
    bleu = sacrebleu.corpus_bleu(hyps, [refs])
    chrf = sacrebleu.corpus_chrf(hyps, [refs])
    return {"hypotheses": hyps, "references": refs, "bleu": bleu.score, "precisions": bleu.precisions,
            "brevity_penalty": bleu.bp, "hyp_len": bleu.sys_len, "ref_len": bleu.ref_len, "chrf": chrf.score}

tok = Tokenizer13a()
out = {
    "sacrebleu_version": sacrebleu.__version__,
    "corpora": [corpus(PAIRS), corpus(PAIRS[:3]), corpus(PAIRS[5:8]), corpus([PAIRS[6]]), corpus([("Hund", "Katze")])],
    "tokenize_13a": [{"input": s, "tokens": tok(s.rstrip()).split()} for s in TOKENIZE],
}
print(json.dumps(out, ensure_ascii=False, indent=1))
