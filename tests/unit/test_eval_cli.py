"""The ``python -m evaluation`` CLI and the ``evaluation.api`` functions behind it.

The reference checks recompute LonGen's and LongBench-Write's formulas here, written out plainly and
independently of ``evaluation``, and compare per row and per type.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from evaluation import api
from evaluation.__main__ import main
from evaluation.benchmarks import benchmark_file
from selflen.engines.base import Completion, Engine, Request, Result

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
VOCAB = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]


# ---------------------------------------------------------------- independent reference formulas
def ref_longen_words(text: str) -> int:
    cjk = "[\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]"
    return len(re.findall(cjk, text)) + len(re.sub(cjk, " ", text).split())


def ref_longen_window(type_: str, constraint: str) -> tuple[float, float]:
    nums = [int(x) for x in re.findall(r"\d+", constraint)]
    if type_ == "about":
        return nums[0] * 0.8, nums[0] * 1.2
    if type_ == "range":
        return nums[0], nums[1]
    if type_ == "above":
        return nums[0], nums[0] * 1.5
    return nums[0] * 0.5, nums[0]


def ref_longen_score(length: int, a: float, b: float) -> float:
    if length < a:
        return max(0.0, 2 * length / a - 1)
    if length > b:
        return max(0.0, 3 - 2 * length / b)
    return 1.0


def ref_lbw_words(text: str) -> int:
    return len(re.findall("[\u4e00-\u9fff]", text)) + len(re.findall(r"\b[a-zA-Z]+\b", text))


def ref_lbw_score(required: float, produced: float) -> float:
    if produced == 0:
        return 0.0
    if produced > required:
        return 100 * max(0.0, 1 - (produced / required - 1) / 3)
    return 100 * max(0.0, 1 - (required / produced - 1) / 2)


# ---------------------------------------------------------------- helpers
def synthetic_text(n_words: int, chinese: bool) -> str:
    """About ``n_words`` words: Latin words in sentences, or ideographs with full-width punctuation."""
    if chinese:
        return "".join("，" if i % 10 == 9 else "字写文章"[i % 4] for i in range(n_words))
    words = [VOCAB[i % len(VOCAB)] + ("." if i % 12 == 11 else "") for i in range(n_words)]
    return " ".join(words)


def write_jsonl(path: Path, rows: Sequence[dict[str, Any] | str]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_score(tmp_path: Path, benchmark: str, rows: Sequence[dict[str, Any] | str], *extra: str) -> tuple[int, Path]:
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    argv = ["score", "--benchmark", benchmark, "--input", str(src), "--output", str(tmp_path / "scored.jsonl"),
            "--summary", str(tmp_path / "summary.json"), *extra]  # fmt: skip
    return main(argv), tmp_path


def read_out(tmp_path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = [json.loads(x) for x in (tmp_path / "scored.jsonl").read_text(encoding="utf-8").splitlines()]
    return rows, json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))


def load_raw(name: str) -> list[dict[str, Any]]:
    path = benchmark_file(name)
    assert path.is_file(), f"{name}: the packaged copy (selflen/benchmarks) is missing"
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


# ---------------------------------------------------------------- reference equality
def test_longen_score_matches_reference_formulas(tmp_path: Path) -> None:
    raw = load_raw("longen")
    # lengths on and around the borders: 0, a/2, 0.75a, a, the midpoint, b, 1.25b, 1.5b, 2b
    picks = [lambda a, b: 0, lambda a, b: a / 2, lambda a, b: 0.75 * a, lambda a, b: a, lambda a, b: (a + b) / 2,
             lambda a, b: b, lambda a, b: 1.25 * b, lambda a, b: 1.5 * b, lambda a, b: 2 * b]  # fmt: skip
    rows = []
    for i, r in enumerate(raw):
        length = int(picks[i % len(picks)](*ref_longen_window(r["type"], r["constraint"])))
        rows.append(dict(r, response=synthetic_text(length, r["language"] == "zh")))
    code, out = run_score(tmp_path, "longen", rows)
    assert code == 0
    scored, summary = read_out(out)
    assert len(scored) == 240 and summary["n"] == 240 and summary["counter"] == "longen"
    per_type: dict[str, list[float]] = defaultdict(list)
    for row in scored:
        words = ref_longen_words(row["response"])
        score = ref_longen_score(words, *ref_longen_window(row["type"], row["constraint"]))
        assert row["words"] == words
        assert row["score"] == pytest.approx(score, abs=1e-12)
        per_type[row["type"]].append(score)
    for type_, scores in per_type.items():
        assert summary["by_type"][type_]["score"] == pytest.approx(sum(scores) / len(scores), abs=1e-12)
        assert summary["by_type"][type_]["n"] == 60
    all_scores = [x for v in per_type.values() for x in v]
    assert summary["overall"]["score"] == pytest.approx(sum(all_scores) / len(all_scores))
    assert 0 < summary["overall"]["score"] < 1
    assert {0.0, 0.5, 1.0} <= {round(r["score"], 12) for r in scored}  # the borders were exercised
    assert summary["flagged"] == 4 and summary["overall_unflagged"]["n"] == 236
    assert set(summary["by_language"]) == {"zh", "en"} and set(summary["by_bucket"]) == {"2-4k", "4-6k", "6-8k"}


def test_longbench_write_score_matches_reference(tmp_path: Path) -> None:
    raw = load_raw("longbench_write")
    factors = [0.0, 0.2, 0.5, 0.9, 1.0, 1.5, 2.5, 4.0, 5.0]
    rows = []
    for i, r in enumerate(raw):
        chinese = bool(re.search("[\u4e00-\u9fff]", r["prompt"]))
        rows.append(dict(r, response=synthetic_text(int(r["length"] * factors[i % len(factors)]), chinese)))
    code, out = run_score(tmp_path, "longbench_write", rows)
    assert code == 0
    scored, summary = read_out(out)
    per_type: dict[str, list[float]] = defaultdict(list)
    for row in scored:
        words = ref_lbw_words(row["response"])
        assert row["words"] == words
        assert row["score"] == pytest.approx(ref_lbw_score(row["length"], words))
        per_type[row["type"]].append(ref_lbw_score(row["length"], words))
    assert len(per_type) == 7
    for type_, scores in per_type.items():
        assert summary["by_type"][type_]["score"] == pytest.approx(sum(scores) / len(scores))
    assert summary["score_scale"] == 100.0 and summary["counter"] == "longbench_write"
    assert set(summary["by_language"]) == {"zh", "en"}


# ---------------------------------------------------------------- malformed rows
GOOD = {"type": "about", "constraint": "around 10 words", "response": "one two three four five six seven eight"}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ('{"type": "about", "constraint": ', "bad JSON"),
        (json.dumps({"type": "about", "constraint": "around 10 words"}), "missing field 'response'"),
        (json.dumps({"type": "about", "response": "x"}), "missing field 'constraint'"),
        (json.dumps({"type": "about", "constraint": "about ten words", "response": "x"}), "no number"),
        (json.dumps({"type": "weird", "constraint": "10", "response": "x"}), "unknown LonGen type"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed_row_stops_with_line_number(
    tmp_path: Path, bad: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run_score(tmp_path, "longen", [GOOD, GOOD, bad, GOOD])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{tmp_path / 'in.jsonl'}:3:" in err and reason in err and "--skip-bad" in err


def test_skip_bad_counts_rows(tmp_path: Path) -> None:
    bad = ["{oops", json.dumps({"type": "about", "response": "x"}), json.dumps({"length": 0, "response": "x"})]
    code, out = run_score(tmp_path, "longen", [GOOD, bad[0], GOOD, bad[1]], "--skip-bad")
    assert code == 0
    scored, summary = read_out(out)
    assert summary["n"] == 2 and len(scored) == 2
    assert summary["bad_rows"] == 2 and [b["line"] for b in summary["bad_row_lines"]] == [2, 4]
    code, out = run_score(tmp_path, "longbench_write", [bad[2]], "--skip-bad")
    assert code == 2  # no usable row: refused, not a score of None (issue 33)


def test_counter_override_and_finish_accounting(tmp_path: Path) -> None:
    rows = [
        dict(GOOD, response="你好，世界。", finish_reason="stop"),
        dict(GOOD, response="word " * 12, finish_reason="length"),
    ]
    code, out = run_score(tmp_path, "longen", rows, "--counter", "unicode")
    assert code == 0
    scored, summary = read_out(out)
    assert [r["words"] for r in scored] == [4, 12] and summary["counter"] == "unicode"
    assert summary["finish"]["length_rate"] == 0.5 and summary["finish"]["early_stop_rate"] == 0.5


def test_missing_input_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "score",
        "--benchmark",
        "longen",
        "--input",
        str(tmp_path / "nope.jsonl"),
        "--output",
        "o",
        "--summary",
        "s",
    ]
    assert main(argv) == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_module_entry_point_runs(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", ["not json"])
    cmd = [sys.executable, "-m", "evaluation", "score", "--benchmark", "lifebench", "--input", str(src),
           "--output", str(tmp_path / "o.jsonl"), "--summary", str(tmp_path / "s.json")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "in.jsonl:1" in proc.stderr


# ---------------------------------------------------------------- lifebench, variance, api
def test_lifebench_rows(tmp_path: Path) -> None:
    rows = [
        {"length": 10, "response": "one two three four five six seven eight nine ten"},
        {"length": 10, "mode": "at_most", "response": "one two"},
        {"length": 10, "mode": "at_least", "response": "one two"},
        {"type": "range", "constraint": "4-8 words", "response": "a b c d e f"},
    ]
    code, out = run_score(tmp_path, "lifebench", rows)
    assert code == 0
    scored, summary = read_out(out)
    assert [r["score"] for r in scored][:2] == [100.0, 100.0]
    assert scored[2]["score"] == pytest.approx(100 * 2.718281828459045 ** (5 * -0.8))
    assert scored[3]["required"] == 6.0 and scored[3]["position"] == "hit"
    assert summary["by_mode"]["equal"]["n"] == 2 and summary["by_mode"]["at_least"]["under_rate"] == 1.0
    assert summary["overall"]["mean_abs_deviation"] == pytest.approx((0 + 0.8 + 0.8 + 0) / 4)


def test_variance_over_samples() -> None:
    rows = [dict(GOOD, id="p1", response="w " * n) for n in (8, 12)] + [dict(GOOD, id="p2", response="w " * 10)]
    _, summary = api.score_rows(rows, "longen")
    assert summary["variance"] == {"prompts": 1, "mean_samples": 2.0, "mean_std": 2.0, "mean_cv": 0.2}


def test_required_words() -> None:
    assert api.required_words({"type": "range", "constraint": "2000-4000"}, "longen") == 3000.0
    assert api.required_words({"length": 500}, "longwrite_ruler") == 500.0
    assert api.required_words({"length": 500, "mode": "at_most"}, "lifebench") == 500.0
    with pytest.raises(KeyError, match="Available"):
        api.required_words({}, "mmlu")


def test_scatter_plot_writes_png(tmp_path: Path) -> None:
    scored, _ = api.score_rows([GOOD, dict(GOOD, response="")], "longen")
    path = api.scatter_plot(scored, tmp_path / "plots" / "s.png", "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- generate (fake engine)
class WordEngine(Engine):
    """Answers every request with ``words`` words; judge prompts get a valid JSON verdict."""

    def __init__(self, model: str, words: int = 30, **_: Any) -> None:
        self.words, self.calls, self._adapters = words, 0, {}

    def generate(self, requests: Sequence[Request], desc: str | None = None) -> list[Result]:
        self.calls += 1
        results = []
        for req in requests:
            content = req.messages[-1]["content"]
            if "Breadth and Depth" in content:
                text = json.dumps(
                    {
                        "Analysis": "ok",
                        **dict.fromkeys(
                            [
                                "Relevance",
                                "Accuracy",
                                "Coherence",
                                "Clarity",
                                "Breadth and Depth",
                                "Reading Experience",
                            ],
                            4,
                        ),
                    }
                )
            else:
                text = " ".join(["word"] * self.words)
            results.append(Result([Completion(text, self.words, "stop") for _ in range(req.params.n)]))
        return results  # fmt: skip

    def add_adapter(self, name: str, path: str) -> None:
        self._adapters[name] = path


def test_generate_with_fake_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_raw("longbench_write_en")
    monkeypatch.setattr("evaluation.runner.build_engine", lambda backend, model, **kw: WordEngine(model, **kw))
    out = tmp_path / "gen"
    argv = ["generate", "--benchmark", "longbench_write_en", "--backend", "hf", "--model", "fake", "--bucket", "0-500",
            "--limit", "3", "--samples", "2", "--engine-arg", "words=100", "--adapter", str(tmp_path),
            "--judge-model", "fake-judge", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    responses = [json.loads(x) for x in (out / "responses.jsonl").read_text().splitlines()]
    assert len(responses) == 6 and {r["sample"] for r in responses} == {0, 1}
    scored, summary = read_out_dir(out)
    assert all(r["words"] == 100 for r in scored)
    assert summary["generation"]["prompts"] == 3 and summary["generation"]["adapter"] == str(tmp_path)
    assert summary["variance"]["prompts"] == 3 and summary["variance"]["mean_cv"] == 0.0
    assert summary["judge"]["scored"] == 6 and summary["judge"]["quality"] == 75.0
    assert summary["overall"]["quality"] == 75.0 and "overall_S" in summary["overall"]
    assert (out / "scatter.png").is_file() and (out / "judge_cache.jsonl").is_file()


@pytest.mark.parametrize("mode", ["always", "never"])
def test_generate_serves_an_adapter_merged_or_per_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          mode: str) -> None:
    load_raw("longbench_write_en")
    built: list[tuple[str, dict[str, Any]]] = []
    engines: list[WordEngine] = []

    def build(backend: str, model: str, **kw: Any) -> WordEngine:
        built.append((model, kw))
        engines.append(WordEngine(model))
        return engines[-1]

    def merge(base: str, adapter: str, out_root: Path, label: str, dtype: str, **_: Any) -> Path:
        assert (base, adapter, dtype) == ("fake", str(tmp_path), "float32")
        return out_root / f"{label}-merged"

    monkeypatch.setattr("evaluation.runner.build_engine", build)
    monkeypatch.setattr("evaluation.runner.merged_model_dir", merge)
    out = tmp_path / "gen"
    argv = ["generate", "--benchmark", "longbench_write_en", "--backend", "vllm", "--model", "fake", "--limit", "2",
            "--adapter", str(tmp_path), "--merge-adapter", mode, "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    _, summary = read_out_dir(out)
    if mode == "always":  # the merged copy is the model; no adapter rides on the requests; no LoRA in the engine
        assert built == [(str(out / "merged" / "adapter-merged"), {"enable_lora": False})]
        assert engines[0]._adapters == {}
        assert summary["generation"]["merged_model"] == str(out / "merged" / "adapter-merged")
    else:
        assert built == [("fake", {})] and list(engines[0]._adapters.values()) == [str(tmp_path)]
        assert summary["generation"]["merged_model"] is None
    assert summary["generation"]["adapter"] == str(tmp_path)


def read_out_dir(out: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = [json.loads(x) for x in (out / "scored.jsonl").read_text(encoding="utf-8").splitlines()]
    return rows, json.loads((out / "summary.json").read_text(encoding="utf-8"))


def test_generate_empty_slice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    load_raw("longen")
    argv = ["generate", "--benchmark", "longen", "--backend", "hf", "--model", "m", "--language", "fr",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2 and "empty" in capsys.readouterr().err


def test_log_metrics_flattens_a_real_summary() -> None:
    rows = [dict(GOOD, language="en", range="2-4k", finish_reason="stop"), dict(GOOD, type="below", response="")]
    _, summary = api.score_rows(rows, "longen")
    metrics = api.log_metrics(summary)
    assert metrics["eval/score"] == summary["overall"]["score"]
    assert metrics["eval/type/below/score"] == 0.0 and "eval/repetition/distinct_2" in metrics
    assert "eval/finish/length_rate" in metrics and all(isinstance(v, float) for v in metrics.values())


def test_import_forces_offline_only_when_told() -> None:
    code = "import os, evaluation; print(os.environ.get('HF_HUB_OFFLINE', 'unset'), os.environ.get('WANDB_MODE'))"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "SELFLEN_ONLINE")}
    env["WANDB_MODE"] = "disabled"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["unset", "disabled"]  # like the hub tools: online unless told otherwise
    env["HF_HUB_OFFLINE"] = "1"
    code = "import os, evaluation; print(os.environ['HF_DATASETS_OFFLINE'], os.environ['WANDB_MODE'])"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["1", "disabled"]  # forced: the other switches follow, set ones are kept
