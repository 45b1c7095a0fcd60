"""Compare runs from their run directories alone: a Markdown report with tables, and PNG plots.

    python -m selflen.compare outputs/run_a outputs/run_b --out comparison
    python -m selflen.compare --sweep multirun/2026-11-25_18-00-00          # every run dir below the sweep

Everything is read from the files a run writes (``config.json``, ``summary.json``,
``iter_<k>/<stage>/{records.jsonl,done.json}``, ``iter_<k>/evaluate/``, ``final/evaluate/``), so it works
offline, on copied folders, and on a run that failed midway (no ``summary.json``: it reports what exists).
The report (``report.md``) holds: the runs and their status, the config keys that differ, words per iteration
per role, extension acceptance rates, and evaluation scores when present. Plots: length growth per run,
evaluation scores per run, and required-vs-produced words. With W&B online (``WANDB_MODE=online`` and an API
key) it also creates a W&B Report of the same runs; otherwise that step is skipped with a note.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import math
import os
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

log = logging.getLogger(__name__)

REPORT_NAME = "report.md"
ROLES = {"generator": "generate", "extender": "extend", "selected": "select"}  # role -> stage folder
IGNORED_CONFIG_KEYS = {"paths.run_dir", "paths.root"}
MANIFEST_BOOKKEEPING = {"stage", "config_hash", "counts", "drops", "seconds", "finished", "versions", "git_commit"}
SKIP_DIRS = {".hydra", ".submitit", "wandb", "__pycache__"}
MAX_EVAL_PANELS = 4
LABEL_FIRST = ("experiment", "model.name")  # config keys that name a run best when they differ


@dataclass
class Run:
    """What one run directory holds, read without running anything."""

    path: Path
    label: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # flattened config.json (or .hydra/config.yaml)
    overrides: list[str] = field(default_factory=list)  # Hydra task overrides of the job
    summary: dict[str, Any] | None = None
    words: dict[int, dict[str, list[float]]] = field(default_factory=dict)  # iteration -> role -> word counts
    acceptance: dict[int, dict[str, Any]] = field(default_factory=dict)
    evals: dict[str, dict[str, float]] = field(default_factory=dict)  # "1".."K" | "final" -> metric -> value
    scatter: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # eval point -> (required, words)
    finished_stages: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.summary is not None

    @property
    def status(self) -> str:
        """``complete``, or what an unfinished run got to (and whether its lock is still there)."""
        if self.complete:
            return "complete"
        last = self.finished_stages[-1] if self.finished_stages else None
        text = f"incomplete (last finished stage: {last})" if last else "incomplete (no stage finished)"
        return text + (", run.lock present: running or crashed" if (self.path / "run.lock").exists() else "")


# -- reading ---------------------------------------------------------------------------------------------------
def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys (lists stay values).

    >>> flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None})
    {'a.b': 1, 'a.c.d': [1, 2], 'e': None}
    """
    if not isinstance(obj, Mapping):
        return {prefix: obj} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete JSON lines of a file; a torn or foreign line is skipped (the run may still be writing)."""
    rows: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_run_dir(path: Path) -> bool:
    """A run directory has ``summary.json`` or ``config.json`` next to its ``iter_*`` folders (or Hydra's)."""
    if (path / "summary.json").is_file():
        return True
    return (path / "config.json").is_file() and (any(path.glob("iter_*")) or (path / ".hydra").is_dir())


def find_runs(root: Path) -> list[Path]:
    """Run directories at or below ``root``, sorted; the search does not descend into a run directory."""
    found: list[Path] = []
    for current, dirs, _files in os.walk(root):
        here = Path(current)
        if is_run_dir(here):
            found.append(here)
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> list[Any]:
    """Sort ``2_x`` before ``10_x`` (Hydra job numbers)."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def _iterations(path: Path) -> list[int]:
    out = []
    for p in path.glob("iter_*"):
        suffix = p.name.removeprefix("iter_")
        if p.is_dir() and suffix.isdigit():
            out.append(int(suffix))
    return sorted(out)


def _load_config(path: Path) -> dict[str, Any]:
    data = _read_json(path / "config.json")
    if isinstance(data, dict):
        return flatten(data)
    hydra_cfg = path / ".hydra" / "config.yaml"
    if hydra_cfg.is_file():  # a job that failed before writing config.json
        from omegaconf import OmegaConf

        return flatten(OmegaConf.to_container(OmegaConf.load(hydra_cfg), resolve=False))
    return {}


def _load_overrides(path: Path) -> list[str]:
    file = path / ".hydra" / "overrides.yaml"
    if not file.is_file():
        return []
    import yaml

    data = yaml.safe_load(file.read_text(encoding="utf-8"))
    return [str(x) for x in data] if isinstance(data, list) else []


def _stage_words(stage_dir: Path) -> list[float]:
    rows = _read_jsonl(stage_dir / "records.jsonl")
    return [float(r["words"]) for r in rows if r.get("status") == "ok" and _is_number(r.get("words"))]


def _words(path: Path, iterations: Sequence[int], summary: Mapping[str, Any] | None) -> dict[int, dict[str, list]]:
    """Word counts per iteration and role from the stage records; summary means when the records are gone."""
    out: dict[int, dict[str, list[float]]] = {}
    per_iter = (summary or {}).get("iterations", {}) or {}
    for k in iterations:
        roles = {role: _stage_words(path / f"iter_{k}" / stage) for role, stage in ROLES.items()}
        for role, key in (("generator", "generator_mean_words"), ("extender", "extender_mean_words")):
            mean = (per_iter.get(str(k)) or per_iter.get(k) or {}).get(key)
            if not roles[role] and _is_number(mean) and mean > 0:
                roles[role] = [float(mean)]  # only the mean survives: one representative value
        out[k] = roles
    return out


def _acceptance(path: Path, iterations: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Extension acceptance per iteration: from ``extend/done.json``, or counted from records while running."""
    out: dict[int, dict[str, Any]] = {}
    for k in iterations:
        ext = path / f"iter_{k}" / "extend"
        done = _read_json(ext / "done.json")
        row: dict[str, Any] = {}
        if isinstance(done, dict):
            counts = done.get("counts", {}) or {}
            inputs, accepted = counts.get("inputs"), counts.get("accepted")
            rate = (done.get("metrics", {}) or {}).get("extend/accept_rate")
            row = {"inputs": inputs, "accepted": accepted, "partial": False,
                   "rate": rate if _is_number(rate) else (accepted / inputs if inputs else None)}
        elif (ext / "records.jsonl").is_file():
            rows = _read_jsonl(ext / "records.jsonl")
            ok = sum(r.get("status") == "ok" for r in rows)
            row = {"inputs": len(rows), "accepted": ok, "rate": ok / len(rows) if rows else None, "partial": True}
        select = _read_json(path / f"iter_{k}" / "select" / "done.json")
        if isinstance(select, dict):
            row["kept"] = (select.get("counts", {}) or {}).get("kept")
        if row:
            out[k] = row
    return out


def score_metrics(obj: Any) -> dict[str, float]:
    """Numeric score-like values of an evaluation result: its ``metrics`` when they hold scores (a stage's
    ``done.json``), else every score at any depth (an evaluation summary).

    >>> score_metrics({"metrics": {"eval/score": 61.5, "eval/n": 8}, "summary": {"overall": {"score": 61.5}}})
    {'eval/score': 61.5}
    >>> score_metrics({"overall": {"score": 0.6, "n": 3}, "score_scale": 100, "seconds": 3})
    {'overall.score': 0.6}
    """
    if not isinstance(obj, Mapping):
        return {}
    metrics = obj.get("metrics")
    if isinstance(metrics, Mapping) and (found := _scores(flatten(metrics))):
        return found
    return _scores(flatten({k: v for k, v in obj.items() if k not in MANIFEST_BOOKKEEPING}))


def _scores(flat: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in flat.items()
            if _is_number(v) and "score" in k.lower() and not k.endswith("score_scale")}


def _point_name(key: Any) -> str:
    """Evaluation points are ``1``..``K`` and ``final``; ``iter_2`` is accepted for ``2``.

    >>> _point_name("iter_2"), _point_name(3), _point_name("final")
    ('2', '3', 'final')
    """
    return str(key).removeprefix("iter_")


def _latest(points: Iterable[str]) -> str:
    """The last evaluation point: ``final``, else the highest iteration."""
    return max(points, key=lambda p: (p == "final", int(p) if p.isdigit() else 0))


def _eval_points(path: Path, iterations: Sequence[int]) -> list[tuple[str, Path]]:
    points = [(str(k), path / f"iter_{k}" / "evaluate") for k in iterations]
    points.append(("final", path / "final" / "evaluate"))
    return [(name, d) for name, d in points if d.is_dir()]


def _evals(path: Path, iterations: Sequence[int], summary: Mapping[str, Any] | None) -> dict[str, dict[str, float]]:
    """Scores per evaluation point: ``evaluate/done.json`` metrics, else any ``*summary*.json`` in that folder;
    then ``summary.json["eval"]``. Absent evaluation gives ``{}``."""
    out: dict[str, dict[str, float]] = {}
    for name, folder in _eval_points(path, iterations):
        metrics = score_metrics(_read_json(folder / "done.json"))
        for extra in [] if metrics else sorted(folder.rglob("*summary*.json")):
            prefix = extra.parent.relative_to(folder).as_posix()
            found = score_metrics(_read_json(extra))
            metrics.update({(f"{prefix}/{k}" if prefix != "." else k): v for k, v in found.items()})
        if metrics:
            out[name] = metrics
    block = (summary or {}).get("eval")
    if isinstance(block, Mapping):  # {point: overall score} or {point: {metric: value}}; the folders win
        for key, value in block.items():
            point = _point_name(key)
            if point in out:
                continue
            if _is_number(value):
                out[point] = {"eval/score": float(value)}
            elif isinstance(value, Mapping):
                out[point] = score_metrics(value) or {k: float(v) for k, v in flatten(value).items() if _is_number(v)}
    ordered = sorted(out, key=lambda p: (p == "final", int(p) if p.isdigit() else 0))
    return {k: out[k] for k in ordered if out[k]}


def _scatter(path: Path, iterations: Sequence[int]) -> dict[str, list[tuple[float, float]]]:
    """(required, produced) word pairs from ``scored.jsonl`` files of each evaluation point."""
    out: dict[str, list[tuple[float, float]]] = {}
    for name, folder in _eval_points(path, iterations):
        pairs = [(float(r["required"]), float(r["words"])) for f in sorted(folder.rglob("scored.jsonl"))
                 for r in _read_jsonl(f) if _is_number(r.get("required")) and _is_number(r.get("words"))]
        if pairs:
            out[name] = pairs
    return out


def _finished_stages(path: Path, iterations: Sequence[int]) -> list[str]:
    done = [p.parent for k in iterations for p in sorted((path / f"iter_{k}").glob("*/done.json"))]
    done += sorted(p.parent for p in (path / "final").glob("*/done.json"))
    done.sort(key=lambda d: (d / "done.json").stat().st_mtime)
    return [d.relative_to(path).as_posix() for d in done]


def load_run(path: Path) -> Run:
    """Read one run directory (complete or not)."""
    path = Path(path)
    summary = _read_json(path / "summary.json")
    summary = summary if isinstance(summary, dict) else None
    iterations = _iterations(path)
    return Run(path=path, config=_load_config(path), overrides=_load_overrides(path), summary=summary,
               words=_words(path, iterations, summary), acceptance=_acceptance(path, iterations),
               evals=_evals(path, iterations, summary), scatter=_scatter(path, iterations),
               finished_stages=_finished_stages(path, iterations))


# -- labels and differences ------------------------------------------------------------------------------------
def config_differences(runs: Sequence[Run]) -> dict[str, list[Any]]:
    """Flattened config keys whose values are not the same in every run (a run without the key shows None)."""
    keys = sorted({k for r in runs for k in r.config} - IGNORED_CONFIG_KEYS)
    diffs = {}
    for key in keys:
        values = [r.config.get(key) for r in runs]
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1:
            diffs[key] = values
    return diffs


def label_runs(runs: Sequence[Run], max_len: int = 48) -> None:
    """Short, unique labels: the Hydra overrides that differ between runs, else the differing config values,
    else the folder name."""
    shared = set.intersection(*(set(r.overrides) for r in runs)) if runs else set()
    diffs = config_differences(runs)
    for run in runs:
        own = [o for o in run.overrides if o not in shared and not o.startswith("hydra.")]
        if not own and diffs:
            keys = sorted(diffs, key=lambda k: (k not in LABEL_FIRST, k))[:3]
            own = [f"{k}={_short(run.config.get(k), 24)}" for k in keys]
        text = ",".join(own) or run.path.name
        run.label = text if len(text) <= max_len else text[: max_len - 1] + "…"
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.label] = seen.get(run.label, 0) + 1
    for i, run in enumerate(runs):
        if seen[run.label] > 1:
            run.label = f"{run.label} #{i}"


