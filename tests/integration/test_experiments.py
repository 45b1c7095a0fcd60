"""Every file in experiments/: a global delta that composes, whose header commands work, and that smoke-runs.

Smoke runs use the tiny random model (``debug=smoke``) with one iteration, no length-control stage and no
evaluation, except where the experiment itself sets one of those keys (``iterations_3`` runs three iterations):
speed-ups are applied only to keys the experiment leaves alone, so each run exercises the experiment's change.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from selflen.cli import register_resolvers
from selflen.config import CONF_DIR, TrainConfig, to_config, to_dict
from selflen.errors import SelflenError
from selflen.report.runs import find_runs, flatten

pytestmark = [pytest.mark.integration, pytest.mark.data]
ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS_DIR = ROOT / "experiments"
EXPERIMENTS = sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))
# whole-run sizes, smoke-run with their counts capped
SCALES = ["paper_scale", "cpu_lengthen", "capacity_probe", "cpu_lengthen_qwen15b"]
ABLATIONS = [e for e in EXPERIMENTS if not e.startswith("sweep_") and e not in SCALES]
SWEEPS = [e for e in EXPERIMENTS if e.startswith("sweep_")]
COMMAND = re.compile(r"^#\s+python train\.py\s+(.*)$")
# applied to every smoke run unless the experiment sets the key itself
FAST = {"iterations.count": 1, "instruct.count": 3, "generate.samples": 1, "extend.rounds": 1,
        "extend.extensions": 1, "length_control.enabled": False, "evaluate.enabled": False}
# generation budgets capped even when the experiment raises them: the tiny model has a 1024-token context here
CAPS = {"length.generate_tokens": 24, "length.extend_tokens": 48, "length.evaluate_tokens": 16,
        "length.instruct_tokens": 24}


def _compose(overrides: list[str], with_hydra: bool = False) -> Any:
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=with_hydra)


def _validate(raw: Any, run_dir: Path | str = ".") -> TrainConfig:
    raw.paths.root = "."
    raw.paths.run_dir = str(run_dir)
    return to_config(raw)


def _delta(name: str, *overrides: str) -> dict[str, Any]:
    """Config keys (flattened, validated) that the experiment changes relative to the defaults."""
    base = flatten(to_dict(_validate(_compose([*overrides]))))
    with_exp = flatten(to_dict(_validate(_compose([f"+experiment={name}", *overrides]))))
    return {k: v for k, v in with_exp.items() if base.get(k) != v and k not in ("experiment", "logger.group")}


def _header_commands(name: str) -> list[list[str]]:
    lines = (EXPERIMENTS_DIR / f"{name}.yaml").read_text().splitlines()
    return [shlex.split(m.group(1).split("  #")[0]) for line in lines if (m := COMMAND.match(line))]


def _expand(args: list[str]) -> list[list[str]]:
    """The jobs a command line starts: Hydra's basic sweeper over the arguments (glob included) and, with -m,
    the ``hydra.sweeper.params`` of the composed config (a command-line value for the same key wins)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra._internal.utils import create_config_search_path
    from hydra.core.override_parser.overrides_parser import OverridesParser

    multirun = "-m" in args or "--multirun" in args
    overrides = [a for a in args if not a.startswith("-")]
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR)))
    parser = OverridesParser.create(config_loader=loader)
    if not multirun:
        return [overrides]
    params: list[str] = []
    for first in BasicSweeper.split_arguments(parser.parse_overrides(overrides), None)[0][:1]:
        sweep_params = _compose(first, with_hydra=True).hydra.sweeper.params or {}
        params = [f"{k}={v}" for k, v in sweep_params.items()]
    return BasicSweeper.split_arguments(parser.parse_overrides(params + overrides), None)[0]


# -- composition -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_file_is_a_named_global_delta(name: str) -> None:
    text = (EXPERIMENTS_DIR / f"{name}.yaml").read_text()
    assert text.splitlines()[0] == "# @package _global_"
    assert _header_commands(name), "the header must give the exact command"
    raw = OmegaConf.load(EXPERIMENTS_DIR / f"{name}.yaml")
    assert raw.experiment == name, "experiment: <file name> groups the runs (W&B group, compare labels)"
    if name.startswith("sweep_"):
        assert raw.hydra.sweeper.params, "a sweep file sets hydra.sweeper.params"
    else:
        # a model file may set the knob already (model/smollm2_135m.yaml strips meta lines): another model shows it
        assert _delta(name) or _delta(name, "model=llama3"), "an ablation changes at least one key"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_composes_and_validates_with_smoke(name: str) -> None:
    cfg = _validate(_compose([f"+experiment={name}", "debug=smoke"]))
    assert cfg.experiment == name and cfg.logger.group == name and cfg.model.source == "tiny"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_header_commands_compose(name: str) -> None:
    for args in _header_commands(name):
        jobs = _expand(args)
        assert jobs, args
        for job in jobs:
            _validate(_compose(job))


@pytest.mark.parametrize(("name", "jobs"), [("sweep_models", 2), ("sweep_keep_ratio", 3), ("sweep_extension", 4),
                                            ("sweep_ablations", 8), ("sweep_recipes", 3),
                                            ("sweep_cpu_models", 2)])
