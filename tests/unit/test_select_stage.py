"""The select stage: length-biased sampling needs a population; duplicates dropped with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from selflen.stages import select
from selflen.store import Stage

pytestmark = pytest.mark.unit


def _rows(n: int) -> list[dict]:
    return [
        {
            "id": f"x{i}",
            "instruction": "q",
            "response": "a",
            "words_before": 1,
            "words": 10 + i,
            "extended": f"distinct text number {i} " + "word " * (i + 3),
        }
        for i in range(n)
    ]


def test_a_single_item_is_not_dropped_by_the_rank_rule(tmp_path: Path) -> None:
    out = select.run(
        Stage(tmp_path / "s", "s", "h"), _rows(1), length_biased=True, dedup_threshold=0.8, seed=0, iteration=1
    )
    assert out["counts"] == {"inputs": 1, "kept": 1}


def test_rank_rule_applies_from_min_items(tmp_path: Path) -> None:
    out = select.run(
        Stage(tmp_path / "s", "s", "h"),
        _rows(40),
        length_biased=True,
        dedup_threshold=0.95,
        seed=0,
        iteration=1,
        min_items=10,
    )
    assert out["drops"].get("length_bias", 0) >= 8  # the shortest ~21 % are always dropped
    records = Stage.read_records(tmp_path / "s")
    assert all(r["status"] == "dropped" for r in records if r["words"] < 18)
