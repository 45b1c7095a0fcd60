"""The judge through a real (random, tiny) model on the ``hf`` engine: its output is garbage, so every item
must end as a counted parse failure — kept, not dropped, not defaulted — and a re-run must hit the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_tiny_model_judge_failures_are_counted(tmp_path: Path, tiny_model: Path) -> None:
    from evaluation.judge import Judge, judge_summary
    from selflen.engines import build_engine
    from selflen.engines.base import SamplingParams

    model = tiny_model
    rows = [
        {"query": "Write a short poem about rain.", "response": "Rain taps the roof all night."},
        {"query": "写一段关于春天的文字。", "response": "春天来了，花都开了。"},
    ]
    params = SamplingParams(temperature=0.0, max_new_tokens=16)
    cache = tmp_path / "judge_cache.jsonl"
    with build_engine("hf", str(model), device="cpu", batch_size=2) as engine:
        judge = Judge(engine, "tiny-random", "longen", cache, max_attempts=2, params=params)
        judged = judge.judge_rows(rows)
        assert judge.requests_sent == 4  # 2 items x 2 bounded attempts
        assert len(judged) == 2
        assert all(r["quality"] is None and r["judge_scores"] is None for r in judged)
        assert all(r["judge_error"].startswith("unparsable") and r["judge_attempts"] == 2 for r in judged)
        summary = judge_summary(judged, judge.rubric, "tiny-random")
        assert summary["n"] == 2 and summary["parse_failures"] == 2 and summary["scored"] == 0
        assert summary["quality"] is None

        again = Judge(engine, "tiny-random", "longen", cache, max_attempts=2, params=params)
        rejudged = again.judge_rows(rows)
        assert again.requests_sent == 0 and all(r["judge_cached"] for r in rejudged)
