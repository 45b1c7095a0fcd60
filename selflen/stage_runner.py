"""Opening, skipping and running one stage: its folder, its hash from its settings and its inputs' hashes, its
log lines, metrics, tables, images and W&B artifact. The sequence of stages is ``selflen.pipeline``'s.

A stage's identity is the hash of its frozen settings and of the stages it reads (``Runner.open``), so what
shapes an output and what invalidates it cannot drift apart. Each stage that runs (not a skipped one) is logged:
its metrics against ``iteration``, its tables as ``<key>/iter_<step>``, its folder as a W&B artifact when it is
data, a model or an evaluation (``ARTIFACT_TYPES``), after declaring the artifacts it read (the lineage).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selflen.addresses import FINAL, StageAddress, at
from selflen.config import TrainConfig
from selflen.decontam import Decontaminator
from selflen.embedded import hashed_path
from selflen.engines import Engine, EnginePool, engine_from_config
from selflen.engines.journal import JOURNAL_NAME
from selflen.errors import SelflenError, check_stop
from selflen.groups import HASH_VERSION, identity
from selflen.integrity import engine_failed
from selflen.models import merged_model_dir, merges_adapters
from selflen.run_inputs import decontaminator
from selflen.stages.common import StageResult, engine_failure
from selflen.store import RunLayout, Stage, config_hash
from selflen.tracking import NullLogger

log = logging.getLogger(__name__)
ARTIFACT_TYPES = {"sft_data": "dataset", "length_control": "dataset", "finetune": "model",
                  "finetune_gen": "model", "finetune_ext": "model", "evaluate": "evaluation",
                  "regression": "evaluation"}
"""Stages whose folder is versioned as a W&B artifact, by artifact type (the loop's lineage)."""


class Runner:
    """Opens, skips or runs stages, chains their hashes and logs what they report."""

    def __init__(self, cfg: TrainConfig, layout: RunLayout, model_dir: Path, logger: NullLogger) -> None:
        self.cfg, self.layout, self.model_dir, self.logger = cfg, layout, model_dir, logger
        m = cfg.model
        path = hashed_path(m.source, m.path)
        identity = {"model": [m.name, m.source, path, m.revision, m.dtype, m.chat_format], "seed": cfg.seed}
        self.root_hash = config_hash(identity)
        merge = merges_adapters(cfg.backend)
        self.engines = EnginePool(
            model_dir,
            lambda d: engine_from_config(cfg.backend, cfg.model, d, cfg.seed, enable_lora=not merge),
            tag=config_hash(str(layout.root))[:8],  # adapter names unique to this run on a shared server
            merge=self.merged_folder if merge else None,
        )
        self.stages: dict[str, Stage] = {}
        self.manifests: dict[str, dict[str, Any]] = {}
        self.last_done: str | None = None  # the last stage finished (or found finished), for the stop message
        self.ran: set[str] = set()  # stages run (not skipped) in this session: only they are logged

    def open(self, point: int | str, name: str, settings: Any, inputs: list[str]) -> Stage:
        """The stage folder, its hash from its settings and its inputs' hashes (``root`` = the model itself)."""
        rel = at(point, name)
        for i in inputs:  # a stage address must name a stage; "root" and "seeds:<hash>" are the model and seeds
            if i != "root" and not i.startswith("seeds:"):
                StageAddress.parse(i)
        upstream = [self.stages[i] for i in inputs if i in self.stages]
        # a stage not opened in this run is the base model's place (iter_0/finetune_gen: nothing trained yet)
        hashes = [self.stages[i].hash if i in self.stages else self.root_hash for i in inputs]
        h = config_hash({"version": HASH_VERSION, "stage": name, "settings": identity(settings), "inputs": hashes})
        redo = name in self.cfg.redo or rel in self.cfg.redo or any(u.redone for u in upstream)
        st = Stage(self.layout.root / rel, rel, h, redo=redo)
        self.stages[rel] = st
        return st

    def run(self, point: int | str, name: str, settings: Any, inputs: list[str],
            body: Callable[[Stage], StageResult]) -> Stage:
        """Run ``body(stage) -> StageResult`` unless the stage is done with the same hash; log its result."""
        check_stop()
        st = self.open(point, name, settings, inputs)
        if st.done:
            log.info("stage %s already done (same settings): skipped", st.name)
            self.manifests[st.name] = st.manifest()
            self.last_done = st.name
            return st
        log.info("stage %s: started", st.name)
        for i in inputs:  # lineage: the artifacts this stage reads
            if i in self.stages and i.rsplit("/", 1)[-1] in ARTIFACT_TYPES:
                self.logger.use_artifact(i)
        before, served_from = self.engines.stats(), len(self.engines.served)
        try:
            with self.engines.journaled(st.dir / JOURNAL_NAME) as journal:
                res: StageResult = body(st)
            self.check_engine_failures(st)
        except SelflenError as err:
            st.close()
            err.stage = st.name  # type: ignore[attr-defined]
            err.last_done = self.last_done  # type: ignore[attr-defined]
            raise
        if journal.reused:
            res.extra = {**res.extra, "journal_reused": journal.reused}
        journal.remove()  # the records hold every result now (and done.json must not list the journal)
        self.ran.add(st.name)
        engine_stats = {k: v for k, v in (self.engines.stats() - before).items() if v}
        if engine_stats:  # retries and failed requests of this stage (a server that came and went)
            log.warning("stage %s: engine %s", st.name, engine_stats)
            res.extra = {**res.extra, "engine": engine_stats}
        served = list(dict.fromkeys(self.engines.served[served_from:]))
        if served:  # which model generated this stage: "base" or the run-unique adapter name (<tag>-gen1)
            res.extra = {**res.extra, "served_by": served}
        manifest = st.finish(res.counts, res.drops, {"metrics": res.metrics, **res.extra})
        self.last_done = st.name
        self.manifests[st.name] = manifest
        metrics = {f"{name}/{k}": v for k, v in res.counts.items()}
        metrics.update({f"{name}/drop/{k}": v for k, v in res.drops.items()})
        step = self.cfg.iterations.count + 1 if point == FINAL else int(point)
        self.logger.log({**metrics, **res.metrics, "iteration": step})
        for key, path in res.images.items():
            self.logger.log_image(key, path)
        for key, table in res.tables.items():  # one table per iteration, its first column the iteration
            self.logger.log_table(f"{key}/iter_{step}", ["iteration", *table.columns],
                                  [[step, *row] for row in table.rows])
        kind = ARTIFACT_TYPES.get(name)
        if kind is not None:
            self.logger.log_artifact(st.name, kind, st.dir, {"stage": st.name, "hash": st.hash, "iteration": step,
                                                             "counts": res.counts, "inputs_stages": inputs})
        log.info("stage %s: done in %.1f s %s", st.name, manifest["seconds"], res.counts)
        return st

    def check_engine_failures(self, st: Stage) -> None:
        """A stage holding records the engine failed is not done: one line naming the backend and the cause (the
        next run of the same command retries exactly those records)."""
        records = st.records()
        failed = sum(engine_failed(r) for r in records)
        if failed:
            raise engine_failure(st.name, self.cfg.backend.name, failed, len(records), self.engines.last_error())

    def merged_folder(self, adapter: Path, label: str) -> Path:
        """``adapter`` folded into a copy of the base model, under ``<run>/merged/`` (safe to delete: rebuilt on
        demand), saved in the engine's dtype; a running vLLM engine is closed before a copy is built (memory)."""
        dtype = self.cfg.backend.dtype or self.cfg.model.dtype
        return merged_model_dir(self.model_dir, adapter, self.layout.root / "merged", label, dtype,
                                trust_remote_code=self.cfg.model.trust_remote_code,
                                before_build=self.engines.close_exclusive)

    def decontaminator(self) -> Decontaminator | None:
        """The benchmark n-gram index, built once per run (None when decontamination is off)."""
        if not hasattr(self, "_decontam"):
            self._decontam = decontaminator(self.cfg) if self.cfg.instruct.decontaminate else None
        return self._decontam

    def role_engine(self, role: str, k: int) -> Engine:
        """The engine playing ``role`` in iteration ``k``: the base model in iteration 1, then what the role's
        training in iteration k-1 produced (an adapter on the base engine, or a full model's own engine)."""
        folder, j = self.layout.current(role, k - 1)
        return self.engines.for_folder(folder, f"{role}{j}")

    def ok(self, rel: str) -> list[dict[str, Any]]:
        return [r for r in self.stages[rel].records() if r["status"] == "ok"] if rel in self.stages else []
