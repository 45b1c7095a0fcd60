"""``python -m evaluation generate`` end to end with a real engine (``hf``) on the tiny random model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_generate_scores_and_judges_with_tiny_model(tmp_path: Path, tiny_model: Path) -> None:
    from evaluation.__main__ import main
    from evaluation.benchmarks import benchmark_file

    assert benchmark_file("longen").is_file()  # the packaged copy: never skipped
    model = str(tiny_model)
    out = tmp_path / "eval"
    argv = [
        "generate", "--benchmark", "longen", "--backend", "hf", "--model", model,
        "--engine-arg", "device=cpu", "--engine-arg", "batch_size=2",
        "--language", "en", "--type", "below", "--n-per-cell", "1", "--limit", "2", "--max-new-tokens", "8",
        "--judge-model", model, "--judge-engine-arg", "device=cpu", "--judge-attempts", "1",
        "--judge-max-new-tokens", "8", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    for name in ("responses.jsonl", "scored.jsonl", "summary.json", "scatter.png", "judge_cache.jsonl"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 2 and summary["generation"]["outputs"] == 2
    assert set(summary["by_type"]) == {"below"} and summary["counter"] == "longen"
    assert summary["judge"]["n"] == 2 and summary["judge"]["parse_failures"] == 2  # random model: counted
    assert summary["finish"]["length_rate"] + summary["finish"]["early_stop_rate"] <= 1.0
    scored = [json.loads(x) for x in (out / "scored.jsonl").read_text().splitlines()]
    assert all(r["tokens"] <= 8 and r["finish_reason"] in ("stop", "length") for r in scored)
