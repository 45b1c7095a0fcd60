"""The macro-iteration loop, and nothing else: each stage reads files and writes files under
``<run_dir>/iter_<k>/<stage>/``; a finished stage (``done.json`` with a matching config hash) is skipped, a
half-finished one continues from the ids it has.

    for k in 1..K: instruct -> generate -> extend -> select -> sft_data -> finetune_gen, finetune_ext -> evaluate
    then: length_control -> finetune_final -> evaluate_final
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from selflen import cards, plots
from selflen.config import TrainConfig, to_dict
from selflen.engines import Engine, SamplingParams, build_engine
from selflen.finetune import TrainSettings
from selflen.finetune import train as train_role
from selflen.models import resolve_model
from selflen.stages import extend, generate, instruct, length_control, select, sft_data
from selflen.stages.common import Chat
from selflen.store import RunLock, Stage, config_hash, write_json
from selflen.text import FilterRules
from selflen.tracking import NullLogger, open_logger

log = logging.getLogger(__name__)
ROLES = ("gen", "ext")


class Loop:
    """State of one run: config, model folder, engine (lazy), logger and the chain of stage hashes."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, model_dir: Path, logger: NullLogger) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.model_dir = model_dir
        self.logger = logger
        self.chat = Chat(cfg.model.system_prompt)
        self._engines: dict[str, Engine] = {}  # one per model folder (a full fine-tune makes a new folder)
        self.redo_from_here = False
        self.timings: dict[str, float] = {}
        self.manifests: dict[str, dict] = {}

    # -- engine lifetime ----------------------------------------------------------------------------
    def engine(self, model_dir: Path | None = None) -> Engine:
        key = str(model_dir or self.model_dir)
        if key not in self._engines:
            self._engines[key] = self._build_engine(Path(key))
        return self._engines[key]

    def _build_engine(self, model_dir: Path) -> Engine:
        b, m = self.cfg.backend, self.cfg.model
        if b.name == "hf":
            return build_engine(
                "hf",
                str(model_dir),
                dtype=m.dtype,
                device=b.device,
                batch_size=b.batch_size,
                max_model_len=m.max_model_len,
                trust_remote_code=m.trust_remote_code,
            )
        if b.name == "vllm":
            return build_engine(
                "vllm",
                str(model_dir),
                dtype=m.dtype,
                max_model_len=m.max_model_len,
                max_lora_rank=b.max_lora_rank,
                gpu_memory_utilization=b.gpu_memory_utilization,
                tensor_parallel_size=b.tensor_parallel_size,
                enforce_eager=b.enforce_eager,
                cpu_kvcache_gb=b.cpu_kvcache_gb,
                seed=self.cfg.seed,
                trust_remote_code=m.trust_remote_code,
            )
        return build_engine(
            "openai",
            m.name if m.source == "hub" else str(model_dir),
            base_url=b.base_url,
            api_key_env=b.api_key_env,
            concurrency=b.concurrency,
            timeout_s=b.timeout_s,
            max_retries=b.max_retries,
            load_adapters=True,
        )

    def close_engine(self) -> None:
        """Free the engines before training (vLLM does not reliably release device memory otherwise)."""
        while self._engines:
            self._engines.popitem()[1].close()

    def trained(self, role: str, k: int) -> Path | None:
        """The folder that ``finetune_<role>`` of iteration ``k`` produced: a LoRA adapter or a full model."""
        stage = self.run_dir / ("final/finetune" if role == "final" else f"iter_{k}/finetune_{role}")
        if (stage / "adapter" / "adapter_config.json").exists():
            return stage / "adapter"
        if (stage / "model" / "config.json").exists():
            return stage / "model"
        return None

    def role_model(self, role: str, k: int) -> tuple[Engine, str | None]:
        """The engine and adapter name that play ``role`` in iteration ``k`` (the base model in iteration 1)."""
        folder = self.trained(role, k - 1) if k > 1 else None
        if folder is not None and folder.name == "model":
            return self.engine(folder), None
        return self.engine(), self.adapter(role, k)

    def adapter(self, role: str, k: int) -> str | None:
        """Adapter name for ``role`` in iteration ``k`` (iteration 1 uses the base model), loaded on demand."""
        path = self.run_dir / f"iter_{k - 1}" / f"finetune_{role}" / "adapter"
        if k <= 1 or not (path / "adapter_config.json").exists():
            return None
        name = f"{role}{k - 1}"
        self.engine().add_adapter(name, str(path))
        return name

    # -- stages -------------------------------------------------------------------------------------
    def stage(self, rel: str, settings: Any) -> Stage:
        """Open a stage folder; its hash covers its settings and the hash of every stage before it."""
        h = config_hash({"settings": settings, "upstream": getattr(self, "_chain", "")})
        self._chain = h
        redo = self.redo_from_here or rel.split("/")[-1] in self.cfg.redo
        st = Stage(self.run_dir / rel, rel, h, redo=redo)
        if redo and not st.done:
            self.redo_from_here = True
        return st

    def finish(self, st: Stage, summary: dict[str, Any], step: int) -> dict[str, Any]:
        manifest = st.finish(
            summary.get("counts", {}),
            summary.get("drops"),
            {k: v for k, v in summary.items() if k not in ("counts", "drops")},
        )
        self.record(st, manifest, step)
        return manifest

    def record(self, st: Stage, manifest: dict[str, Any], step: int) -> None:
        self.manifests[st.name] = manifest
        self.timings[st.name] = manifest.get("seconds", 0.0)
        name = st.name.split("/")[-1]
        metrics = {f"{name}/{k}": v for k, v in manifest.get("counts", {}).items()}
        metrics.update({f"{name}/drop/{k}": v for k, v in manifest.get("drops", {}).items()})
        metrics.update(manifest.get("metrics", {}))
        metrics["iteration"] = step
        self.logger.log(metrics)

    def run_stage(self, rel: str, settings: Any, body, step: int) -> tuple[Stage, dict]:  # noqa: ANN001
        st = self.stage(rel, settings)
        if st.done:
            log.info("stage %s already done (same config): skipped", rel)
            manifest = st.manifest()
            self.record(st, manifest, step)
            return st, manifest
        log.info("stage %s: started", rel)
        t0 = time.time()
        summary = body(st)
        manifest = self.finish(st, summary, step)
        log.info("stage %s: done in %.1f s %s", rel, time.time() - t0, manifest.get("counts"))
        return st, manifest

    # -- settings from config -----------------------------------------------------------------------
    def rules(self) -> FilterRules:
        lang = self.cfg.language
        return FilterRules(
            end_punct=lang.end_punct,
            ngram_n=lang.ngram_n,
            ngram_tokenizer=lang.ngram_tokenizer,
            meta_words=tuple(lang.meta_words),
            counter=lang.counter,
        )

    def sampling(self, max_new_tokens: int) -> SamplingParams:
        s = self.cfg.loop.sampling
        return SamplingParams(
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,
            repetition_penalty=s.repetition_penalty,
            max_new_tokens=max_new_tokens,
        )

    def train_settings(self, epochs: float | None = None) -> TrainSettings:
        f = self.cfg.finetune
        return TrainSettings(
            method=f.method,
            r=f.lora.r,
            alpha=f.lora.alpha,
            dropout=f.lora.dropout,
            target_modules=f.lora.target_modules,
            learning_rate=f.learning_rate,
            epochs=epochs or f.epochs,
            batch_size=f.batch_size,
            grad_accum=f.grad_accum,
            warmup_ratio=f.warmup_ratio,
            scheduler=f.scheduler,
            max_length=f.max_length,
            batching=f.batching,
            save_steps=f.save_steps,
            logging_steps=f.logging_steps,
            bf16=f.bf16,
            gradient_checkpointing=f.gradient_checkpointing,
            seed=self.cfg.seed,
        )


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) the whole loop for ``cfg``; returns the summary also written to ``summary.json``."""
    run_dir = Path(cfg.paths.run_dir).expanduser().resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        model_dir = resolve_model(
            cfg.model.source,
            cfg.model.path,
            cache_dir=cfg.paths.cache_dir,
            online=cfg.online,
            chat_format=cfg.model.chat_format,
            revision=cfg.model.revision,
            seed=cfg.seed,
        )
        write_json(run_dir / "config.json", to_dict(cfg))
        lg = cfg.logger
        with open_logger(
            lg.name,
            run_dir=run_dir,
            config=to_dict(cfg),
            project=lg.project,
            group=lg.group,
            tags=[*lg.tags, cfg.model.name, cfg.backend.name],
            mode=lg.mode,
            entity=lg.entity,
            online=cfg.online,
        ) as logger:
            loop = Loop(cfg, run_dir, model_dir, logger)
            try:
                return run_loop(loop)
            finally:
                loop.close_engine()


def model_info(loop: Loop) -> dict[str, Any]:
    """The model's identity for cards: id, source, revision and a hash of the loaded folder's config.json."""
    m = loop.cfg.model
    return cards.describe_model(m.name, loop.model_dir, source=m.source, revision=m.revision)


def write_data_card(loop: Loop, folder: Path, title: str, stages: list[str], point: int | str) -> None:
    """README card of a data folder, from the config and the manifests of the stages that produced it."""
    cfg = loop.cfg
    manifests = {s: loop.manifests.get(s, {}) for s in stages}
    counts = {f"{s}/{c}": n for s, m in manifests.items() for c, n in m.get("counts", {}).items()}
    drops = {f"{s}/{r}": n for s, m in manifests.items() for r, n in m.get("drops", {}).items()}
    sampling = {
        **_asdict(cfg.loop.sampling),
        "instruct_max_new_tokens": cfg.length.instruct_max_new_tokens,
        "generate_max_new_tokens": cfg.length.generate_max_new_tokens,
        "extend_max_new_tokens": cfg.length.extend_max_new_tokens,
        "samples_per_prompt": cfg.loop.samples_per_prompt,
        "seed": cfg.seed,
        "backend": cfg.backend.name,
    }
    filters = {
        **_asdict(loop.rules()),
        "judge": cfg.loop.judge,
        "decontaminate": cfg.loop.decontaminate,
        "drop_truncated": cfg.loop.drop_truncated,
        "dedup_threshold": cfg.loop.dedup_threshold,
        "split": cfg.split.strategy,
        "split_ratio": cfg.split.ratio,
        "rounds": cfg.length.rounds,
        "keep_fraction": cfg.length.keep_fraction,
        "min_ratio": cfg.length.min_ratio,
        "length_biased": cfg.loop.length_biased,
        "p_keep_line": cfg.loop.p_keep_line,
    }
    cards.write_data_card(
        folder,
        title=title,
        model=model_info(loop),
        seeds=cards.describe_seeds(cfg.language.name),
        sampling=sampling,
        filters=filters,
        counts=counts,
        drops=drops,
        licence_note=cards.default_licence_note(cfg.model.name),
        extra={
            "iteration": point,
            "run_dir": str(loop.run_dir),
            "experiment": cfg.experiment,
            "debug": cfg.debug,
            "git_commit": manifests[stages[-1]].get("git_commit"),
        },
    )


def _asdict(obj: Any) -> Any:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def iteration(loop: Loop, k: int) -> dict[str, Any]:
    """One macro-iteration; returns its per-role word statistics."""
    cfg = loop.cfg
    lc, length, lang = cfg.loop, cfg.length, cfg.language
    d = f"iter_{k}"
    seeds_text = _seed_prompts(lang.name)
    decontam = _decontaminator(cfg) if lc.decontaminate else None
    inst_s = instruct.InstructSettings(
        count=lc.instructions,
        attempts=lc.instruct_attempts,
        language=lang.name,
        label=lang.instruction_label,
        min_words=lc.min_instruction_words,
        max_words=lc.max_instruction_words,
        judge=lc.judge,
        grow_pool=lc.grow_pool,
        dedup_threshold=lc.dedup_threshold,
        counter=lang.counter,
        sampling=loop.sampling(length.instruct_max_new_tokens),
        seed=cfg.seed,
        iteration=k,
    )
    inst_st, _ = loop.run_stage(
        f"{d}/instruct",
        {**_asdict(inst_s), "decontam": decontam is not None, "model": str(cfg.model.name)},
        lambda st: instruct.run(st, loop.engine(), seeds_text, inst_s, loop.chat, decontam),
        k,
    )
    instructions = [r for r in inst_st.records() if r["status"] == "ok"]

    gen_s = generate.GenerateSettings(
        samples=lc.samples_per_prompt,
        attempts=lc.generate_attempts,
        rules=loop.rules(),
        sampling=loop.sampling(length.generate_max_new_tokens),
        adapter=None,
        seed=cfg.seed,
        drop_truncated=lc.drop_truncated,
    )
    gen_st, _ = loop.run_stage(
        f"{d}/generate",
        _asdict(gen_s),
        lambda st: _with_role(
            loop,
            "gen",
            k,
            lambda eng, name: generate.run(st, eng, instructions, dataclasses.replace(gen_s, adapter=name), loop.chat),
        ),
        k,
    )
    responses = [r for r in gen_st.records() if r["status"] == "ok"]

    ext_s = extend.ExtendSettings(
        rounds=length.rounds,
        attempts=length.attempts,
        min_ratio=length.min_ratio,
        keep_fraction=length.keep_fraction,
        split=cfg.split.strategy,
        split_ratio=cfg.split.ratio,
        rules=loop.rules(),
        language=lang.name,
        sampling=loop.sampling(length.extend_max_new_tokens),
        adapter=None,
        seed=cfg.seed,
        drop_truncated=lc.drop_truncated,
        chunk=max(1, cfg.backend.batch_size // 2),
    )
    ext_st, _ = loop.run_stage(
        f"{d}/extend",
        {**_asdict(ext_s), "n": lc.extensions_per_response},
        lambda st: _with_role(
            loop,
            "ext",
            k,
            lambda eng, name: extend.run(
                st, eng, responses, dataclasses.replace(ext_s, adapter=name), loop.chat, lc.extensions_per_response
            ),
        ),
        k,
    )
    extended = [r for r in ext_st.records() if r["status"] == "ok"]

    sel_st, _ = loop.run_stage(
        f"{d}/select",
        {"length_biased": lc.length_biased, "dedup": lc.dedup_threshold, "min_items": lc.length_bias_min_items},
        lambda st: select.run(
            st,
            extended,
            length_biased=lc.length_biased,
            dedup_threshold=lc.dedup_threshold,
            seed=cfg.seed,
            iteration=k,
            min_items=lc.length_bias_min_items,
        ),
        k,
    )
    kept = [r for r in sel_st.records() if r["status"] == "ok"]

    data_st, _ = loop.run_stage(
        f"{d}/sft_data",
        {"p_keep": lc.p_keep_line, "joiner": lang.line_joiner, "limit": lc.max_train_examples},
        lambda st: sft_data.run(
            st,
            kept,
            chat=loop.chat,
            p_keep=lc.p_keep_line,
            joiner=lang.line_joiner,
            language=lang.name,
            seed=cfg.seed,
            limit=lc.max_train_examples,
        ),
        k,
    )
    write_data_card(
        loop,
        data_st.dir,
        f"selflen iteration {k} SFT data ({cfg.model.name})",
        [f"{d}/{s}" for s in ("instruct", "generate", "extend", "select", "sft_data")],
        k,
    )
    loop.close_engine()
    gen_data, ext_data = sft_data.paths(data_st.dir)
    for role, data in (("gen", gen_data), ("ext", ext_data)):
        finetune_stage(loop, f"{d}/finetune_{role}", role, data, k)
    _log_samples(loop, kept, k)
    return {
        "generator": [r["words"] for r in responses],
        "extender": [r["words"] for r in extended],
        "instructions": len(instructions),
        "accepted_extensions": len(extended),
        "kept": len(kept),
    }


def _with_role(loop: Loop, role: str, k: int, body):  # noqa: ANN001, ANN202
    """Call ``body(engine, adapter_name)`` with the model that plays ``role`` in iteration ``k``."""
    engine, name = loop.role_model(role, k)
    return body(engine, name)


def finetune_stage(
    loop: Loop,
    rel: str,
    role: str,
    data: Path,
    k: int,
    epochs: float | None = None,
    init_adapter: Path | None = None,
    base_dir: Path | None = None,
) -> Path | None:
    """Train one role into ``<stage>/adapter`` (LoRA) or ``<stage>/model`` (full); returns that folder."""
    cfg = loop.cfg
    settings = loop.train_settings(epochs)
    prev = loop.trained(role, k - 1) if role != "final" else None
    base_dir = base_dir or loop.model_dir
    if cfg.finetune.lineage == "continue" and prev is not None:
        if prev.name == "adapter" and init_adapter is None:
            init_adapter = prev  # the reference's cumulative adapter
        elif prev.name == "model":
            base_dir = prev  # full fine-tuning continues from the previous iteration's weights
    out_name = "adapter" if settings.method == "lora" else "model"

    def body(st: Stage) -> dict:
        def on_log(m: dict) -> None:
            loop.logger.log({f"train/{role}/loss": m["loss"], f"train/{role}/step": m["step"], "iteration": k})

        stats = train_role(
            base_dir,
            data,
            st.dir / out_name,
            settings,
            init_adapter=init_adapter,
            on_log=on_log,
            dtype=cfg.model.dtype,
        )
        return {
            "counts": {"examples": stats["examples"], "dropped_too_long": stats["dropped_too_long"]},
            "drops": {"too_long": stats["dropped_too_long"]},
            "train": stats,
            "lineage": cfg.finetune.lineage,
            "init_adapter": str(init_adapter) if init_adapter else None,
            "metrics": {f"train/{role}/final_loss": stats.get("train_loss") or 0.0},
        }

    settings_key = {**_asdict(settings), "init": str(init_adapter), "base": str(base_dir), "data": str(data)}
    st, manifest = loop.run_stage(rel, settings_key, body, k)
    out = st.dir / out_name
    trained = bool(manifest.get("train", {}).get("trained"))
    if trained and out.exists():
        cards.write_adapter_card(
            out,
            base_model=model_info(loop),
            role=role,
            iteration="final" if role == "final" else k,
            lineage=cfg.finetune.lineage,
            train_stats=manifest["train"],
            data_path=data,
            method=settings.method,
            settings=_asdict(settings),
            init_adapter=init_adapter,
            extra={"run_dir": str(loop.run_dir), "stage": rel, "experiment": cfg.experiment, "debug": cfg.debug},
        )
    return out if trained else None


def _log_samples(loop: Loop, kept: list[dict], k: int) -> None:
    rows = [
        [k, r["instruction"], r["response"], r["extended"], r["words_before"], r["words"]]
        for r in kept[: loop.cfg.logger.samples]
    ]
    if rows:
        loop.logger.log_table(
            f"samples/iter_{k}",
            ["iteration", "instruction", "answer", "extension", "answer_words", "extension_words"],
            rows,
        )


def final_stages(loop: Loop) -> dict[str, Any]:
    """Pool long answers of all iterations, add length constraints, and run the final length-following SFT."""
    cfg = loop.cfg
    lcc = cfg.length_control
    pooled_raw = []
    for k in range(1, cfg.loop.iterations + 1):
        for rec in Stage.read_records(loop.run_dir / f"iter_{k}" / "generate"):
            if rec["status"] == "ok":
                pooled_raw.append(
                    {
                        "id": rec["id"],
                        "query": rec["instruction"],
                        "answer": rec["response"],
                        "words": rec["words"],
                        "source": f"iter_{k}/generate",
                    }
                )
        for rec in Stage.read_records(loop.run_dir / f"iter_{k}" / "extend"):
            if rec["status"] == "ok":
                pooled_raw.append(
                    {
                        "id": rec["id"],
                        "query": rec["instruction"],
                        "answer": rec["extended"],
                        "words": rec["words"],
                        "source": f"iter_{k}/extend",
                    }
                )
    pooled = length_control.pool(pooled_raw, lcc.min_words, lcc.max_words)
    st, manifest = loop.run_stage(
        "final/length_control",
        {**_asdict(lcc), "n": len(pooled)},
        lambda s: length_control.run(
            s,
            loop.engine() if lcc.rewrite == "llm" else None,
            pooled,
            chat=loop.chat,
            language=cfg.language.name,
            mix=lcc.mix,
            rewrite=lcc.rewrite,
            seed=cfg.seed,
            max_new_tokens=lcc.rewrite_max_new_tokens,
        ),
        cfg.loop.iterations + 1,
    )
    write_data_card(
        loop, st.dir, f"selflen length-control SFT data ({cfg.model.name})", ["final/length_control"], "final"
    )
    loop.close_engine()
    out = {"length_control_examples": manifest["counts"].get("examples", 0)}
    if lcc.final_sft and out["length_control_examples"]:
        last = loop.trained("gen", cfg.loop.iterations)  # the final SFT starts from the last Generator
        init = last if last is not None and last.name == "adapter" else None
        base = last if last is not None and last.name == "model" else None
        folder = finetune_stage(
            loop,
            "final/finetune",
            "final",
            st.dir / length_control.LC_FILE,
            cfg.loop.iterations + 1,
            epochs=lcc.epochs,
            init_adapter=init,
            base_dir=base,
        )
        out["final_model"] = str(folder) if folder else None
        if cfg.eval.enabled and folder is not None:
            _evaluate(loop, cfg.loop.iterations + 1, rel="final/evaluate", adapter_dir=folder)
    return out


def run_loop(loop: Loop) -> dict[str, Any]:
    cfg = loop.cfg
    per_iter: dict[int, dict[str, Any]] = {}
    for k in range(1, cfg.loop.iterations + 1):
        per_iter[k] = iteration(loop, k)
        if cfg.eval.enabled:
            _evaluate(loop, k)
    final = final_stages(loop) if cfg.length_control.enabled else {}
    return write_summary(loop, per_iter, final)


def _evaluate(loop: Loop, k: int, rel: str | None = None, adapter_dir: Path | None = None) -> None:
    from selflen.stages import evaluate

    evaluate.run_for_iteration(loop, k, rel=rel, adapter_dir=adapter_dir)
    loop.close_engine()


def write_summary(loop: Loop, per_iter: dict[int, dict[str, Any]], final: dict[str, Any]) -> dict[str, Any]:
    import statistics as stats_

    plots_dir = loop.run_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    words = {k: {"generator": v["generator"], "extender": v["extender"]} for k, v in per_iter.items()}
    means = {
        role: [round(stats_.fmean(w[role]), 1) if w[role] else 0.0 for w in words.values()]
        for role in ("generator", "extender")
    }
    hist = plots.length_histogram(words, plots_dir / "length_histogram.png")
    growth = plots.growth_curve(means, plots_dir / "growth.png")
    for p in (hist, growth):
        loop.logger.log_image(f"plots/{p.stem}", p)
    summary = {
        "run_dir": str(loop.run_dir),
        "model": loop.cfg.model.name,
        "backend": loop.cfg.backend.name,
        "iterations": {
            k: {
                "generator_mean_words": means["generator"][i],
                "extender_mean_words": means["extender"][i],
                "instructions": v["instructions"],
                "accepted_extensions": v["accepted_extensions"],
                "kept": v["kept"],
            }
            for i, (k, v) in enumerate(per_iter.items())
        },
        "stage_seconds": loop.timings,
        "plots": [str(hist), str(growth)],
        **final,
        "eval": {
            name.split("/")[0]: m.get("metrics", {}).get("eval/score")
            for name, m in loop.manifests.items()
            if name.endswith("/evaluate")
        },
    }
    write_json(loop.run_dir / "summary.json", summary)
    loop.logger.summary({f"summary/iter_{k}/{m}": v for k, v in summary["iterations"].items() for m, v in v.items()})
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The table printed at the end of a run."""
    lines = [
        f"selflen run: {summary['model']} via {summary['backend']}",
        f"{'iter':>4}  {'instr':>5}  {'gen words':>9}  {'ext words':>9}  {'accepted':>8}  {'kept':>4}",
    ]
    for k, v in summary["iterations"].items():
        lines.append(
            f"{k:>4}  {v['instructions']:>5}  {v['generator_mean_words']:>9}  "
            f"{v['extender_mean_words']:>9}  {v['accepted_extensions']:>8}  {v['kept']:>4}"
        )
    scores = {k: v for k, v in summary.get("eval", {}).items() if v is not None}
    if scores:
        lines.append("eval length score: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    if "length_control_examples" in summary:
        lines.append(
            f"length-control examples: {summary['length_control_examples']}; final model: {summary.get('final_model')}"
        )
    slow = sorted(summary["stage_seconds"].items(), key=lambda kv: -kv[1])[:5]
    lines.append("slowest stages: " + ", ".join(f"{n} {s:.0f}s" for n, s in slow))
    lines.append(f"run dir: {summary['run_dir']}")
    lines.append(f"plots:   {', '.join(summary['plots'])}")
    return "\n".join(lines)


def _seed_prompts(language: str) -> list[str]:
    from selflen.seeds import load_seeds

    return [s.prompt for s in load_seeds(language)]


def _decontaminator(cfg: TrainConfig):  # noqa: ANN202
    from selflen.decontam import Decontaminator, default_data_dir

    data_dir = Path(cfg.paths.data_dir).expanduser() if cfg.paths.data_dir else default_data_dir()
    if data_dir is None or not data_dir.exists():
        log.warning("decontamination: benchmark files not found (set paths.data_dir or SELFLEN_DATA_DIR); off")
        return None
    dec = Decontaminator.from_data_dir(data_dir)
    return dec if dec.size else None
