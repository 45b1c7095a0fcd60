"""The macro-iteration loop: it only sequences stages (``selflen.stage_runner.Runner`` opens, skips, runs and logs
each one). Each stage reads records and writes records under ``<run_dir>/iter_<k>/<stage>/`` (``RunLayout``); a
finished stage (``done.json`` with the same hash) is skipped, a half-finished one continues from the ids it has.

    iter_0: instruct (the held-out self-instructed split), evaluate (the base model, on the benchmark and the split)
    for k in 1..K: instruct -> generate -> select_responses -> extend -> select -> sft_data
                   -> finetune_gen, finetune_ext -> evaluate
    final: [collect_instruct -> collect_generate -> collect_select] -> length_control -> finetune -> evaluate
           [-> regression]

Before any stage, ``preflight`` checks the benchmark files evaluation and decontamination need. Evaluation
hashes branch off the model they evaluate and are outside the training chain."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from selflen.addresses import FINAL, at
from selflen.config import TrainConfig, to_dict
from selflen.errors import SelflenError
from selflen.locks import RunLock
from selflen.report import cards
from selflen.report import summary as report
from selflen.run_inputs import eval_rows, fork_run, fork_source, model_folder, preflight, seed_prompts
from selflen.stage_runner import Runner
from selflen.stages import (
    evaluate,
    evaluate_self,
    extend,
    finetune,
    generate,
    instruct,
    length_control,
    regression,
    select,
    sft_data,
)
from selflen.store import LENGTH_FOLLOWER, ROLES, RunLayout, Stage, config_hash, write_json
from selflen.tracking import STEP_METRICS, hydra_job_context, job_type, open_logger, run_tags

log = logging.getLogger(__name__)


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) the whole loop for ``cfg``; returns the summary also written to ``summary.json``."""
    try:  # before any folder or lock: a machine without the benchmarks or the model stops here, leaving nothing
        cfg = preflight(cfg)
        model_dir = model_folder(cfg)
        if cfg.paths.fork_from:
            fork_source(cfg.paths.fork_from)
    except SelflenError as err:
        err.claimed = False  # type: ignore[attr-defined] - nothing of the run folder is this start's: cli removes it
        raise
    layout = RunLayout(Path(cfg.paths.run_dir).expanduser().resolve())
    layout.root.mkdir(parents=True, exist_ok=True)
    with RunLock(layout.root):
        if cfg.paths.fork_from:
            log.info("forked from %s: %s", cfg.paths.fork_from, fork_run(cfg.paths.fork_from, layout) or "nothing new")
        write_json(layout.config_path, to_dict(cfg))
        lg, job = cfg.logger, hydra_job_context()  # a -m job: its sweep is its group, its overrides its tags
        with open_logger(
            lg.name,
            run_dir=layout.root,
            config={**to_dict(cfg), "hydra_job": job},
            project=lg.project,
            group=lg.group or job.get("sweep"),
            tags=run_tags([*lg.tags, cfg.model.name, cfg.backend.name], job.get("overrides", [])),
            mode=lg.mode,
            entity=lg.entity,
            online=cfg.online,
            job_type=job_type(cfg.debug, cfg.experiment),
        ) as logger:
            runner = Runner(cfg, layout, model_dir, logger)
            try:
                return run_loop(runner)
            finally:
                runner.engines.close()


def run_loop(r: Runner) -> dict[str, Any]:
    cfg = r.cfg
    r.logger.define_metrics(STEP_METRICS)
    t0 = time.time()
    answered = evaluation_inputs(r)
    if answered is not None and cfg.evaluate.base:
        evaluate_point(r, 0, answered)
    for k in range(1, cfg.iterations.count + 1):
        iteration(r, k, held_out=answered is not None and cfg.evaluate.self_instructed > 0)
        if answered is not None:
            evaluate_point(r, k, answered)
    final = final_stages(r, answered) if cfg.length_control.enabled else {}
    summary = report.run_summary(r.layout, cfg.iterations.count, r.manifests, final, model=cfg.model.name,
                                 backend=cfg.backend.name, wall_seconds=round(time.time() - t0, 1))
    plots = report.write_run_plots(r.layout, summary.pop("words_by_iter"), r.logger, summary=summary)
    summary["plots"] = [r.layout.rel(p) for p in plots]
    summary["wandb"] = r.logger.location
    summary["engine_errors"] = report.engine_errors(r.manifests)
    summary["checks_off"] = [k for k, on in (("evaluate.enabled", cfg.evaluate.enabled),
                                             ("instruct.decontaminate", cfg.instruct.decontaminate)) if not on]
    write_json(r.layout.summary_path, summary)
    r.logger.summary(report.flat_for_logger(summary))
    return summary


