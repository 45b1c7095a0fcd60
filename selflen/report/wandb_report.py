"""A W&B Report over compared runs (``wandb-workspaces``): built offline by :func:`build_report`, saved with
``--publish`` when W&B is online (:func:`wandb_report`).

The report holds: length growth per iteration (one line per run, so per model in a model sweep), the held-out
evaluation scores, the training loss curves per role, the required-vs-produced scatter images each run logged, the
comparison's own plots (uploaded as media to a ``report`` run of the project, not linked), the per-iteration
evaluation tables, the regression verdicts when a run has them, and a run table (the runset, ``RunComparer``).
The Markdown report and plots never depend on it: offline, without an API key, without the package, or on any
W&B API error it is skipped with a one-line note.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from selflen.report.runs import Run
from selflen.store import LENGTH_FOLLOWER, ROLES

log = logging.getLogger(__name__)
LINE_PLOTS = (["generate/mean_words", "extend/mean_words", "select/mean_words"], ["extend/accept_rate"],
              ["eval/mean_words"], ["eval/finish/length_rate"])
EVAL_PLOTS = (["eval/score"], ["eval/hit_rate"], ["eval/length/effective_words"])
LOSS_PLOTS = {role: (f"train/{role}/step", [f"train/{role}/loss"]) for role in (*ROLES, LENGTH_FOLLOWER)}
TRAINER_PLOTS = (["train/learning_rate"], ["train/grad_norm"])
RUN_MEDIA = ["plots/growth", "plots/length_histogram", "plots/eval_base_scatter", "plots/eval_final_scatter"]
REPORT_MEDIA_PREFIX = "compare/"


def wandb_online() -> tuple[bool, str]:
    """Whether a W&B Report can be created, and why not: W&B is online when an API key is configured and
    ``WANDB_MODE`` does not say offline (``selflen.tracking.wandb_mode``)."""
    from selflen.tracking import wandb_mode

    mode, why = wandb_mode("auto")
    return (True, "online") if mode == "online" else (False, why)


def run_ids(runs: Sequence[Run]) -> list[str]:
    """The W&B run ids of the compared runs (``<run>/wandb_id``)."""
    return [(r.path / "wandb_id").read_text().strip() for r in runs if (r.path / "wandb_id").is_file()]


def _iterations(runs: Sequence[Run]) -> int:
    counts = [int(r.config.get("iterations.count") or 0) for r in runs]
    return max(counts, default=0) + 1  # + the final point


def build_report(
    runs: Sequence[Run],
    title: str,
    markdown: str,
    *,
    entity: str,
    project: str,
    media_run_id: str | None = None,
    media_keys: Sequence[str] = (),
) -> Any:
    """The Report object (nothing is sent): one runset restricted to the compared runs' ids, the panels above,
    and, when the comparison's plots were uploaded to ``media_run_id``, a second runset with that run only."""
    import wandb_workspaces.reports.v2 as wr

    ids = run_ids(runs)
    runset = _runset(wr, entity, project, "compared runs", ids)
    growth = [wr.LinePlot(title="length growth per iteration: " + ", ".join(keys), x="iteration", y=list(keys))
              for keys in LINE_PLOTS]
    scores = [wr.LinePlot(title=keys[0], x="iteration", y=list(keys)) for keys in EVAL_PLOTS]
    losses = [wr.LinePlot(title=f"training loss: {role}", x=x, y=y) for role, (x, y) in LOSS_PLOTS.items()]
    trainer = [wr.LinePlot(title=keys[0], x="train/global_step", y=list(keys)) for keys in TRAINER_PLOTS]
    tables = [wr.WeavePanelSummaryTable(table_name=f"eval/generations/iter_{k}") for k in range(_iterations(runs) + 1)]
    blocks: list[Any] = [
        wr.H1(text=title),
        wr.PanelGrid(runsets=[runset], panels=[*growth, wr.RunComparer(diff_only="split")]),
        wr.H2(text="Evaluation"),
        wr.PanelGrid(runsets=[runset], panels=[*scores, *tables]),
        wr.H2(text="Required vs produced words, growth plots (logged by each run)"),
        wr.PanelGrid(runsets=[runset], panels=[wr.MediaBrowser(title="per-run plots", media_keys=RUN_MEDIA,
                                                               num_columns=2)]),
        wr.H2(text="Training"),
        wr.PanelGrid(runsets=[runset], panels=[*losses, *trainer]),
    ]
    regression = sorted({f"regression/{task}/{metric}/delta" for r in runs
                         for task, metrics in (((r.summary or {}).get("regression") or {}).items())
                         for metric in metrics})
    if regression:
        blocks.append(wr.H2(text="General-ability regression"))
        blocks.append(wr.PanelGrid(runsets=[runset], panels=[wr.BarPlot(title="regression", metrics=regression)]))
    if media_run_id and media_keys:
        media_set = _runset(wr, entity, project, "comparison plots", [media_run_id])
        blocks.append(wr.H2(text="Comparison plots"))
        blocks.append(wr.PanelGrid(runsets=[media_set], panels=[wr.MediaBrowser(
            title="comparison plots", media_keys=list(media_keys), num_columns=2)]))
    blocks.append(wr.MarkdownBlock(text=markdown))
    return wr.Report(project=project, entity=entity, title=title[:128],
                     description=f"{len(runs)} runs compared by selflen.report.compare", blocks=blocks)


