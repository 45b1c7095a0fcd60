"""The length-control stage, driven by a scripted engine: every pooled answer gets a constraint its own length
satisfies, the base model's rewrite is used only when it states the constraint, the template otherwise, and the
stage writes the SFT file the final fine-tune reads; a killed stage resumes without asking twice."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from selflen.stages import length_control
from selflen.stages.common import Chat
from selflen.store import Stage
from tests.defaults import config, group
from tests.scripted import ScriptedEngine, user_text

pytestmark = pytest.mark.unit
POOLED = [{"id": f"k1-i{i}-s0", "query": f"Write about subject {i}.", "answer": "word " * (120 + 40 * i),
           "words": 120 + 40 * i, "source": "iter_1/select"} for i in range(6)]


def _settings(rewrite: str = "llm", mix: dict | None = None) -> length_control.LengthControlSettings:
    mix = mix or {"about": 0.4, "range": 0.25, "above": 0.1, "below": 0.25}
    lc = group("length_control", rewrite=rewrite, mix=mix)
    return length_control.LengthControlSettings(length_control=lc, min_words=100, max_words=1000, max_new_tokens=64,
                                                language="en", chat=Chat("Be brief."), seed=0)


def _rewriter(req) -> str:
    """States the constraint for even subjects (accepted), forgets it for odd ones (template fallback)."""
    prompt = user_text(req)
    subject = int(re.search(r"subject (\d+)", prompt).group(1))
    numbers = re.findall(r"\d+(?= words)", prompt) or ["0"]
    return f"Please write about subject {subject} in {numbers[-1]} words." if subject % 2 == 0 else \
        f"Please write about subject {subject}."


def _stage(tmp_path: Path) -> Stage:
    return Stage(tmp_path / "length_control", "final/length_control", "h")


def test_each_constraint_holds_for_its_own_answer_and_rewrites_fall_back(tmp_path: Path) -> None:
    engine = ScriptedEngine(_rewriter)
    result = length_control.run(_stage(tmp_path), POOLED, _settings(), engine)
    records = {r["id"]: r for r in _stage(tmp_path).records()}
    assert set(records) == {p["id"] for p in POOLED} and result.counts["examples"] == 6
    for r in records.values():
        low, high = r["window"]
        assert low <= r["words"] <= high, r  # the answer satisfies the constraint it is trained to follow
        assert r["constraint"] in r["query"] or r["rewrite"] == "llm"
    subject = {rid: int(rid.split("-i")[1].split("-")[0]) for rid in records}
    assert {rid for rid, r in records.items() if r["rewrite"] == "llm"} <= {rid for rid, n in subject.items()
                                                                            if n % 2 == 0}
    assert all(r["rewrite"] == "template" for rid, r in records.items() if subject[rid] % 2)
    assert result.counts["rewrite_llm"] >= 1 and result.counts["rewrite_template"] >= 3  # odd subjects: 3
    assert len(engine.calls) == 1 and all(req.params.temperature == 0.0 and req.params.max_new_tokens == 64
                                          for req in engine.requests)
    sft = [json.loads(line) for line in (_stage(tmp_path).dir / length_control.LC_FILE).read_text().splitlines()]
    assert [m["role"] for m in sft[0]["messages"]] == ["system", "user", "assistant"]
    assert {row["messages"][1]["content"] for row in sft} == {r["query"] for r in records.values()}


def test_template_rewrite_asks_no_engine_and_the_mix_picks_the_kinds(tmp_path: Path) -> None:
    engine = ScriptedEngine(_rewriter)
    result = length_control.run(_stage(tmp_path), POOLED, _settings("template", {"range": 1.0}), engine)
    assert engine.calls == [] and result.counts["kind_range"] == 6 and result.counts["rewrite_template"] == 6


def test_a_resumed_stage_keeps_its_records_and_asks_only_for_the_rest(tmp_path: Path) -> None:
    first = ScriptedEngine(_rewriter)
    length_control.run(_stage(tmp_path), POOLED[:4], _settings(), first)
    kept = {r["id"]: r["query"] for r in _stage(tmp_path).records()}
    again = ScriptedEngine(_rewriter)
    length_control.run(_stage(tmp_path), POOLED, _settings(), again)
    assert len(again.requests) == 2  # the two it did not have
    assert {r["id"]: r["query"] for r in _stage(tmp_path).records()}.items() >= kept.items()


def test_settings_take_the_pool_bounds_and_budget_from_the_length_group() -> None:
    cfg = config("length=paper")
    s = length_control.settings(cfg)
    assert (s.min_words, s.max_words, s.max_new_tokens) == (2000, 8000, 512)
    assert s.length_control is cfg.length_control
