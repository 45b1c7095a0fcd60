"""What a run reads besides its own stages: the benchmark files (checked before anything starts, fetched once when
online), the held-out evaluation slice, the seed instructions and the decontamination set."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from evaluation.benchmarks import DECONTAMINATION_BENCHMARKS, ensure_benchmarks
from selflen.config import TrainConfig, to_config
from selflen.decontam import Decontaminator, default_data_dir
from selflen.engines import Engine, Request, SamplingParams, engine_from_config
from selflen.env import apply_offline_defaults, online_endpoints, probe, unreachable
from selflen.integrity import safetensors_problem
from selflen.jsonl import RowError
from selflen.models import ModelNotFound, resolve_model
from selflen.seeds import load_seeds
from selflen.stages import evaluate
from selflen.store import RunLayout, StoreError, read_json
from selflen.tracking import wandb_mode

log = logging.getLogger(__name__)


def finished_run(run_dir: Path) -> tuple[RunLayout, TrainConfig]:
    """The layout and config of a run that ``train.py`` wrote (what the bench scripts re-run parts of)."""
    layout = RunLayout(Path(run_dir).resolve())
    raw = read_json(layout.config_path, fix="give the folder of a run that train.py wrote (its config.json is "
                                            "rewritten by re-running the same command)")
    if raw is None:
        raise SystemExit(f"{layout.config_path} is missing: give the folder of a run that train.py wrote")
    return layout, to_config(raw)


@contextlib.contextmanager
def warm_base_engine(cfg: TrainConfig) -> Iterator[Engine]:
    """The run's backend serving its base model without LoRA, warmed by a few short requests, so the first side a
    bench script times does not pay the engine's warm-up."""
    with engine_from_config(cfg.backend, cfg.model, model_folder(cfg), cfg.seed, enable_lora=False) as engine:
        engine.generate([Request([{"role": "user", "content": "Hello."}], SamplingParams(max_new_tokens=16, seed=i))
                         for i in range(4)])  # fmt: skip
        yield engine


def model_folder(cfg: TrainConfig) -> Path:
    """The configured model as a local folder (converted, downloaded or built once into the cache)."""
    m = cfg.model
    folder = resolve_model(m.source, m.path, cache_dir=cfg.paths.cache_dir, online=cfg.online,
                           chat_format=m.chat_format, revision=m.revision, seed=cfg.seed)  # fmt: skip
    check_model_weights(Path(folder))
    return folder


def check_model_weights(folder: Path) -> None:
    """A model folder must hold whole weights (``*.safetensors`` or ``*.bin``) before any engine loads it: one
    line naming the folder instead of a loader's traceback after the first stages ran."""
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    problem = "has no weights (*.safetensors, *.bin)" if not weights else next(
        filter(None, (safetensors_problem(w) for w in weights)), None)
    if problem:
        raise ModelNotFound(f"model folder {folder} {problem}; point model.path at a complete model folder (or "
                            "download/convert it again)")


def preflight(cfg: TrainConfig) -> TrainConfig:
    """Before any folder, lock or model work: ``online=false`` forces this process and its children offline; W&B's
    mode is settled (``tracking.wandb_mode``: with ``logger.mode=auto`` a W&B that does not answer means offline,
    said in the log); with ``online=true`` the hub (and W&B when it logs online) must answer within seconds.
    Check that the benchmark files the run needs are here (fetching them once when online); returns ``cfg``
    pointing at the folder that holds them and with the W&B mode it logs in. Evaluation and decontamination are
    only ever off when the config says so (``evaluate.enabled=false``, ``instruct.decontaminate=false``; the
    summary records it)."""
    if cfg.online is False:
        apply_offline_defaults(online=False)
    mode = wandb_mode(cfg.logger.mode, cfg.online)[0] if cfg.logger.name == "wandb" else cfg.logger.mode
    if mode == "online" and cfg.logger.mode == "auto" and (problem := probe(online_endpoints(True)[-1])):
        log.warning("W&B logs offline: %s (`wandb sync` uploads the run later)", problem)
        mode = "offline"
    if mode != cfg.logger.mode:
        cfg = replace(cfg, logger=replace(cfg.logger, mode=mode))
    if cfg.online and (problem := unreachable(online_endpoints(mode == "online"))) is not None:
        raise StoreError(problem)

    names = ([cfg.evaluate.benchmark] if cfg.evaluate.enabled else []) + (
        list(DECONTAMINATION_BENCHMARKS) if cfg.instruct.decontaminate else [])
    if not names:
        return cfg
    try:
        folder = ensure_benchmarks(list(dict.fromkeys(names)), cfg.paths.data_dir or None, cfg.paths.cache_dir,
                                   online=cfg.online)
    except FileNotFoundError as err:
        raise StoreError(f"{err}; or switch them off explicitly with evaluate.enabled=false "
                         "instruct.decontaminate=false") from None
    return replace(cfg, paths=replace(cfg.paths, data_dir=str(folder)))