def test_sweep_grids(name: str, jobs: int) -> None:
    combos = _expand(["-m", f"+experiment={name}"])
    assert len(combos) == jobs
    configs = [flatten(to_dict(_validate(_compose(c)))) for c in combos]
    assert len({json.dumps(c, sort_keys=True, default=str) for c in configs}) == jobs  # every job differs


def test_every_sweep_file_is_covered() -> None:
    assert set(SWEEPS) == {"sweep_models", "sweep_keep_ratio", "sweep_extension", "sweep_ablations", "sweep_recipes",
                           "sweep_cpu_models"}


def test_ablations_run_with_one_glob_command() -> None:
    excluded = "sweep_*,paper_scale,cpu_lengthen,capacity_probe,cpu_lengthen_qwen15b"
    combos = _expand(["-m", f"+experiment=glob(*,exclude=[{excluded}])"])
    assert sorted(c[0].split("=", 1)[1] for c in combos) == ABLATIONS


def test_full_finetune_generates_through_hf_or_vllm_not_a_server() -> None:
    from selflen.config import ConfigError

    _validate(_compose(["+experiment=full_finetune", "backend=vllm"]))
    with pytest.raises(ConfigError, match="needs backend=hf or backend=vllm .a server cannot load new full weights"):
        _validate(_compose(["+experiment=full_finetune", "backend=openai"]))


# -- smoke runs --------------------------------------------------------------------------------------------------
def _records(stage: Path) -> list[dict]:
    path = stage / "records.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _done(stage: Path) -> dict:
    return json.loads((stage / "done.json").read_text())


def _check_iterations(run: Path, summary: dict) -> None:
    assert sorted(summary["iterations"]) == ["1", "2", "3"]
    assert (run / "iter_3" / "finetune_ext" / "done.json").exists()


def _check_samples(run: Path, summary: dict) -> None:
    instructions = summary["iterations"]["1"]["instructions"]
    assert _done(run / "iter_1" / "generate")["counts"]["records"] == 4 * instructions


def _check_rounds(run: Path, summary: dict) -> None:
    assert all(r["rounds_ok"] <= 1 for r in _records(run / "iter_1" / "extend"))


def _check_min_ratio(run: Path, summary: dict) -> None:
    assert all(r["ratio"] > 1.5 for r in _records(run / "iter_1" / "extend") if r["status"] == "ok")


def _check_no_length_bias(run: Path, summary: dict) -> None:
    for stage in ("select_responses", "select"):
        assert "length_bias" not in _done(run / "iter_1" / stage)["drops"]
        assert _done(run / "iter_1" / stage)["rank_rule"] is False


def _check_no_line_removal(run: Path, summary: dict) -> None:
    originals = {r["id"]: r["response"] for r in _records(run / "iter_1" / "select")}
    rows = [json.loads(line) for line in (run / "iter_1" / "sft_data" / "ext_sft.jsonl").read_text().splitlines()]
    for row in rows:
        prompt = row["messages"][-2]["content"]
        assert all(line in prompt for line in originals[row["id"]].splitlines()), "every outline line kept"


def _check_lineage(run: Path, summary: dict) -> None:
    for role in ("gen", "ext"):
        assert _done(run / "iter_1" / f"finetune_{role}")["settings"]["finetune"]["lineage"] == "fresh"


def _check_full(run: Path, summary: dict) -> None:
    stage = run / "iter_1" / "finetune_gen"
    if _done(stage)["train"].get("trained"):
        assert (stage / "model" / "config.json").exists() and not (stage / "adapter").exists()


def _check_extensions_2(run: Path, summary: dict) -> None:
    ids = [r["id"] for r in _records(run / "iter_1" / "extend")]
    assert ids and {i.rsplit("-", 1)[1] for i in ids} == {"e0", "e1"}
    assert len(ids) == 2 * len([r for r in _records(run / "iter_1" / "select_responses") if r["status"] == "ok"])


def _check_judge(run: Path, summary: dict) -> None:
    drops = _done(run / "iter_1" / "instruct")["drops"]
    assert drops.get("judge_no", 0) + drops.get("judge_unparsed", 0) > 0  # a random model cannot say "yes"


def _check_prefix(run: Path, summary: dict) -> None:
    assert flatten(json.loads((run / "config.json").read_text()))["extend.prefix_separator"] == "\n\n"
    for r in _records(run / "iter_1" / "extend"):
        if r["status"] == "ok" and r["rounds_ok"]:
            assert "\n\n" in r["extended"]


def _check_reference_rules(run: Path, summary: dict) -> None:
    cfg = flatten(json.loads((run / "config.json").read_text()))
    assert (cfg["language.rules"], cfg["instruct.judge_parse"], cfg["extend.keep_rule"]) == ("reference",) * 3
    assert cfg["instruct.dedup_threshold"] is None and cfg["select.min_items"] == 0
    for stage in ("select_responses", "select"):  # no near-duplicate removal: only the length bias drops
        assert set(_done(run / "iter_1" / stage).get("drops") or {}) <= {"length_bias"}