def self_split(r: Runner) -> list[dict[str, Any]]:
    """The held-out self-instructed split (``iter_0/instruct``): instructions of the training distribution, written
    by the base model before the loop and kept out of every iteration's instructions (they join the
    decontamination index), so the fine-tuned Generator's length on them measures fit, not transfer."""
    cfg = r.cfg
    seeds = seed_prompts(cfg.language.name)
    s = instruct.settings(cfg, evaluate_self.SPLIT_POINT, count=cfg.evaluate.self_instructed)
    inputs = instruct.InstructInputs(seeds, r.decontaminator())
    r.run(0, "instruct", s, ["root", f"seeds:{config_hash(seeds)}"],
          lambda st: instruct.run(st, inputs, s, r.engines.for_folder(None, "base")))
    split = r.ok(at(evaluate_self.SPLIT_POINT, "instruct"))
    if (dec := r.decontaminator()) is not None:
        for inst in split:
            dec.add(inst["instruction"])
    return split


def iteration(r: Runner, k: int, held_out: bool = False) -> None:
    """One macro-iteration: instructions, answers, extensions, selections, SFT data, both roles trained;
    ``held_out``: the instructions are kept away from the self-instructed split (``iter_0/instruct``)."""
    cfg = r.cfg
    lengthen(r, k, held_out)
    prev = {role: at(k - 1, f"finetune_{role}") for role in ROLES}
    data_s = sft_data.settings(cfg)
    data_st = r.run(k, "sft_data", data_s, [at(k, "select")],
                    lambda st: sft_data.run(st, r.ok(at(k, "select")), data_s))
    write_data_card(r, data_st, k, {"generate": generate.settings(cfg), "extend": extend.settings(cfg),
                                    "select": select.settings(cfg, k, "extended"), "sft_data": data_s})
    r.engines.release()  # free memory for training
    for role, data in zip(("gen", "ext"), sft_data.paths(data_st.dir), strict=True):
        if role == "ext" and k == cfg.iterations.count and not cfg.finetune.last_extender:
            log.info("finetune_ext of the last iteration skipped (finetune.last_extender=false): nothing uses it")
            continue
        train_role(r, k, role, data, [at(k, "sft_data"), prev[role]])
    if at(k, "select") in r.ran:  # a resumed run does not log the samples of a finished iteration again
        report.log_samples(r.logger, r.ok(at(k, "select")), k, cfg.logger.samples)


def lengthen(r: Runner, k: int, held_out: bool = False) -> None:
    """Iteration ``k``'s data up to the selected extensions: instructions, answers, their selection, extensions and
    theirs (``bench/capacity.py`` runs this alone to probe a model's Extender before any training)."""
    cfg = r.cfg
    seeds = seed_prompts(cfg.language.name)
    inst_in = instruct.InstructInputs(seeds, r.decontaminator())
    inst_s = instruct.settings(cfg, k)
    split = [at(evaluate_self.SPLIT_POINT, "instruct")] if held_out else []
    r.run(k, "instruct", inst_s, ["root", f"seeds:{config_hash(seeds)}", *split],
          lambda st: instruct.run(st, inst_in, inst_s, r.engines.for_folder(None, "base")))
    prev = {role: at(k - 1, f"finetune_{role}") for role in ROLES}
    gen_s = generate.settings(cfg)
    r.run(k, "generate", gen_s, [at(k, "instruct"), prev["gen"]],
          lambda st: generate.run(st, r.ok(at(k, "instruct")), gen_s, r.role_engine("gen", k)))
    sel_r = select.settings(cfg, k, "response")
    r.run(k, "select_responses", sel_r, [at(k, "generate")],
          lambda st: select.run(st, r.ok(at(k, "generate")), sel_r))
    ext_s = extend.settings(cfg)
    r.run(k, "extend", ext_s, [at(k, "select_responses"), prev["ext"]],
          lambda st: extend.run(st, r.ok(at(k, "select_responses")), ext_s, r.role_engine("ext", k)))
    sel_e = select.settings(cfg, k, "extended")
    r.run(k, "select", sel_e, [at(k, "extend")], lambda st: select.run(st, r.ok(at(k, "extend")), sel_e))