def upload_images(images: Mapping[str, Path], *, project: str, entity: str | None, name: str,
                  mode: str = "online", dir: str | Path | None = None) -> tuple[str | None, list[str]]:
    """Log the comparison's PNGs as media of a ``report`` run (so the Report shows them, not links to files);
    returns the run's id and the media keys."""
    if not images:
        return None, []
    import wandb

    run = wandb.init(project=project, entity=entity, name=name, job_type="report", mode=mode,
                     reinit="finish_previous", dir=str(dir) if dir is not None else None)
    keys = [REPORT_MEDIA_PREFIX + Path(p).stem for p in images.values()]
    try:
        run.log({k: wandb.Image(str(p), caption=c) for k, (c, p) in zip(keys, images.items(), strict=True)})
    finally:
        run.finish()
    return run.id, keys


def wandb_report(runs: Sequence[Run], title: str, markdown: str, images: Mapping[str, Path] | None = None,
                 publish: bool = True) -> str | None:
    """Upload the plots, build the Report and save it; returns its URL, or None when skipped."""
    if not publish:
        return None
    ok, why = wandb_online()
    if not ok:
        log.info("W&B report skipped: %s (the Markdown report and plots are complete without it)", why)
        return None
    try:
        import wandb_workspaces.reports.v2  # noqa: F401
    except ImportError:
        log.info("W&B report skipped: `pip install wandb-workspaces` (or selflen[reports]) to create reports")
        return None
    if not run_ids(runs):
        log.info("W&B report skipped: none of the runs logged to W&B (no wandb_id file)")
        return None
    project = runs[0].config.get("logger.project") or "selflen"
    entity = runs[0].config.get("logger.entity") or None
    try:
        if entity is None:
            import wandb

            entity = wandb.Api().default_entity
        media_run, keys = upload_images(images or {}, project=project, entity=entity, name=f"report: {title}")
        report = build_report(runs, title, markdown, entity=entity, project=project, media_run_id=media_run,
                              media_keys=keys)
        report.save()
        log.info("W&B report: %s", report.url)
        return str(report.url)
    except Exception as err:  # the report is an extra; a W&B API change must not fail the comparison
        log.warning("W&B report not created (%s: %s)", type(err).__name__, err)
        return None


def _runset(wr: Any, entity: str, project: str, name: str, ids: Sequence[str]) -> Any:
    """A runset restricted to the given W&B run ids."""
    from wandb_workspaces import expr

    return wr.Runset(entity=entity, project=project, name=name, filters=[expr.Metric("ID").isin(list(ids))])