def _check_no_stop_loops(run: Path, summary: dict) -> None:
    cfg = flatten(json.loads((run / "config.json").read_text()))
    assert (cfg["generate.stop_loops"], cfg["extend.stop_loops"]) == (False, False)
    assert not any(r["finish_reason"] == "loop" for r in _records(run / "iter_1" / "generate"))


def _check_config(key: str, value: Any) -> Callable[[Path, dict], None]:
    def check(run: Path, summary: dict) -> None:
        assert flatten(json.loads((run / "config.json").read_text()))[key] == value

    return check


CHECKS: dict[str, Callable[[Path, dict], None]] = {
    "iterations_3": _check_iterations, "samples_4": _check_samples, "rounds_1": _check_rounds,
    "min_ratio_1_5": _check_min_ratio, "no_length_bias": _check_no_length_bias,
    "no_line_removal": _check_no_line_removal, "lineage_fresh": _check_lineage, "full_finetune": _check_full,
    "keep_half": _check_config("extend.keep_fraction", 0.5),
    "rank_by_words": _check_config("select.length_unit", "words"),
    "extensions_2": _check_extensions_2, "judge_greedy": _check_judge,
    "prefix_blank_line": _check_prefix, "no_stop_strings": _check_config("sampling.stop", []),
    "pool_seeds": _check_config("instruct.pool", "seeds"),
    "collect_round": _check_config("length_control.collect", 8),
    "strip_meta": _check_config("extend.strip_meta", True),
    "hold_to_ratio": _check_config("extend.hold_to_ratio", True),
    "no_response_length_bias": _check_config("select.length_biased_responses", False),
    "no_extension_length_bias": _check_config("select.length_biased_extensions", False),
    "split_sentence_half": _check_config("split.strategy", "sentence_half"),
    "split_word_ratio": _check_config("split.strategy", "word_ratio"),
    "long_targets": _check_config("experiment", "long_targets"),
    "reference_rules": _check_reference_rules,
    "no_stop_loops": _check_no_stop_loops,
}


# a random model cannot pass these experiments' rules (the judge's "yes", the reference's filters): nothing reaches the
# SFT data, and the run stops at the first fine-tune with one line; the checks read the stages before it
NO_DATA_ON_A_RANDOM_MODEL = {"judge_greedy", "reference_rules"}


def test_every_ablation_has_a_check() -> None:
    assert set(CHECKS) == set(ABLATIONS)


@pytest.mark.parametrize("name", ABLATIONS)
def test_smoke_run(name: str, tmp_path: Path) -> None:
    from selflen.pipeline import run

    changed = _delta(name)
    overrides = [f"+experiment={name}", "debug=smoke", "logger=none"]
    overrides += [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in FAST.items() if k not in changed]
    overrides += [f"{k}={v}" for k, v in CAPS.items()]
    cfg = _validate(_compose(overrides), tmp_path / "run")
    run_dir = tmp_path / "run"
    if name in NO_DATA_ON_A_RANDOM_MODEL:  # a fine-tune on no example is an error, not a finished stage
        with pytest.raises(SelflenError, match="iter_1/finetune_gen: no training example in "):
            run(cfg)
        summary: dict = {}
    else:
        summary = run(cfg)
        assert (run_dir / "summary.json").exists()
    assert json.loads((run_dir / "config.json").read_text())["experiment"] == name
    CHECKS[name](run_dir, summary)


def test_sweep_file_runs_as_a_multirun(tmp_path: Path) -> None:
    """``python train.py -m +experiment=sweep_keep_ratio`` with a command-line list narrowing the grid to 2 jobs."""
    fast = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in FAST.items()]
    cmd = [sys.executable, "train.py", "-m", "+experiment=sweep_keep_ratio", "extend.keep_fraction=0.5,0.8",
           "debug=smoke", "logger=none", *fast, f"hydra.sweep.dir={tmp_path}"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = find_runs(tmp_path)
    configs = [json.loads((r / "config.json").read_text()) for r in runs]
    assert sorted(c["extend"]["keep_fraction"] for c in configs) == [0.5, 0.8]
    assert {c["experiment"] for c in configs} == {"sweep_keep_ratio"}
    assert all((r / "summary.json").exists() for r in runs)


@pytest.mark.parametrize("name", SCALES)
def test_scale_experiment_smoke_run_with_capped_counts(name: str, tmp_path: Path) -> None:
    from selflen.pipeline import run

    caps = {**FAST, **CAPS, "finetune.max_length": 1024, "finetune.bf16": "false", "finetune.batch_size": 2,
            "finetune.gradient_checkpointing": "false", "extend.attempts": 1, "extend.retries": 0,
            "generate.attempts": 0, "backend": "hf"}
    overrides = [f"+experiment={name}", "debug=smoke", "logger=none"]
    overrides += [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in caps.items()]
    cfg = _validate(_compose(overrides), tmp_path / "run")
    summary = run(cfg)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["experiment"] == name
    assert summary["iterations"] and (tmp_path / "run" / "iter_1" / "finetune_gen" / "done.json").exists()