def train_role(r: Runner, k: int | str, role: str, data: Path, inputs: list[str], epochs: float | None = None) -> None:
    """Fine-tune ``role`` on ``data``; under ``continue`` lineage training starts where the role's last one ended."""
    last = r.cfg.iterations.count
    previous = r.layout.current("gen", last)[0] if role == LENGTH_FOLLOWER else r.layout.current(role, int(k) - 1)[0]
    s = finetune.with_start(finetune.settings(r.cfg, role, epochs), r.layout, previous)
    step = last + 1 if k == FINAL else int(k)

    def on_log(m: dict[str, float]) -> None:
        r.logger.log({**{f"train/{role}/{key}": v for key, v in m.items()}, "iteration": step})

    def on_train_begin() -> None:  # the W&B integration sets "*" against its own step: put the axes back
        r.logger.define_metrics(STEP_METRICS)

    report_to = "wandb" if r.logger.active else "none"
    inputs_ = finetune.FinetuneInputs(data, r.model_dir, r.layout, on_log, report_to, on_train_begin,
                                      finetune.launch_settings(r.cfg))
    st = r.run(k, "finetune" if role == LENGTH_FOLLOWER else f"finetune_{role}", s, inputs,
               lambda st: finetune.run(st, inputs_, s))
    folder = finetune.trained_folder(st, s)
    if folder is not None:
        cards.write_adapter_card(
            folder,
            base_model=model_info(r),
            role=role,
            iteration=k,
            lineage=s.finetune.lineage,
            train_stats=r.manifests[st.name].get("train", {}),
            data_path=r.layout.rel(data),
            method=s.finetune.method,
            settings=asdict(s.finetune),
            init_adapter=s.init_adapter,
            extra={"stage": st.name, "experiment": r.cfg.experiment, "debug": r.cfg.debug},
        )


def evaluation_inputs(r: Runner) -> evaluate.EvaluateInputs | None:
    """What every evaluation point answers, built once before the loop: the benchmark slice and, with
    ``evaluate.self_instructed``, the held-out self-instructed split (its instruct stage runs here); None when
    evaluation is off."""
    if not r.cfg.evaluate.enabled:
        return None
    rows = eval_rows(r.cfg)
    return evaluate.EvaluateInputs(rows, self_split(r) if r.cfg.evaluate.self_instructed > 0 else ())


def evaluate_point(r: Runner, point: int | str, answered: evaluate.EvaluateInputs) -> None:
    """Evaluate the Generator of ``point`` (0 = the base model, k = iteration k's, FINAL = the final model) on
    the benchmark slice and, for 0..K (the settings say), on the held-out self-instructed split."""
    if point == 0:
        folder, label, inputs = None, "base", ["root"]
    elif point == FINAL:
        folder, label = r.layout.trained(LENGTH_FOLLOWER, FINAL), LENGTH_FOLLOWER
        inputs = [at(FINAL, "finetune")]
    else:  # an iteration that trained nothing leaves the previous Generator in place
        folder, j = r.layout.current("gen", point)
        label, inputs = f"gen{j}" if folder else "base", [at(point, "finetune_gen")]
    s = evaluate.settings(r.cfg, point)
    if s.self_split is not None:
        inputs = [*inputs, at(evaluate_self.SPLIT_POINT, "instruct")]
    r.run(point, "evaluate", s, inputs,
          lambda st: evaluate.run(st, answered, s, r.engines.for_folder(folder, label)))
    if folder is not None and folder.name == "model":
        r.engines.close()  # a full model's own engine; the base engine stays up for the next iteration's stages


