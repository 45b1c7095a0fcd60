"""Run comparison from run directories alone: discovery, tables, plots, partial runs, the held-out length per
evaluation point (base to final) and the W&B skip."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from selflen.report import compare, wandb_report
from selflen.report import runs as runs_mod
from selflen.stages.common import summarize

pytestmark = pytest.mark.unit


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _stage_rows(words: list[int], status: str = "ok") -> list[dict]:
    return [{"id": f"r{i}", "words": w, "status": status} for i, w in enumerate(words)]


def _done(rows: list[dict], name: str) -> dict:
    """A stage's ``done.json`` counts as the stage writes them (``common.summarize``: records, ok, dropped)."""
    return {"counts": summarize(rows, name).counts}


def make_run(root: Path, model: str, *, keep: float = 0.6667, iterations: int = 2, complete: bool = True,
             evaluate: bool = True, overrides: list[str] | None = None, scale: int = 1) -> Path:
    """A run directory shaped like the pipeline's, with words that grow each iteration."""
    root.mkdir(parents=True)
    config = {"model": {"name": model, "source": "tiny"}, "extend": {"keep_fraction": keep, "min_ratio": 1.2},
              "loop": {"iterations": iterations}, "experiment": "sweep_keep_ratio", "logger": {"project": "selflen"},
              "paths": {"run_dir": str(root), "root": "."}}
    _json(root / "config.json", config)
    if overrides is not None:
        (root / ".hydra").mkdir()
        (root / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if evaluate:  # the base model's evaluation: 250 words on average, one of two answers stopped by the budget
        _json(root / "iter_0" / "evaluate" / "done.json", {"counts": {"rows": 2},
                                                           "metrics": {"eval/longen/score": 30.0, "eval/n": 2}})
        _json(root / "iter_0" / "evaluate" / "summary.json", {"overall": {"score": 0.3, "mean_words": 250.0}})
        _jsonl(root / "iter_0" / "evaluate" / "scored.jsonl",
               [{"id": "a", "required": 500, "words": 200 * scale, "finish_reason": "length"},
                {"id": "b", "required": 1000, "words": 300 * scale, "finish_reason": "stop"}])
    summary_iters = {}
    for k in range(1, iterations + 1):
        gen = [10 * k * scale, 12 * k * scale]
        ext = [30 * k * scale, 34 * k * scale]
        it = root / f"iter_{k}"
        generated = _stage_rows(gen) + _stage_rows([1], "dropped")
        extended = _stage_rows(ext) + _stage_rows([5], "dropped")
        _jsonl(it / "generate" / "records.jsonl", generated)
        _json(it / "generate" / "done.json", _done(generated, "generate"))
        _jsonl(it / "extend" / "records.jsonl", extended)
        last = not complete and k == iterations
        if not last:
            _json(it / "extend" / "done.json", {**_done(extended, "extend"), "metrics": {"extend/accept_rate": 2 / 3}})
            _jsonl(it / "select" / "records.jsonl", _stage_rows(ext[1:]))
            _json(it / "select" / "done.json", _done(_stage_rows(ext[1:]), "select"))
            # a full fine-tune's model folder has a config.json too: not a run directory
            _json(it / "finetune_gen" / "model" / "config.json", {"architectures": ["LlamaForCausalLM"]})
        if evaluate and not last:
            _json(it / "evaluate" / "done.json", {"counts": {"n": 2}, "seconds": 1.0, "versions": {"x": "1"},
                                                  "metrics": {"eval/longen/score": 40.0 + 10 * k, "eval/n": 2}})
            _json(it / "evaluate" / "summary.json", {"overall": {"score": 99.0}})  # done.json's metrics win
            _jsonl(it / "evaluate" / "longen" / "scored.jsonl",
                   [{"id": "a", "required": 500, "words": 300 * k}, {"id": "b", "required": 1000, "words": 450 * k},
                    {"words": 3}])  # the row without an id pairs with no base answer
        summary_iters[str(k)] = {"generator_mean_words": sum(gen) / 2, "extender_mean_words": sum(ext) / 2}
    if complete:
        # the pipeline's summary holds each point's overall score; the evaluate folders take precedence
        _json(root / "summary.json", {"model": model, "iterations": summary_iters,
                                      **({"eval": {"iter_1": 1.0}} if evaluate else {})})
    return root


@pytest.fixture()
def sweep(tmp_path: Path) -> Path:
    base = tmp_path / "multirun" / "2026-11-25_18-00-00"
    make_run(base / "0_model=llama3", "meta-llama/Meta-Llama-3.1-8B-Instruct",
             overrides=["model=llama3", "debug=smoke"])
    make_run(base / "1_model=qwen2", "Qwen/Qwen2-7B-Instruct", keep=0.5, scale=2,
             overrides=["model=qwen2", "debug=smoke"])
    (base / "multirun.yaml").write_text("hydra: {}\n")
    (base / ".submitit").mkdir()
    return base


def test_find_runs_prunes_inside_runs(sweep: Path) -> None:
    found = runs_mod.find_runs(sweep)
    assert [p.name for p in found] == ["0_model=llama3", "1_model=qwen2"]
    assert runs_mod.find_runs(sweep / "0_model=llama3") == [sweep / "0_model=llama3"]


def test_load_run_reads_words_acceptance_and_evals(sweep: Path) -> None:
    run = runs_mod.load_run(sweep / "0_model=llama3")
    assert run.complete and run.status == "complete"
    assert run.words[2] == {"generator": [20.0, 24.0], "extender": [60.0, 68.0], "selected": [68.0]}
    assert run.acceptance[1] == {"inputs": 3, "accepted": 2, "rate": pytest.approx(2 / 3), "partial": False,
                                 "kept": 1}
    assert run.evals == {"0": {"eval/longen/score": 30.0}, "1": {"eval/longen/score": 50.0},
                         "2": {"eval/longen/score": 60.0}}
    assert run.scatter["2"] == [(500.0, 600.0), (1000.0, 900.0)]


def test_labels_and_config_differences(sweep: Path) -> None:
    runs = [runs_mod.load_run(p) for p in runs_mod.find_runs(sweep)]
    runs_mod.label_runs(runs)
    assert [r.label for r in runs] == ["model=llama3", "model=qwen2"]
    diffs = runs_mod.config_differences(runs)
    assert set(diffs) == {"model.name", "extend.keep_fraction"}
    assert diffs["extend.keep_fraction"] == [0.6667, 0.5]


def test_labels_without_hydra_overrides_use_config(tmp_path: Path) -> None:
    a = runs_mod.load_run(make_run(tmp_path / "a", "m"))
    b = runs_mod.load_run(make_run(tmp_path / "b", "m", keep=0.5))
    runs_mod.label_runs([a, b])
    assert (a.label, b.label) == ("extend.keep_fraction=0.6667", "extend.keep_fraction=0.5")


def test_main_writes_report_and_plots(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    assert compare.main(["--sweep", str(sweep), "--out", str(out), "--no-wandb"]) == 0
    text = (out / compare.REPORT_NAME).read_text()
    for png in ("growth.png", "eval_scores.png", "required_vs_produced.png"):
        assert (out / png).stat().st_size > 1000 and f"]({png})" in text
    assert "| extend.keep_fraction | 0.6667 | 0.5 |" in text
    assert "| model=qwen2 | 2 | 44.0 (n=2) | 128.0 (n=2) | 136.0 (n=1) |" in text
    assert "| model=llama3 | 1 | 3 | 2 | 0.667 | 1 |" in text
    assert "| model=llama3 | 2 | 60.0 |" in text


def test_default_out_is_inside_the_sweep(sweep: Path) -> None:
    assert compare.main(["--sweep", str(sweep), "--no-wandb"]) == 0
    assert (sweep / "comparison" / "report.md").is_file()
    assert len(runs_mod.find_runs(sweep)) == 2  # the comparison folder is not mistaken for a run


def test_failed_run_reports_what_it_has(tmp_path: Path) -> None:
    done = make_run(tmp_path / "done", "m", evaluate=False)
    failed = make_run(tmp_path / "failed", "m", keep=0.5, complete=False, evaluate=False)
    (failed / "run.lock").write_text("{}")
    out = tmp_path / "cmp"
    assert compare.main([str(done), str(failed), "--out", str(out), "--no-wandb"]) == 0
    text = (out / "report.md").read_text()
    assert "incomplete (last finished stage: iter_2/generate), run.lock present" in text
    assert "| extend.keep_fraction=0.5 | 2 (running) | 3 | 2 | 0.667 | — |" in text
    assert "No evaluation results" in text and (out / "growth.png").is_file()
    assert not (out / "eval_scores.png").exists() and not (out / "required_vs_produced.png").exists()


def test_run_without_config_or_summary(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    _jsonl(bare / "iter_1" / "generate" / "records.jsonl", _stage_rows([7, 9]))
    run = runs_mod.load_run(bare)
    assert run.config == {} and run.words[1]["generator"] == [7.0, 9.0]
    assert run.status == "incomplete (no stage finished)"


def test_summary_eval_block_and_fallback_means(tmp_path: Path) -> None:
    root = tmp_path / "r"
    _json(root / "config.json", {"model": {"name": "m"}})
    (root / "iter_1").mkdir()
    _json(root / "summary.json", {"iterations": {"1": {"generator_mean_words": 12.5, "extender_mean_words": 0.0}},
                                  "eval": {"final": {"overall": {"score": 71.0}}, "iter_1": 40.0}})
    run = runs_mod.load_run(root)
    assert run.words[1]["generator"] == [12.5] and run.words[1]["extender"] == []
    assert run.evals == {"1": {"eval/score": 40.0}, "final": {"overall.score": 71.0}}


def test_eval_summary_file_without_done(tmp_path: Path) -> None:
    root = tmp_path / "r"
    _json(root / "config.json", {"model": {"name": "m"}})
    _json(root / "iter_1" / "evaluate" / "longen" / "summary.json",
          {"overall": {"score": 55.0, "mean_words": 300}, "score_scale": 100, "by_type": {"about": {"score": 50.0}}})
    assert runs_mod.load_run(root).evals == {"1": {"longen/overall.score": 55.0, "longen/by_type.about.score": 50.0}}


def test_main_rejects_nothing_to_compare(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert compare.main(["--sweep", str(tmp_path)]) == 2
    assert "nothing to compare" in capsys.readouterr().err
    assert compare.main([str(tmp_path / "missing")]) == 2


def test_wandb_report_skipped_offline(sweep: Path, monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    runs = [runs_mod.load_run(p) for p in runs_mod.find_runs(sweep)]
    monkeypatch.setenv("WANDB_MODE", "offline")
    with caplog.at_level(logging.INFO, logger="selflen.report.wandb_report"):
        assert wandb_report.wandb_report(runs, "t", "md") is None
    assert "W&B report skipped: WANDB_MODE=offline" in caplog.text
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(sweep / "no-netrc"))
    monkeypatch.setenv("HOME", str(sweep))
    assert wandb_report.wandb_online() == (False, "no W&B API key (WANDB_API_KEY or `wandb login`)")


def test_wandb_report_without_workspaces_package(sweep: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    import sys

    runs = [runs_mod.load_run(p) for p in runs_mod.find_runs(sweep)]
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setitem(sys.modules, "wandb_workspaces", None)  # import fails as if not installed
    with caplog.at_level(logging.INFO, logger="selflen.report.wandb_report"):
        assert wandb_report.wandb_report(runs, "t", "md") is None
    assert "pip install wandb-workspaces" in caplog.text


def test_load_run_reads_held_out_length_from_base_to_last(sweep: Path) -> None:
    run = runs_mod.load_run(sweep / "0_model=llama3")
    assert list(run.eval_lengths) == ["0", "1", "2"]
    base, last = run.eval_lengths["0"], run.eval_lengths["2"]
    assert (base["mean_words"], base["finish_by_budget_rate"], base["score"], base["n"]) == (250.0, 0.5, 0.3, 2)
    assert (last["mean_words"], last["median_words"], last["n"]) == (501.0, 600.0, 3)  # the 3-word row counts too
    assert last["finish_by_budget_rate"] is None  # no finish reasons: unknown, not zero
    assert run.scatter["0"] == [(500.0, 200.0), (1000.0, 300.0)]


def test_report_has_held_out_length_per_point(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    assert compare.main(["--sweep", str(sweep), "--out", str(out), "--no-wandb"]) == 0
    text = (out / compare.REPORT_NAME).read_text()
    assert "## Held-out length" in text
    assert text.index("## Verdict") < text.index("## Runs")  # the end-of-run table heads the report
    assert "| model=llama3 | base |" in text.split("## Runs")[0] and "effective words / base [95 %]" in text
    # columns: n, mean, median, effective, ended words, by budget, repeated, growth, paired growth, score
    assert "| model=llama3 | base | 2 | 250.0 | 250.0 | — | 300.0 | 50.0% | — | 1.00x | 1.00x | 0.3 |" in text
    assert "| model=llama3 | 2 | 3 | 501.0 | 600.0 | — | — | — | — | 2.00x | 3.00x |" in text
    assert "| model=qwen2 | 1 | 3 | 251.0 | 300.0 | — | — | — | — | 0.50x | 0.75x |" in text
    assert "model=llama3: the budget, not the model, set the length at base" in text
    assert "| model=llama3 | base | 30.0 |" in text  # the base model's score in the scores table
    assert (out / "eval_length.png").stat().st_size > 1000 and "](eval_length.png)" in text


def test_a_role_with_nothing_accepted_is_missing_not_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_run(tmp_path / "r", "m", iterations=3, evaluate=False)
    _jsonl(root / "iter_2" / "extend" / "records.jsonl", _stage_rows([5, 6], "dropped"))  # nothing accepted
    _jsonl(root / "iter_2" / "select" / "records.jsonl", [])
    summary = json.loads((root / "summary.json").read_text())
    summary["iterations"]["2"]["extender_mean_words"] = 0.0  # what older pipelines wrote for "none accepted"
    _json(root / "summary.json", summary)
    run = runs_mod.load_run(root)
    assert run.words[2]["extender"] == []
    runs_mod.label_runs([run])
    drawn: list = []
    monkeypatch.setattr(compare.plots, "run_lines", lambda lines, path, **kw: drawn.extend(lines))
    compare.plot_growth([run], tmp_path / "g.png")
    ext = next(values for label, values, _, _ in drawn if label.endswith("extender"))
    assert ext == {1: 32.0, 2: None, 3: 96.0}
    text = compare.render_report([run], {}, "t")
    assert "| r | 2 | 22.0 (n=2) | — | — |" in text


def test_growth_plot_draws_a_gap_for_missing(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from selflen.report import plots

    captured = []
    monkey_save = plots.save

    def keep(fig, path):
        captured.append([line.get_ydata().tolist() for line in fig.axes[0].get_lines()])
        return monkey_save(fig, path)

    plots.save, saved = keep, plots.save
    try:
        plots.growth_curve({"generator": [10.0, 20.0, 30.0], "extender": [40.0, None, 90.0]}, tmp_path / "g.png")
    finally:
        plots.save = saved
    gen, ext = captured[0]
    assert gen == [10.0, 20.0, 30.0] and ext[0] == 40.0 and ext[2] == 90.0 and ext[1] != ext[1]  # NaN: a gap
    assert (tmp_path / "g.png").stat().st_size > 1000
    plt.close("all")