def _short(value: Any, limit: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- report ----------------------------------------------------------------------------------------------------
def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped).

    >>> print(md_table(["a", "b"], [[1, "x|y"]]))
    | a | b |
    | --- | --- |
    | 1 | x\\|y |
    """
    def cell(v: Any) -> str:
        return "—" if v is None else str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def _mean_cell(values: Sequence[float]) -> str | None:
    return f"{statistics.fmean(values):.1f} (n={len(values)})" if values else None


def _fmt(value: Any, digits: int = 3) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def render_report(runs: Sequence[Run], plots: Mapping[str, Path], title: str, notes: Sequence[str] = ()) -> str:
    """The Markdown report; ``plots`` maps a caption to a PNG next to the report."""
    now = _dt.datetime.now().isoformat(timespec="seconds")
    parts = [f"# {title}\n", f"{len(runs)} runs, read from their run directories on {now}.\n"]
    parts.append("## Runs\n\n" + md_table(
        ["run", "status", "model", "experiment", "iterations", "path"],
        [[r.label, r.status, r.config.get("model.name"), r.config.get("experiment"),
          ", ".join(map(str, r.words)) or None, r.path] for r in runs]) + "\n")
    diffs = config_differences(runs)
    parts.append("## Config differences\n\n" + (md_table(
        ["key", *[r.label for r in runs]], [[k, *[_short(v) for v in vs]] for k, vs in diffs.items()])
        if diffs else "_The runs' configs are identical (apart from their paths)._") + "\n")
    words = [[r.label, k, *[_mean_cell(w.get(role, [])) for role in ROLES]] for r in runs for k, w in r.words.items()]
    parts.append("## Words per iteration\n\nMean words (number of answers) per role: Generator answers, accepted "
                 "Extender outputs, and the extensions kept by selection (the next iteration's training data).\n\n"
                 + md_table(["run", "iteration", *ROLES], words) + "\n")
    parts.append("## Extension acceptance\n\n" + md_table(
        ["run", "iteration", "extended", "accepted", "accept rate", "kept by selection"],
        [[r.label, f"{k}{' (running)' if a.get('partial') else ''}", a.get("inputs"), a.get("accepted"),
          _fmt(a.get("rate")), a.get("kept")] for r in runs for k, a in r.acceptance.items()]) + "\n")
    parts.append(_eval_section(runs))
    if plots:
        parts.append("## Plots\n\n" + "\n\n".join(f"![{cap}]({p.name})" for cap, p in plots.items()) + "\n")
    if notes:
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    return "\n".join(parts)


def _depth(metric: str) -> int:
    return metric.count("/") + metric.count(".")


def _eval_section(runs: Sequence[Run]) -> str:
    """The headline scores at every evaluation point, then the breakdown (by type, bucket, language...) at each
    run's latest evaluation."""
    metrics = sorted({m for r in runs for scores in r.evals.values() for m in scores}, key=lambda m: (_depth(m), m))
    if not metrics:
        return ("## Evaluation\n\n_No evaluation results in these runs (`iter_<k>/evaluate/`, `final/evaluate/` "
                "or `summary.json` key `eval`)._\n")
    top = [m for m in metrics if _depth(m) == _depth(metrics[0])]
    text = "## Evaluation\n\n" + md_table(
        ["run", "evaluated after", *top],
        [[r.label, point, *[_fmt(scores.get(m)) for m in top]] for r in runs for point, scores in r.evals.items()])
    rest = [m for m in metrics if m not in top]
    evaluated = [r for r in runs if r.evals]
    if rest:
        latest = [r.evals[_latest(r.evals)] for r in evaluated]
        text += ("\n\n### Breakdown at each run's latest evaluation\n\n" + md_table(
            ["score", *[f"{r.label} ({_latest(r.evals)})" for r in evaluated]],
            [[m, *[_fmt(scores.get(m)) for scores in latest]] for m in rest]))
    return text + "\n"