def final_stages(r: Runner, answered: evaluate.EvaluateInputs | None) -> dict[str, Any]:
    """Pool long answers (plus a final collection round), add length constraints, run the length-following SFT."""
    cfg, last = r.cfg, r.cfg.iterations.count
    # the reference pools what it saved: answers and extensions after the length bias
    sources = [at(k, s) for k in range(1, last + 1) for s in ("select_responses", "select")]
    if cfg.length_control.collect > 0:
        sources.append(collect_round(r))
    pooled = [
        {"id": rec["id"], "query": rec["instruction"], "answer": rec.get("extended") or rec["response"],
         "words": rec["words"], "source": src}
        for src in sources
        for rec in r.ok(src)
    ]
    lc = length_control.settings(cfg)
    unpooled, pooled = pooled, length_control.pool(pooled, lc.min_words, lc.max_words)
    st = r.run(FINAL, "length_control", lc, sources, lambda st: length_control.run(
        st, pooled, lc, r.engines.for_folder(None, "base") if lc.length_control.rewrite == "llm" else None))
    write_data_card(r, st, FINAL, {"length_control": lc})
    r.engines.release()  # free memory for the length-following SFT
    examples = r.manifests[st.name]["counts"].get("examples", 0)
    out: dict[str, Any] = {"length_control_examples": examples}
    if cfg.length_control.final_sft and not examples:
        log.warning(length_control.empty_pool_message([p["words"] for p in unpooled], lc.min_words, lc.max_words))
    if cfg.length_control.final_sft and examples:
        train_role(r, FINAL, LENGTH_FOLLOWER, st.dir / length_control.LC_FILE,
                   [st.name, at(last, "finetune_gen")], epochs=cfg.length_control.epochs)
        folder = r.layout.trained(LENGTH_FOLLOWER, FINAL)
        out["final_model"] = r.layout.rel(folder) if folder else None
        if answered is not None and folder is not None:
            evaluate_point(r, FINAL, answered)
        if cfg.regression.tasks and folder is not None:
            rs = regression.settings(cfg)
            rin = regression.RegressionInputs(r.model_dir, folder)
            st = r.run(FINAL, "regression", rs, [at(FINAL, "finetune")], lambda st: regression.run(st, rin, rs))
            out["regression"] = r.manifests[st.name].get("regression", {})
    return out


def collect_round(r: Runner) -> str:
    """The reference's final collection: fresh instructions answered by the last Generator (no extension)."""
    cfg, k = r.cfg, r.cfg.iterations.count + 1
    seeds = seed_prompts(cfg.language.name)
    inst_s = instruct.settings(cfg, k, count=cfg.length_control.collect)
    inst_in = instruct.InstructInputs(seeds, r.decontaminator())
    r.run(FINAL, "collect_instruct", inst_s, ["root", f"seeds:{config_hash(seeds)}"],
          lambda st: instruct.run(st, inst_in, inst_s, r.engines.for_folder(None, "base")))
    gen_s = generate.settings(cfg)
    r.run(FINAL, "collect_generate", gen_s, [at(FINAL, "collect_instruct"), at(k - 1, "finetune_gen")],
          lambda st: generate.run(st, r.ok(at(FINAL, "collect_instruct")), gen_s, r.role_engine("gen", k)))
    r.engines.close()
    sel_s = select.settings(cfg, k, "response")  # the reference's step 1 ends with the length bias
    r.run(FINAL, "collect_select", sel_s, [at(FINAL, "collect_generate")],
          lambda st: select.run(st, r.ok(at(FINAL, "collect_generate")), sel_s))
    return at(FINAL, "collect_select")


def write_data_card(r: Runner, st: Stage, point: int | str, settings: dict[str, Any]) -> None:
    """README card of a data folder from the settings and manifests of the stages that made it."""
    prefix = st.name.rsplit("/", 1)[0] + "/"
    cards.write_run_data_card(
        st.dir, point=point, model=model_info(r), language=r.cfg.language.name, model_name=r.cfg.model.name,
        settings={name: asdict(s) for name, s in settings.items()},
        manifests={n: m for n, m in r.manifests.items() if n.startswith(prefix)},
        extra={"experiment": r.cfg.experiment, "debug": r.cfg.debug,
               "git_commit": r.manifests.get(st.name, {}).get("git_commit")},
    )


def model_info(r: Runner) -> dict[str, Any]:
    m = r.cfg.model
    return cards.describe_model(m.name, r.model_dir, source=m.source, revision=m.revision)
