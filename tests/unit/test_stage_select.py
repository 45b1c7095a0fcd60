"""The select stage: length-biased sampling needs a population; duplicates dropped with a reason."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from selflen.stages import select
from selflen.store import Stage
from tests.defaults import config, group

pytestmark = pytest.mark.unit


def _select(text_key: str, biased: bool, unit: str, min_items: int, dedup: float | None) -> select.SelectSettings:
    return select.SelectSettings(select=group("select", length_unit=unit, min_items=min_items, dedup_threshold=dedup),
                                 text_key=text_key, length_biased=biased, seed=0, iteration=1)


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
    s = _select("extended", True, "chars", 10, 0.8)
    out = select.run(Stage(tmp_path / "s", "s", "h"), _rows(1), s)
    assert out.counts == {"records": 1, "ok": 1, "dropped": 0} and out.extra["rank_rule"] is False


def test_rank_rule_applies_from_min_items(tmp_path: Path) -> None:
    s = _select("extended", True, "chars", 10, 0.95)
    out = select.run(Stage(tmp_path / "s", "s", "h"), _rows(40), s)
    assert out.extra["rank_rule"] is True
    assert out.drops.get("length_bias", 0) >= 8  # the shortest ~21 % are always dropped
    records = Stage.read_records(tmp_path / "s")
    assert all(r["status"] == "dropped" for r in records if r["words"] < 18)


def test_ranks_by_characters_or_words(tmp_path: Path) -> None:
    """The reference ranks by len(str); with length_unit=words a long-worded but short-charactered text wins."""
    rows = [{"id": f"x{i}", "response": "x" * (100 - i) if i < 20 else "a " * (10 + i), "words": 1 if i < 20
             else 10 + i} for i in range(40)]
    by_chars = select.lengths(rows, _select("response", True, "chars", 10, 0.8))
    by_words = select.lengths(rows, _select("response", True, "words", 10, 0.8))
    assert by_chars[0] == 100 and by_words[0] == 1


def test_a_resumed_select_keeps_what_an_uninterrupted_one_keeps(tmp_path: Path) -> None:
    """A crash after some records were written: the rest are decided over all items, not over the remainder."""
    s = _select("extended", True, "chars", 10, 0.95)
    rows = _rows(40)
    whole = select.run(Stage(tmp_path / "whole", "s", "h"), rows, s)
    expected = {r["id"]: r["status"] for r in Stage.read_records(tmp_path / "whole")}
    partial = Stage(tmp_path / "part", "s", "h")
    for r in Stage.read_records(tmp_path / "whole")[:25]:  # what was on disk when the run died
        partial.append(r)
    resumed = select.run(Stage(tmp_path / "part", "s", "h"), rows, s)
    assert {r["id"]: r["status"] for r in Stage.read_records(tmp_path / "part")} == expected
    assert resumed.extra["rank_rule"] is True and resumed.counts == whole.counts


def test_no_dedup_keeps_duplicates(tmp_path: Path) -> None:
    rows = _rows(3)
    rows[1]["extended"] = rows[0]["extended"]
    off = _select("extended", False, "chars", 10, None)
    on = _select("extended", False, "chars", 10, 0.8)
    assert select.run(Stage(tmp_path / "off", "s", "h"), rows, off).counts["ok"] == 3
    assert select.run(Stage(tmp_path / "on", "s", "h"), rows, on).drops == {"duplicate": 1}


def test_each_selection_has_its_own_length_bias_switch() -> None:
    def biased(**changes: bool) -> tuple[bool, bool]:
        cfg = config()
        cfg.select = replace(cfg.select, **changes)
        return (select.settings(cfg, 1, "response").length_biased, select.settings(cfg, 1, "extended").length_biased)

    assert biased() == (True, True)  # the reference: drop_short after both steps
    assert biased(length_biased_responses=False) == (False, True)
    assert biased(length_biased_extensions=False) == (True, False)
    assert biased(length_biased_responses=False, length_biased_extensions=False) == (False, False)
    # each selection's hash holds its own switch only: turning the second off keeps the first stage's identity
    from selflen.groups import identity

    cfg = config()
    first = identity(select.settings(cfg, 1, "response"))
    cfg.select = replace(cfg.select, length_biased_extensions=False)
    assert identity(select.settings(cfg, 1, "response")) == first
    assert identity(select.settings(cfg, 1, "extended")) != identity(select.settings(config(), 1, "extended"))