# -- plots -----------------------------------------------------------------------------------------------------
def _colors(n: int) -> list[Any]:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def plot_growth(runs: Sequence[Run], path: Path) -> Path | None:
    """Mean words per iteration: Generator (solid) and Extender (dashed), one colour per run."""
    if not any(w for r in runs for w in r.words.values()):
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for run, color in zip(runs, _colors(len(runs)), strict=True):
        for role, style in (("generator", "-o"), ("extender", "--s")):
            pts = [(k, statistics.fmean(w[role])) for k, w in run.words.items() if w.get(role)]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, color=color, label=f"{run.label} · {role}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean words")
    ax.set_title("length growth per run (solid: Generator, dashed: Extender)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def plot_evals(runs: Sequence[Run], path: Path) -> Path | None:
    """One panel per score (the most common ones), evaluation points on x, one line per run."""
    counts: dict[str, int] = {}
    for r in runs:
        for m in {m for scores in r.evals.values() for m in scores}:
            counts[m] = counts.get(m, 0) + 1
    # the scores most runs have, the most general first (eval/score before eval/type/about/score)
    metrics = sorted(counts, key=lambda m: (-counts[m], m.count("/") + m.count("."), m))[:MAX_EVAL_PANELS]
    if not metrics:
        return None
    points = sorted({p for r in runs for p in r.evals}, key=lambda p: (p == "final", int(p) if p.isdigit() else 0))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for run, color in zip(runs, _colors(len(runs)), strict=True):
            pts = [(points.index(p), s[metric]) for p, s in run.evals.items() if metric in s]
            if pts:
                pts.sort()
                ax.plot(*zip(*pts, strict=True), "-o", color=color, label=run.label)
        ax.set_xticks(range(len(points)), points)
        ax.set_xlabel("evaluated after iteration")
        ax.set_title(metric, fontsize=9)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def plot_scatter(runs: Sequence[Run], path: Path) -> Path | None:
    """Required vs produced words of each run's latest evaluation, with the y = x line."""
    series = []
    for run in runs:
        if run.scatter:
            point = _latest(run.scatter)
            series.append((run, point, run.scatter[point]))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6.2, 5.0))
    top = 1.0
    for (run, point, pairs), color in zip(series, _colors(len(series)), strict=True):
        xs, ys = zip(*pairs, strict=True)
        ax.scatter(xs, ys, s=14, alpha=0.6, color=color, label=f"{run.label} (eval {point})")
        top = max(top, *xs, *ys)
    ax.plot([0, top], [0, top], color="grey", linewidth=1, linestyle=":", label="produced = required")
    ax.set_xlabel("required words")
    ax.set_ylabel("produced words")
    ax.set_title("required vs produced")
    ax.legend(fontsize=7)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    # no tight_layout: it would shrink the axes to fit an outside legend; the saved box grows instead
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


