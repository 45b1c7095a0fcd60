"""The research record: artifacts and lineage, step metrics, evaluation tables, resumed runs logging nothing
twice, deterministic sweep folders grouped in W&B, the benchmark preflight, the W&B Report object."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from selflen.stages.common import StageResult
from selflen.stages.evaluate import generations_table
from selflen.store import RunLayout, StoreError
from selflen.tracking import STEP_METRICS, NullLogger, open_logger
from tests import wandb_offline as wo
from tests.defaults import config

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class _S:
    x: int = 1


def _runner(tmp_path: Path, logger: NullLogger):
    from selflen.stage_runner import Runner

    return Runner(config(), RunLayout(tmp_path / "run"), tmp_path, logger)


def _loop(r, calls: list[str]) -> None:
    """sft_data(1) -> finetune_gen(1) -> evaluate(1), generate(2): the stage names and inputs of the pipeline."""

    def body(name: str):
        def _run(st):
            calls.append(name)
            st.dir.mkdir(parents=True, exist_ok=True)
            (st.dir / "out.jsonl").write_text("{}\n")
            tables = {}
            if name == "evaluate":  # the stage reports its table; the runner logs any stage's tables alike
                rows = [{"id": "a", "query": "Write 300 words.", "required": 300, "words": 120, "score": 40.0,
                         "finish_reason": "stop"}]
                tables["eval/generations"] = generations_table(rows)
            return StageResult(counts={"rows": 1}, metrics={f"{name}/mean_words": 1.0}, tables=tables)
        return _run

    r.run(1, "sft_data", _S(), ["iter_1/select"], body("sft_data"))
    r.run(1, "finetune_gen", _S(), ["iter_1/sft_data", "iter_0/finetune_gen"], body("finetune_gen"))
    r.run(1, "evaluate", _S(), ["iter_1/finetune_gen"], body("evaluate"))
    r.run(2, "generate", _S(), ["iter_2/instruct", "iter_1/finetune_gen"], body("generate"))
    r.run(2, "sft_data", _S(), ["iter_2/generate"], body("sft_data"))


def test_runner_logs_artifacts_with_lineage_and_eval_tables_and_a_resume_logs_nothing_twice(tmp_path: Path) -> None:
    logger, calls = NullLogger(), []
    _loop(_runner(tmp_path, logger), calls)
    assert calls == ["sft_data", "finetune_gen", "evaluate", "generate", "sft_data"]
    arts = {a["name"]: a for a in logger.artifacts}
    assert {n: a["type"] for n, a in arts.items()} == {
        "iter_1-sft_data": "dataset", "iter_1-finetune_gen": "model", "iter_1-evaluate": "evaluation",
        "iter_2-sft_data": "dataset"}
    assert arts["iter_1-finetune_gen"]["inputs"] == ["iter_1-sft_data"]
    assert arts["iter_1-evaluate"]["inputs"] == ["iter_1-finetune_gen"]
    assert arts["iter_2-sft_data"]["inputs"] == ["iter_1-finetune_gen"]  # generate(2) read the adapter of iter 1
    assert arts["iter_1-finetune_gen"]["metadata"]["iteration"] == 1
    table = logger.tables["eval/generations/iter_1"]
    assert table[0] == ["iteration", "id", "prompt", "required_words", "produced_words", "score", "finish_reason"]
    assert table[1] == [1, "a", "Write 300 words.", 300, 120, 40.0, "stop"]
    assert len(logger.history) == 5

    resumed, calls2 = NullLogger(), []
    _loop(_runner(tmp_path, resumed), calls2)
    assert calls2 == [] and resumed.history == [] and resumed.artifacts == [] and resumed.tables == {}


def test_offline_wandb_run_holds_artifacts_lineage_and_step_metrics(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "gen.jsonl").write_text("{}\n")
    with open_logger("wandb", run_dir=tmp_path, config={"x": 1}, group="train-model=a,b-1234") as lg:
        lg.define_metrics(STEP_METRICS)
        lg.log_artifact("iter_1/sft_data", "dataset", tmp_path / "data", {"iteration": 1})
        lg.use_artifact("iter_1/sft_data")
        lg.log_artifact("iter_1/finetune_gen", "model", tmp_path / "data", {"iteration": 1})
        lg.log({"train/gen/loss": 2.0, "train/gen/step": 1, "iteration": 1})
        assert lg.active
    assert not lg.active
    recs = wo.records(tmp_path)
    rid = (tmp_path / "wandb_id").read_text().strip()
    arts = {a["name"].removesuffix(f"-{rid}"): a for a in wo.artifacts(recs) if a["name"].endswith(f"-{rid}")}
    assert arts["iter_1-sft_data"]["type"] == "dataset" and arts["iter_1-sft_data"]["files"] == ["gen.jsonl"]
    assert arts["iter_1-finetune_gen"]["type"] == "model"
    assert arts["iter_1-finetune_gen"]["metadata"]["inputs"] == [f"iter_1-sft_data-{rid}"]  # this run's own
    metrics = wo.metrics(recs)
    assert metrics["train/gen/*"] == "train/gen/step" and metrics["*"] == "iteration"
    assert metrics["train/*"] == "train/global_step"
    assert wo.of_type(recs, "run")[0].run_group == "train-model=a,b-1234"
    assert any(row.get("train/gen/loss") == 2.0 for row in wo.history(recs))


def _sweep_dir(*overrides: str) -> str:
    import os

    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from selflen.cli import register_resolvers
    from selflen.config import CONF_DIR

    register_resolvers()
    os.environ.pop("SELFLEN_SWEEP_ID", None)  # a new command
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()  # how `-m` composes the sweep's own config
        cfg = loader.load_configuration("train", list(overrides), run_mode=RunMode.MULTIRUN)

    assert list(cfg.hydra.overrides.task) == list(overrides)
    sweep_dir = str(cfg.hydra.sweep.dir)
    cfg.hydra.overrides.task = ["model=llama3"]  # a job of the sweep resolves it again: the same folder
    assert str(cfg.hydra.sweep.dir) == sweep_dir
    os.environ.pop("SELFLEN_SWEEP_ID", None)
    return sweep_dir


def test_the_same_sweep_command_lands_in_the_same_folder() -> None:
    a = _sweep_dir("model=llama3,qwen2")
    assert a == _sweep_dir("model=llama3,qwen2") == _sweep_dir("model=llama3,qwen2", "redo=[extend]")
    assert a.startswith("multirun/train-model=llama3,qwen2-")
    assert _sweep_dir("model=llama3,qwen2", "seed=1") != a


def test_a_multirun_job_is_grouped_by_its_sweep_and_tagged_with_its_overrides(monkeypatch) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from selflen import tracking

    hc = OmegaConf.create({"mode": RunMode.MULTIRUN, "sweep": {"dir": "multirun/train-model=llama3,qwen2-abcd"},
                           "overrides": {"task": ["model=qwen2"]}, "job": {"override_dirname": "model=qwen2"}})
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: hc))
    ctx = tracking.hydra_job_context()
    assert ctx["sweep"] == "train-model=llama3,qwen2-abcd" and ctx["overrides"] == ["model=qwen2"]
    assert tracking.run_tags(["m"], ctx["overrides"]) == ["m", "model=qwen2"]


def test_a_data_dir_without_benchmarks_stops_before_any_stage(tmp_path: Path, monkeypatch) -> None:
    from selflen import pipeline

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SELFLEN_DATA_DIR", str(empty))
    cfg = config()
    cfg.paths.run_dir, cfg.paths.cache_dir, cfg.paths.data_dir = str(tmp_path / "run"), str(tmp_path / "c"), None
    with pytest.raises(StoreError, match="unset both to use the copy shipped with selflen") as err:
        pipeline.run(cfg)
    assert len(str(err.value).splitlines()) == 1 and "evaluate.enabled=false" in str(err.value)
    assert str(empty) in str(err.value) and "longen/LonGen.jsonl" in str(err.value)  # the file and where it looked
    assert not (tmp_path / "run").exists()  # no folder, lock or model work happened
    cfg.evaluate = replace(cfg.evaluate, enabled=False)
    with pytest.raises(StoreError, match="longen"):  # decontamination still needs them
        pipeline.run(cfg)
    cfg.instruct = replace(cfg.instruct, decontaminate=False)
    checked = pipeline.preflight(cfg)  # explicitly off: nothing needed, only W&B's mode settled
    assert checked.paths == cfg.paths and checked.logger.mode == "offline"  # the tests force offline


def test_online_without_a_route_fails_in_seconds_with_one_line(tmp_path: Path, monkeypatch) -> None:
    import time

    from selflen import pipeline

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # loopback, nothing listens: no route to a hub
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    cfg = config()
    cfg.online = True
    cfg.paths.run_dir, cfg.paths.cache_dir = str(tmp_path / "run"), str(tmp_path / "c")
    start = time.monotonic()
    with pytest.raises(StoreError) as err:
        pipeline.run(cfg)
    assert time.monotonic() - start < 10
    text = str(err.value)
    assert len(text.splitlines()) == 1 and text.startswith("online=true, but http://127.0.0.1:9 can not be reached")
    assert "run without online=true" in text and not (tmp_path / "run").exists()
    cfg.logger.mode = "online"
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    from selflen.env import online_endpoints

    assert online_endpoints(True)[-1] == "https://api.wandb.ai"  # W&B online is checked too


def test_benchmarks_are_fetched_once_into_the_cache(tmp_path: Path, monkeypatch) -> None:
    from evaluation import benchmarks

    fetched: list[str] = []

    def fake(spec):
        fetched.append(spec.name)
        return [{spec.prompt_field: "Write a poem.", "type": "about", "length": 100}]

    monkeypatch.setattr(benchmarks, "_load_online", fake)
    monkeypatch.setenv("SELFLEN_DATA_DIR", str(tmp_path / "empty"))
    names = ["longen", "longbench_write"]
    folder = benchmarks.ensure_benchmarks(names, None, tmp_path / "cache", online=True)
    assert folder == tmp_path / "cache" / "benchmarks" and fetched == names
    assert (folder / "longen" / "LonGen.jsonl").is_file()
    assert benchmarks.ensure_benchmarks(names, None, tmp_path / "cache", online=False) == folder  # offline now
    assert fetched == names  # not fetched again
    with pytest.raises(FileNotFoundError, match="SELFLEN_DATA_DIR at a folder that holds them"):
        benchmarks.ensure_benchmarks(names, None, tmp_path / "other", online=False)


def test_the_wandb_report_object_is_built_offline(tmp_path: Path) -> None:
    pytest.importorskip("wandb_workspaces")
    import wandb_workspaces.reports.v2 as wr

    from selflen.report.runs import Run
    from selflen.report.wandb_report import build_report

    runs = []
    for name, rid in (("llama3", "aaaa1111"), ("qwen2", "bbbb2222")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "wandb_id").write_text(rid)
        runs.append(Run(tmp_path / name, label=name, config={"iterations.count": 2},
                        summary={"regression": {"selflen_mini_mc": {"acc": {"delta": 0.0}}}}))
    report = build_report(runs, "models", "# md", entity="me", project="selflen", media_run_id="cccc3333",
                          media_keys=["compare/growth"])
    assert isinstance(report, wr.Report) and report.entity == "me" and report.project == "selflen"
    grids = [b for b in report.blocks if isinstance(b, wr.PanelGrid)]
    panels = [p for g in grids for p in g.panels]
    lines = [p for p in panels if isinstance(p, wr.LinePlot)]
    assert any(p.y == ["generate/mean_words", "extend/mean_words", "select/mean_words"] and p.x == "iteration"
               for p in lines)
    assert any(p.y == ["eval/score"] for p in lines)
    assert any(p.x == "train/gen/step" and p.y == ["train/gen/loss"] for p in lines)
    assert any(isinstance(p, wr.RunComparer) for p in panels)
    tables = {p.table_name for p in panels if isinstance(p, wr.WeavePanelSummaryTable)}
    assert {"eval/generations/iter_0", "eval/generations/iter_3"} <= tables
    media = [p for p in panels if isinstance(p, wr.MediaBrowser)]
    assert any("compare/growth" in p.media_keys for p in media)
    assert any(p.metrics == ["regression/selflen_mini_mc/acc/delta"] for p in panels if isinstance(p, wr.BarPlot))
    filters = [str(g.runsets[0].filters) for g in grids]
    assert "aaaa1111" in filters[0] and "bbbb2222" in filters[0] and "cccc3333" in filters[-1]
    assert all(p._to_model() for p in panels)  # each panel serialises without W&B (runsets need the API)


def test_the_compare_report_shows_regression_verdicts(tmp_path: Path) -> None:
    from selflen.report.compare import regression_section
    from selflen.report.runs import Run

    verdict = {"n": 10, "base": 0.5, "other": 0.4, "base_se": 0.1, "other_se": 0.1, "delta": -0.1,
               "delta_se": 0.02, "verdict": "changed by -0.1000 (-5.0 SE)"}
    runs = [Run(tmp_path, label="qwen2", summary={"regression": {"mmlu": {"acc": verdict}}}), Run(tmp_path, "x")]
    text = regression_section(runs)
    assert "General-ability regression" in text and "qwen2: mmlu/acc: base 0.5000 -> 0.4000" in text
    assert "changed by -0.1000 (-5.0 SE)" in text
    assert regression_section(runs[1:]) == ""


def test_comparison_plots_are_uploaded_as_media_of_a_report_run(tmp_path: Path) -> None:
    from PIL import Image

    from selflen.report.wandb_report import upload_images

    png = tmp_path / "growth.png"
    Image.new("RGB", (8, 8)).save(png)
    run_id, keys = upload_images({"length growth per run": png}, project="selflen", entity=None, name="report: t",
                                 mode="offline", dir=tmp_path)
    assert keys == ["compare/growth"] and run_id
    recs = wo.records(tmp_path)
    assert wo.of_type(recs, "run")[0].job_type == "report"
    row = next(r for r in wo.history(recs) if "compare/growth/_type" in r)
    assert row["compare/growth/_type"] == "image-file" and row["compare/growth/caption"] == "length growth per run"


def test_lm_eval_tasks_read_the_cached_copy(tmp_path: Path, monkeypatch) -> None:
    import importlib.util

    from evaluation.lm_eval_compare import TASKS_DIR

    monkeypatch.setenv("SELFLEN_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("SELFLEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    spec = importlib.util.spec_from_file_location("selflen_task_utils", TASKS_DIR / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    with pytest.raises(FileNotFoundError):
        utils.load_benchmark_docs("longen")
    f = tmp_path / "cache" / "benchmarks" / "longen" / "LonGen.jsonl"
    f.parent.mkdir(parents=True)
    f.write_text(json.dumps({"query": "Write a poem.", "constraint": "about 100 words"}) + "\n")
    assert utils.load_benchmark_docs("longen")["test"][0]["query"] == "Write a poem."
