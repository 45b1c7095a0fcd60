"""Hooks for selflen's lm-eval tasks: the metric function of the long-output tasks and the mini-MC loader."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
try:  # lm_eval loads this file by path; make the repository importable when selflen is not installed
    import evaluation  # noqa: F401
except ImportError:  # pragma: no cover - depends on how lm_eval was launched
    sys.path.insert(0, str(_HERE.parents[1]))

from evaluation import scorers  # noqa: E402
from evaluation.counters import count_words_longbench_write, count_words_longen  # noqa: E402


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Length metrics of one generation: LonGen rows (``constraint``) get LonGen's score in [0, 1], LongBench-Write
    rows (``length``) get S_l in [0, 100]; ``hit`` is 1.0 inside the target window (LonGen's window, or the
    required length ±10 % for LongBench-Write)."""
    text = results[0] if results else ""
    if "constraint" in doc:
        words = count_words_longen(text)
        a, b = scorers.longen_window(str(doc["type"]), str(doc["constraint"]))
        score = scorers.longen_score(words, a, b)
    else:
        words = count_words_longbench_write(text)
        required = float(doc["length"])
        score = scorers.lbw_length_score(required, words)
        a, b = scorers.lifebench_window(required, "equal", 0.1)
    return {"length_score": score, "words": float(words), "hit": float(a <= words <= b)}


def load_mini_mc(**kwargs: Any) -> Any:
    """The mini multiple-choice set next to this file, as a ``DatasetDict`` with one ``test`` split."""
    import datasets

    rows = [json.loads(line) for line in (_HERE / "mini_mc.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
