"""Regression statistics: paired bootstrap standard errors and the verdict per (task, metric)."""

from __future__ import annotations

import pytest

from evaluation.lm_eval_compare import _per_doc, bootstrap_se, compare_scores, verdict_lines

pytestmark = pytest.mark.unit


def test_bootstrap_se_matches_the_analytic_standard_error() -> None:
    values = [0.0, 1.0] * 50  # p = 0.5, n = 100: SE = sqrt(p(1-p)/n) = 0.05
    assert bootstrap_se(values, iters=2000) == pytest.approx(0.05, abs=0.006)


def test_verdict_unchanged_within_two_se_and_changed_beyond() -> None:
    base = {"mmlu": {"acc": {i: float(i % 2) for i in range(200)}}}
    flip = {i for i in range(200) if i % 10 in (0, 5)}  # 10% of the answers flip, as many up as down
    same = {"mmlu": {"acc": {i: 1.0 - (i % 2) if i in flip else float(i % 2) for i in range(200)}}}
    worse = {"mmlu": {"acc": {i: 0.0 if i % 3 else float(i % 2) for i in range(200)}}}
    c = compare_scores(base, same)["mmlu"]["acc"]
    assert c["n"] == 200 and c["verdict"] == "unchanged within 2 SE" and abs(c["delta"]) <= 2 * c["delta_se"]
    w = compare_scores(base, worse)["mmlu"]["acc"]
    assert w["delta"] < 0 and w["verdict"].startswith("changed by -") and abs(w["delta"]) > 2 * w["delta_se"]
    assert w["base_se"] > 0 and w["other_se"] > 0
    assert verdict_lines({"mmlu": {"acc": w}})[0].startswith("mmlu/acc: base 0.5000 ->")


def test_per_doc_reads_lm_eval_samples() -> None:
    samples = {"t": [{"doc_id": 0, "acc": 1.0, "acc_norm": 0.0, "target": 2, "resps": []},
                     {"doc_id": 1, "acc": 0.0, "acc_norm": 1.0, "filter": "none"}]}
    assert _per_doc(samples) == {"t": {"acc": {0: 1.0, 1: 0.0}, "acc_norm": {0: 0.0, 1: 1.0}}}