# -- W&B -------------------------------------------------------------------------------------------------------
def wandb_online() -> tuple[bool, str]:
    """Whether a W&B Report can be created, and why not."""
    if os.environ.get("WANDB_MODE", "").lower() != "online":
        return False, "WANDB_MODE is not 'online'"
    if os.environ.get("WANDB_API_KEY"):
        return True, "online"
    try:
        import netrc

        if netrc.netrc().authenticators("api.wandb.ai"):
            return True, "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return False, "no W&B API key (WANDB_API_KEY or `wandb login`)"


def wandb_report(runs: Sequence[Run], title: str, markdown: str) -> str | None:
    """Create a W&B Report over the runs' W&B runs (ids from ``<run>/wandb_id``); returns its URL or None."""
    ok, why = wandb_online()
    if not ok:
        log.info("W&B report skipped: %s (the Markdown report and plots are complete without it)", why)
        return None
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError:
        log.info("W&B report skipped: `pip install wandb-workspaces` to create reports programmatically")
        return None
    ids = [(r.path / "wandb_id").read_text().strip() for r in runs if (r.path / "wandb_id").is_file()]
    if not ids:
        log.info("W&B report skipped: none of the runs logged to W&B (no wandb_id file)")
        return None
    project = runs[0].config.get("logger.project") or "selflen"
    entity = runs[0].config.get("logger.entity") or None
    try:
        runset = _runset(wr, entity, project, ids)
        panels = [wr.LinePlot(x="iteration", y=["generate/mean_words", "extend/mean_words", "select/mean_words"]),
                  wr.LinePlot(x="iteration", y=["extend/accept_rate"])]
        report = wr.Report(project=project, entity=entity, title=title,
                           description=f"{len(runs)} runs compared by selflen.compare",
                           blocks=[wr.PanelGrid(runsets=[runset], panels=panels), wr.MarkdownBlock(text=markdown)])
        report.save()
        log.info("W&B report: %s", report.url)
        return str(report.url)
    except Exception as err:  # the report is an extra; a W&B API change must not fail the comparison
        log.warning("W&B report not created (%s: %s)", type(err).__name__, err)
        return None


