"""The LLM judge with a scripted fake engine: parsing, bounded retries, failure accounting and caching."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from evaluation.judge import (
    RUBRICS,
    Judge,
    JudgeCache,
    JudgeParseError,
    cache_key,
    extract_json,
    judge_summary,
    parse_scores,
    rubric_for,
)
from evaluation.scorers import LBW_DIMENSIONS, LONGEN_DIMENSIONS
from selflen.engines.base import Completion, Engine, Request, Result, error_result

pytestmark = pytest.mark.unit

LONGEN = RUBRICS["longen"]
LBW = RUBRICS["longbench_write"]
GOOD_LONGEN = json.dumps({"Analysis": "Solid {structure}.", **dict(zip(LONGEN_DIMENSIONS, range(2, 9), strict=True))})


class ScriptedEngine(Engine):
    """Replies from a script: ``script[query]`` is a list of outputs, one per attempt (the last repeats)."""

    def __init__(self, script: dict[str, list[str | None]]) -> None:
        self.script, self.calls, self.requests, self.params = script, 0, 0, []

    def generate(self, requests: Sequence[Request], desc: str | None = None) -> list[Result]:
        self.calls += 1
        self.requests += len(requests)
        out = []
        for req in requests:
            self.params.append(req.params)
            prompt = req.messages[0]["content"]
            key = next(k for k in self.script if f"\n{k}\n" in prompt)
            replies = self.script[key]
            text = replies.pop(0) if len(replies) > 1 else replies[0]
            out.append(error_result("boom") if text is None else Result([Completion(text, 5, "stop")]))
        return out

    def add_adapter(self, name: str, path: str) -> None:
        raise NotImplementedError


def rows(*queries: str) -> list[dict[str, str]]:
    return [{"query": q, "response": f"answer to {q}"} for q in queries]


# ---------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "text",
    [
        GOOD_LONGEN,
        f"```json\n{GOOD_LONGEN}\n```",
        f"Here is my verdict:\n{GOOD_LONGEN}\nLet me know if you need more.",
        GOOD_LONGEN.replace('"', "'"),
        GOOD_LONGEN.replace('"Relevance": 2', '"relevance": "2/10"').replace('"Clarity": 6', '"clarity": "6"'),
        "Relevance: 2\nCoherence: 3\nAccuracy = 4\nConsistency: 5/10\nClarity: 6\nCreativity: 7\nEngagement: 8",
    ],
)
def test_parse_variants(text: str) -> None:
    assert parse_scores(text, LONGEN) == dict(zip(LONGEN_DIMENSIONS, range(2, 9), strict=True))


def test_parse_lbw_keys_with_spaces_and_underscores() -> None:
    obj = {
        "Relevance": 5,
        "Accuracy": 4,
        "Coherence": 3,
        "Clarity": 2,
        "breadth_and_depth": 1,
        "reading experience": 5,
    }
    assert parse_scores(json.dumps(obj), LBW)["Breadth and Depth"] == 1
    assert parse_scores(json.dumps(obj), LBW)["Reading Experience"] == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("I cannot rate this.", "missing dimensions"),
        (GOOD_LONGEN.replace('"Relevance": 2', '"Relevance": 11'), "outside 1-10"),
        (GOOD_LONGEN.replace('"Relevance": 2', '"Relevance": "great"'), "unreadable"),
        (GOOD_LONGEN.replace('"Relevance": 2', '"Relevance": true'), "boolean"),
    ],
)
def test_parse_failures(text: str, message: str) -> None:
    with pytest.raises(JudgeParseError, match=message):
        parse_scores(text, LONGEN)


def test_extract_json_takes_last_object_and_ignores_braces_in_strings() -> None:
    assert extract_json('{"a": 1} then {"a": "x}y", "b": 2}') == {"a": "x}y", "b": 2}
    assert extract_json("{not json at all}") is None


def test_rubric_prompts_name_every_dimension_and_ignore_length() -> None:
    for rubric in (LONGEN, LBW):
        text = rubric.template()
        assert "{{query}}" in text and "{{response}}" in text
        assert all(f'"{d}"' in text for d in rubric.dimensions)
        assert "length" in text.lower() and "JSON" in text
    assert len(LONGEN.dimensions) == 7 and (LONGEN.low, LONGEN.high) == (1, 10)
    assert len(LBW.dimensions) == 6 and (LBW.low, LBW.high) == (1, 5)
    assert rubric_for("longwrite_ruler") is LBW and rubric_for("longen") is LONGEN


# ---------------------------------------------------------------- runs
def test_parse_failure_is_counted_not_dropped(tmp_path: Path) -> None:
    engine = ScriptedEngine({"q1": [GOOD_LONGEN], "q2": ["no idea"]})
    judge = Judge(engine, "judge-a", "longen", tmp_path / "cache.jsonl", max_attempts=3)
    out = judge.judge_rows(rows("q1", "q2"))
    assert len(out) == 2
    assert out[0]["quality"] == pytest.approx(5.0) and out[0]["judge_error"] is None
    assert out[1]["quality"] is None and out[1]["judge_scores"] is None
    assert "unparsable" in out[1]["judge_error"] and out[1]["judge_attempts"] == 3
    assert engine.calls == 3 and engine.requests == 4  # q2 retried twice; bounded
    summary = judge_summary(out, LONGEN, "judge-a")
    assert (summary["n"], summary["scored"], summary["parse_failures"], summary["failure_rate"]) == (2, 1, 1, 0.5)
    assert summary["quality"] == pytest.approx(5.0) and summary["dimensions"]["Engagement"] == 8


def test_first_try_is_greedy_and_retries_sample(tmp_path: Path) -> None:
    engine = ScriptedEngine({"q": ["garbage", GOOD_LONGEN]})
    out = Judge(engine, "j", "longen", None, max_attempts=2).judge_rows(rows("q"))
    assert out[0]["judge_error"] is None and out[0]["judge_attempts"] == 2
    assert engine.params[0].temperature == 0.0 and engine.params[1].temperature > 0.0


def test_cache_makes_rescoring_free(tmp_path: Path) -> None:
    cache = tmp_path / "judge" / "cache.jsonl"
    first = ScriptedEngine({"q1": [GOOD_LONGEN], "q2": ["nonsense"]})
    Judge(first, "judge-a", "longen", cache, max_attempts=2).judge_rows(rows("q1", "q2", "q1"))
    assert first.requests == 3  # q1 once (deduplicated), q2 twice
    again = ScriptedEngine({"q1": [GOOD_LONGEN], "q2": [GOOD_LONGEN]})
    out = Judge(again, "judge-a", "longen", cache, max_attempts=2).judge_rows(rows("q1", "q2"))
    assert again.calls == 0
    assert all(r["judge_cached"] for r in out) and out[1]["judge_error"] is not None  # the cached failure stays
    other_model = ScriptedEngine({"q1": [GOOD_LONGEN], "q2": [GOOD_LONGEN]})
    Judge(other_model, "judge-b", "longen", cache).judge_rows(rows("q1", "q2"))
    assert other_model.requests == 2
    refreshed = ScriptedEngine({"q1": [GOOD_LONGEN], "q2": [GOOD_LONGEN]})
    Judge(refreshed, "judge-a", "longen", cache).judge_rows(rows("q2"), refresh=True)
    assert refreshed.requests == 1
    lines = [json.loads(x) for x in cache.read_text().splitlines()]
    assert {r["key"] for r in lines} >= {cache_key("judge-a", Judge(again, "judge-a").prompt_for(rows("q1")[0]))}


def test_engine_errors_are_retried_counted_and_not_cached(tmp_path: Path) -> None:
    cache = tmp_path / "c.jsonl"
    engine = ScriptedEngine({"q": [None]})
    out = Judge(engine, "j", "longen", cache, max_attempts=2).judge_rows(rows("q"))
    assert out[0]["judge_error"].startswith("engine error") and engine.requests == 2
    assert judge_summary(out, LONGEN)["engine_failures"] == 1
    assert not cache.exists() or cache.read_text() == ""


def test_lbw_quality_is_s_q(tmp_path: Path) -> None:
    verdict = json.dumps(dict(zip(LBW_DIMENSIONS, [5, 5, 3, 3, 1, 1], strict=True)))
    engine = ScriptedEngine({"p": [verdict]})
    out = Judge(engine, "j", "longbench_write").judge_rows([{"prompt": "p", "response": "r"}])
    assert out[0]["quality"] == pytest.approx((100 + 100 + 50 + 50 + 0 + 0) / 6)


def test_prompt_rendering_and_truncation() -> None:
    judge = Judge(ScriptedEngine({}), "j", "longen", max_response_chars=5)
    prompt = judge.prompt_for({"query": "Write {{response}}", "response": "abcdefghij"})
    assert "Write {{response}}" in prompt and "abcde\n[... answer truncated" in prompt and "fghij" not in prompt
    with pytest.raises(ValueError, match="query"):
        judge.prompt_for({"response": "x"})
    with pytest.raises(ValueError):
        Judge(ScriptedEngine({}), "j", max_attempts=0)


def test_judge_cache_keeps_good_lines_and_skips_bad_ones(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "cache.jsonl"
    good = {"key": "k1", "scores": {"relevance": 3}}
    path.write_text(json.dumps(good) + "\n{torn\n" + json.dumps({"scores": {}}) + "\n"
                    + json.dumps({"key": "k2", "scores": {}}) + "\n", encoding="utf-8")
    cache = JudgeCache(path)
    assert cache.get("k1") == good and cache.get("k2") == {"key": "k2", "scores": {}}
    assert "_line" not in cache.get("k1") and cache.get("missing") is None
    assert "skipping 2 unreadable line(s)" in caplog.text
