#!/usr/bin/env python3
"""Fixture for the Swift accuracy intervals (`BinomialStatistics`): SciPy's Wilson score interval
(95%, no continuity correction) and exact one-sided binomial test (`alternative="greater"`) for
counts like the held-out accuracies `swiftgpt eval` prints, from tiny sets to large ones.

    pip install scipy
    python3 Tools/reference/binomial_fixture.py > Tests/EvaluationTests/Fixtures/binomial.json
"""
import json
import scipy
from scipy.stats import binomtest

CASES = [(0, 1, 0.5), (1, 1, 0.5), (0, 10, 0.5), (10, 10, 0.5), (7, 10, 0.5), (3, 7, 0.5),
         (424, 800, 0.5), (428, 800, 0.5), (400, 800, 0.5), (1060, 2000, 0.5), (698, 872, 0.5),
         (6000, 10000, 0.5), (40, 100, 0.25), (13, 50, 0.1), (99990, 100000, 0.9999)]

out = {"scipy_version": scipy.__version__, "cases": []}
for k, n, p in CASES:
    t = binomtest(k, n, p, alternative="greater")
    ci = binomtest(k, n, p).proportion_ci(confidence_level=0.95, method="wilson")
    out["cases"].append({"successes": k, "total": n, "chance": p, "p_greater": t.pvalue,
                         "wilson_low": ci.low, "wilson_high": ci.high})
print(json.dumps(out, indent=1))