FORKED = ((0, ("instruct", "evaluate")),
          (1, ("instruct", "generate", "select_responses", "extend", "select", "sft_data")))
"""What ``paths.fork_from`` copies: the self-instructed split and the base evaluation, and iteration 1's data."""


def fork_source(source: str | Path) -> RunLayout:
    """The run ``paths.fork_from`` names, checked before this run makes its folder."""
    src = RunLayout(Path(source).expanduser().resolve())
    if not (src.stage(1, "sft_data") / "done.json").is_file():
        raise StoreError(f"paths.fork_from={source}: no finished iter_1/sft_data there; give the folder of a run "
                         "that finished its first iteration's sft_data")
    return src


def fork_run(source: str | Path, layout: RunLayout) -> list[str]:
    """Start this run from a finished run's frozen data: copy its stages in ``FORKED`` that this run lacks, so
    a sweep of fine-tuning recipes (``iterations=one``) trains and evaluates every recipe on the same SFT data and
    the same base evaluation. The copies are checked like any finished stage: a setting that shapes them and
    differs from the source is refused with the stage's hash error. Returns the stages copied."""
    src = fork_source(source)
    copied = []
    for point, names in FORKED:
        for name in names:
            origin, target = src.stage(point, name), layout.stage(point, name)
            if (origin / "done.json").is_file() and not target.exists():
                shutil.copytree(origin, target)
                copied.append(layout.rel(target))
    return copied


def eval_rows(cfg: TrainConfig) -> list[dict[str, Any]]:
    """The held-out slice every evaluation point answers; a missing benchmark stops the run before any stage."""
    data_dir = Path(cfg.paths.data_dir).expanduser() if cfg.paths.data_dir else None
    try:
        return evaluate.load_rows(cfg.evaluate, cfg.seed, data_dir)  # preflight fetched it
    except RowError as err:
        raise StoreError(f"{err}; fix or replace that benchmark file (paths.data_dir / SELFLEN_DATA_DIR), or "
                         "switch evaluation off with evaluate.enabled=false") from None
    except FileNotFoundError as err:
        raise StoreError(
            f"{str(err).splitlines()[0]} -- set paths.data_dir (or SELFLEN_DATA_DIR) to the benchmark folder, "
            "or switch evaluation off with evaluate.enabled=false"
        ) from None


def seed_prompts(language: str) -> list[str]:
    return [s.prompt for s in load_seeds(language)]


def decontaminator(cfg: TrainConfig) -> Decontaminator | None:
    """The benchmark n-gram index decontamination checks instructions against (None when it indexes nothing)."""
    data_dir = Path(cfg.paths.data_dir).expanduser() if cfg.paths.data_dir else default_data_dir()
    if data_dir is None or not data_dir.exists():
        raise StoreError(
            "decontamination needs the benchmark files (LonGen, LongBench-Write): set paths.data_dir or "
            "SELFLEN_DATA_DIR, or switch it off with instruct.decontaminate=false"
        )
    try:
        dec = Decontaminator.from_data_dir(data_dir)
    except ValueError as err:  # a row that is not JSON (FILE:LINE), or bytes that are not UTF-8
        what = f"a benchmark file under {data_dir} is not UTF-8 text" if isinstance(err, UnicodeDecodeError) else err
        raise StoreError(f"{what}; fix or replace that benchmark file (paths.data_dir / SELFLEN_DATA_DIR), or "
                         "switch decontamination off with instruct.decontaminate=false") from None
    return dec if dec.size else None
