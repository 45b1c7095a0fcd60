"""A run's summary from plain data: length statistics, held-out length per point, growth over the base model,
the token-budget flag, the end-of-run table and the run plots. Missing stays None in data and "—" in the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selflen.report import lengths as L
from selflen.report import summary as S
from selflen.store import RunLayout

pytestmark = pytest.mark.unit


def _scored(words: list[int], reasons: list[str | None] | None = None, rate: float = 0.0) -> list[dict]:
    reasons = reasons or [None] * len(words)
    return [{"id": f"q{i}", "required": 500, "words": w, "score": 0.5, "finish_reason": r,
             "repetition": {"effective_words": w // 2, "repeated_10gram_rate": rate}}
            for i, (w, r) in enumerate(zip(words, reasons, strict=True))]


def test_length_stats() -> None:
    assert L.length_stats([]) is None
    assert L.length_stats([7]) == {"mean": 7.0, "median": 7.0, "p90": 7.0, "n": 1}
    stats = L.length_stats(list(range(1, 11)))
    assert stats == {"mean": 5.5, "median": 5.5, "p90": 9.1, "n": 10}


def test_eval_length_row_from_rows() -> None:
    summary = {"n": 4, "overall": {"score": 0.62, "mean_words": 999.0}}
    row = L.eval_length_row(summary, _scored([100, 200, 300, 400], ["length", "stop", "stop", "stop"], rate=0.25))
    assert row["mean_words"] == 250.0 and row["median_words"] == 250.0  # the rows, not the summary's mean
    assert row["effective_words"] == 125.0 and row["repeated_ngram_rate"] == 0.25
    assert row["finish_by_budget_rate"] == 0.25 and row["score"] == 0.62 and row["n"] == 4
    assert row["ended_mean_words"] == 300.0  # the three answers that ended by themselves


def test_ended_mean_is_unknown_without_finish_reasons_and_none_when_all_hit_the_budget() -> None:
    assert L.eval_length_row({}, _scored([100, 200]))["ended_mean_words"] is None
    assert L.eval_length_row({}, _scored([100, 200], ["length", "length"]))["ended_mean_words"] is None


def test_paired_growth_matches_prompts_and_samples() -> None:
    base = [{"id": "p", "sample": 0, "words": 100}, {"id": "p", "sample": 1, "words": 400},
            {"id": "q", "sample": 0, "words": 0}]
    rows = [{"id": "p", "sample": 0, "words": 300}, {"id": "p", "sample": 1, "words": 1200},
            {"id": "q", "sample": 0, "words": 50}]  # q: the base wrote nothing, no ratio
    assert L.paired_growth(base, rows) == 3.0
    assert L.paired_growth(base, base) == 1.0
    assert L.paired_growth([], rows) is None


def test_eval_length_row_falls_back_to_summary_and_text() -> None:
    summary = {"n": 2, "overall": {"score": 40.0, "mean_words": 150.0},
               "repetition": {"mean_effective_words": 90.0}, "finish": {"length_rate": 0.5}}
    rows = [{"words": 100, "response": " ".join("abcdefghij" * 2) + " k"},
            {"words": 200, "response": "one two three four five"}]
    row = L.eval_length_row(summary, rows)
    assert row["effective_words"] == 90.0 and row["finish_by_budget_rate"] == 0.5
    assert row["repeated_ngram_rate"] == pytest.approx((2 / 12 + 0.0) / 2, abs=1e-4)  # computed from the answers' text
    only_summary = L.eval_length_row(summary, [])
    assert only_summary["mean_words"] == 150.0 and only_summary["median_words"] is None and only_summary["n"] == 2
    nothing = L.eval_length_row({}, [{"words": 10}])
    assert nothing["finish_by_budget_rate"] is None and nothing["effective_words"] is None  # unknown, not zero


def _per_iter() -> dict:
    return {1: {"generator": [100, 120], "extender": [300, 340], "instructions": 4, "accepted_extensions": 2,
                "kept": 1},
            2: {"generator": [150, 170], "extender": [], "instructions": 4, "accepted_extensions": 0, "kept": 0}}


def _evals() -> dict:
    return {0: L.eval_length_row({}, _scored([100, 300], ["stop", "stop"])),
            "iter_1": L.eval_length_row({}, _scored([300, 300], ["stop", "stop"])),
            2: L.eval_length_row({}, _scored([500, 500], ["length", "stop"])),
            "final": L.eval_length_row({}, _scored([390, 410], ["stop", "stop"]))}


def test_build_summary_keeps_missing_as_none() -> None:
    out = S.build_summary(_per_iter(), _evals(), {"iter_1/generate": 12.0}, {"final_model": "final/finetune"},
                          run_dir="/runs/a", model="m")
    assert out["run_dir"] == "/runs/a" and out["final_model"] == "final/finetune"
    assert out["iterations"]["1"]["generator"] == {"mean": 110.0, "median": 110.0, "p90": 118.0, "n": 2}
    assert out["iterations"]["2"]["extender"] is None and out["iterations"]["2"]["accepted_extensions"] == 0
    assert list(out["eval"]) == ["0", "1", "2", "final"]
    assert out["growth"] == {"0": 1.0, "1": 1.5, "2": 2.5, "final": 2.0}
    assert out["budget_bound"] == ["2"] and "set the length at 2" in out["budget_note"]
    assert out["stage_seconds"] == {"iter_1/generate": 12.0}
    json.dumps(out)  # summary.json must serialise


def test_build_summary_without_base_or_budget() -> None:
    evals = {k: v for k, v in _evals().items() if k not in (0, 2)}
    out = S.build_summary(_per_iter(), evals)
    assert out["growth"] == {"1": None, "final": None}  # no base: no ratio, never 0 or 1
    assert out["budget_bound"] == [] and "budget_note" not in out
    assert S.build_summary({})["iterations"] == {} and S.build_summary({})["eval"] == {}


def test_format_summary_table() -> None:
    text = S.format_summary(S.build_summary(_per_iter(), _evals(), {"a": 3.0, "b": 9.0}, model="m", backend="hf",
                                            run_dir="/runs/a", plots=["p.png"]))
    lines = text.splitlines()
    assert lines[0] == "selflen run: m via hf"
    rows = {line.split()[0]: line.split() for line in lines[2:6]}
    assert rows["base"] == ["base", "—", "—", "—", "—", "—", "200.0", "0%", "1.00x"]
    assert rows["1"] == ["1", "4", "110.0", "320.0", "2", "1", "300.0", "0%", "1.50x"]
    assert rows["2"] == ["2", "4", "160.0", "—", "0", "0", "500.0", "50%", "2.50x"]  # the Extender: missing
    assert rows["final"] == ["final", "—", "—", "—", "—", "—", "400.0", "0%", "2.00x"]
    assert "note: the budget, not the model, set the length at 2" in text
    assert "slowest stages: b 9s, a 3s" in text and "run dir: /runs/a" in text
    assert lines[-3:] == ["run dir: /runs/a", "plots:   /runs/a/p.png", "summary: /runs/a/summary.json"]


def _paired(words: list[float], finish: list[str]) -> list[dict]:
    return [{**r, "id": f"p{i}", "sample": 0} for i, r in enumerate(_scored(words, finish))]


def test_the_run_ends_with_the_verdict_table_and_sentence() -> None:
    from selflen.report.paired import growth_intervals

    base = _paired([100, 300, 200, 200], ["stop", "stop", "length", "stop"])
    longer = _paired([300, 600, 400, 500], ["stop", "stop", "stop", "stop"])
    evals = {"0": L.eval_length_row({}, base), "1": L.eval_length_row({}, longer)}
    for point, rows in (("0", base), ("1", longer)):
        evals[point]["intervals"] = growth_intervals(base, rows)
    summary = S.build_summary(_per_iter(), evals, run_dir="/runs/a", wandb="/runs/a/wandb/offline-run-x")
    assert summary["headline"]["point"] == "1" and summary["headline"]["measure"] == "effective_words"
    assert summary["growth"]["1"] == summary["headline"]["ratio"] == 2.25  # effective words, not mean words alone
    assert summary["growth_mean_words"]["1"] == 2.25
    lines = S.format_summary(summary).splitlines()
    table = lines.index(next(line for line in lines if line.startswith("held-out length (4 benchmark prompts")))
    assert lines[table + 1].split()[:4] == ["point", "eff.", "words", "ended"]
    assert lines[table + 2].split() == ["base", "100.0", "75%", "0.000", "1.00x"]
    assert lines[table + 3].split()[:4] == ["1", "225.0", "100%", "0.000"]
    assert lines[table + 3].split()[4] == "2.25x" and lines[table + 3].endswith("]")
    assert lines[table + 4].startswith("Yes: the iteration 1 Generator wrote longer than the base model on 4 held-out")
    assert lines[-1] == "W&B:     /runs/a/wandb/offline-run-x"
    same = {"0": evals["0"], "1": {**evals["0"], "intervals": growth_intervals(base, base)}}
    sentence = S.build_summary({}, same)["headline"]["verdict"]
    assert sentence.startswith("Not shown: the iteration 1 Generator wrote 1.00x")


class _Logger:
    def __init__(self) -> None:
        self.images: list[str] = []

    def log_image(self, name: str, path: Path) -> None:
        self.images.append(name)


def test_write_run_plots(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    for point, words in ((0, [100, 300]), (1, [300, 300])):
        folder = layout.stage(point, "evaluate")
        folder.mkdir(parents=True)
        (folder / "scored.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _scored(words)))
        (folder / "summary.json").write_text(json.dumps({"overall": {"score": 0.5}}))
    words = {k: {"generator": v["generator"], "extender": v["extender"]} for k, v in _per_iter().items()}
    logger = _Logger()
    paths = S.write_run_plots(layout, words, logger)
    assert paths == [layout.plots_dir / "length_histogram.png", layout.plots_dir / "growth.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert logger.images == ["plots/length_histogram", "plots/growth"]


def test_run_growth_plot_series(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from selflen.report import plots

    seen: dict = {}
    monkeypatch.setattr(plots, "growth_curve", lambda series, path, **kw: seen.update(series) or Path(path))
    words = {k: {"generator": v["generator"], "extender": v["extender"]} for k, v in _per_iter().items()}
    S.write_run_plots(RunLayout(tmp_path), words, eval_rows={"0": {"mean_words": 200.0}, "1": {"mean_words": 300.0}})
    assert seen["generator"] == {1: 110.0, 2: 160.0}
    assert seen["extender"] == {1: 320.0, 2: None}  # a gap at 2, not a point at 0 words
    assert seen["held-out eval (Generator)"] == {"0": 200.0, "1": 300.0}