def _runset(wr: Any, entity: str | None, project: str, ids: Sequence[str]) -> Any:
    """A runset restricted to the compared runs' ids where this wandb-workspaces version allows it."""
    try:
        import wandb_workspaces.workspaces as ws

        return wr.Runset(entity=entity, project=project, name="compared runs", filters=[ws.Metric("ID").isin(ids)])
    except Exception:  # older versions: string filter expressions
        return wr.Runset(entity=entity, project=project, name="compared runs", filters=f"ID in {list(ids)}")


# -- entry point -----------------------------------------------------------------------------------------------
def compare(run_dirs: Sequence[Path], out: Path, title: str = "selflen run comparison",
            use_wandb: bool = True) -> Path:
    """Read the runs, write ``out/report.md`` and its PNG plots; returns the report's path."""
    runs = [load_run(p) for p in run_dirs]
    label_runs(runs)
    out.mkdir(parents=True, exist_ok=True)
    plots = {caption: p for caption, p in (
        ("length growth per run", plot_growth(runs, out / "growth.png")),
        ("evaluation scores per run", plot_evals(runs, out / "eval_scores.png")),
        ("required vs produced words", plot_scatter(runs, out / "required_vs_produced.png")),
    ) if p is not None}
    notes = [f"{r.label}: {r.status}" for r in runs if not r.complete]
    text = render_report(runs, plots, title, notes)
    url = wandb_report(runs, title, text) if use_wandb else None
    if url:
        text += f"\nW&B report: {url}\n"
    report = out / REPORT_NAME
    report.write_text(text, encoding="utf-8")
    return report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m selflen.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", type=Path, help="run directories (each with config.json or summary.json)")
    p.add_argument("--sweep", type=Path, action="append", default=[],
                   help="a folder (e.g. a Hydra multirun dir) whose run directories are all compared; repeatable")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: <first sweep>/comparison, else ./comparison)")
    p.add_argument("--title", default="selflen run comparison")
    p.add_argument("--no-wandb", action="store_true", help="never try to create a W&B Report")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m selflen.compare``; returns the exit code (2 when there is nothing to compare)."""
    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    missing = [p for p in [*args.runs, *args.sweep] if not p.is_dir()]
    if missing:
        print(f"selflen.compare: not a directory: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    run_dirs = list(args.runs)
    for sweep in args.sweep:
        found = find_runs(sweep)
        if not found:
            print(f"selflen.compare: no run directory (with summary.json or config.json) below {sweep}",
                  file=sys.stderr)
        run_dirs += found
    run_dirs = list(dict.fromkeys(p.resolve() for p in run_dirs))
    if not run_dirs:
        print("selflen.compare: nothing to compare; give run directories or --sweep DIR", file=sys.stderr)
        return 2
    out = args.out or ((args.sweep[0] / "comparison") if args.sweep else Path("comparison"))
    report = compare(run_dirs, out, title=args.title, use_wandb=not args.no_wandb)
    print(f"compared {len(run_dirs)} runs -> {report}")
    for png in sorted(out.glob("*.png")):
        print(f"plot: {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
