"""Reading run directories into :class:`Run` objects, offline and without running anything.

Everything comes from the files a run writes, found through :class:`selflen.store.RunLayout`: ``config.json``,
``summary.json``, ``iter_<k>/<stage>/{records.jsonl,done.json}``, and the evaluate folders ``iter_0/evaluate``
(the base model), ``iter_<k>/evaluate`` and ``final/evaluate``. A run that failed midway (no ``summary.json``)
gives what exists.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selflen.report.lengths import eval_length_row, paired_growth
from selflen.report.paired import growth_intervals
from selflen.report.plots import is_number, point_key
from selflen.stages.evaluate_self import ROWS_FILE
from selflen.store import DONE_NAME, LOCK_NAME, RECORDS_NAME, RunLayout, read_jsonl

ROLES = {"generator": "generate", "extender": "extend", "selected": "select"}  # role -> stage folder
IGNORED_CONFIG_KEYS = {"paths.run_dir", "paths.root"}
MANIFEST_BOOKKEEPING = {"stage", "config_hash", "counts", "drops", "seconds", "finished", "versions", "git_commit"}
SKIP_DIRS = {".hydra", ".submitit", "wandb", "__pycache__"}
LABEL_FIRST = ("experiment", "model.name")  # config keys that name a run best when they differ


@dataclass
class Run:
    """What one run directory holds. Evaluation points are ``"0"`` (base), ``"1"``..``"K"`` and ``"final"``."""

    path: Path
    label: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # flattened config.json (or .hydra/config.yaml)
    overrides: list[str] = field(default_factory=list)  # Hydra task overrides of the job
    summary: dict[str, Any] | None = None
    words: dict[int, dict[str, list[float]]] = field(default_factory=dict)  # iteration -> role -> word counts
    acceptance: dict[int, dict[str, Any]] = field(default_factory=dict)
    evals: dict[str, dict[str, float]] = field(default_factory=dict)  # point -> metric -> value
    eval_lengths: dict[str, dict[str, Any]] = field(default_factory=dict)  # point -> eval_length_row
    scatter: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # point -> (required, words)
    finished_stages: list[str] = field(default_factory=list)

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.path)

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
        return text + (", run.lock present: running or crashed" if (self.path / LOCK_NAME).exists() else "")


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


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or unreadable (a run may still be writing it)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _read_dict(path: Path) -> dict[str, Any] | None:
    data = read_json(path)
    return data if isinstance(data, dict) else None


def is_run_dir(path: Path) -> bool:
    """A run directory has ``summary.json`` or ``config.json`` next to its ``iter_*`` folders (or Hydra's)."""
    layout = RunLayout(path)
    if layout.summary_path.is_file():
        return True
    return layout.config_path.is_file() and (any(path.glob("iter_*")) or (path / ".hydra").is_dir())


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
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def _load_config(layout: RunLayout) -> dict[str, Any]:
    data = _read_dict(layout.config_path)
    if data is not None:
        return flatten(data)
    hydra_cfg = layout.root / ".hydra" / "config.yaml"
    if hydra_cfg.is_file():  # a job that failed before writing config.json
        from omegaconf import OmegaConf

        return flatten(OmegaConf.to_container(OmegaConf.load(hydra_cfg), resolve=False))
    return {}


def _load_overrides(layout: RunLayout) -> list[str]:
    file = layout.root / ".hydra" / "overrides.yaml"
    if not file.is_file():
        return []
    import yaml

    data = yaml.safe_load(file.read_text(encoding="utf-8"))
    return [str(x) for x in data] if isinstance(data, list) else []


def _stage_words(stage_dir: Path) -> list[float]:
    rows = read_jsonl(stage_dir / RECORDS_NAME)
    return [float(r["words"]) for r in rows if r.get("status") == "ok" and is_number(r.get("words"))]


def _summary_mean(entry: Mapping[str, Any], role: str) -> float | None:
    """A role's mean words in a summary's iteration entry: ``{role: {"mean": ...}}`` (``length_stats``) or the
    older ``<role>_mean_words``, where 0 meant "nothing accepted". None when missing."""
    stats = entry.get(role)
    mean = stats.get("mean") if isinstance(stats, Mapping) else entry.get(f"{role}_mean_words")
    return float(mean) if is_number(mean) and mean > 0 else None


def _words(layout: RunLayout, summary: Mapping[str, Any] | None) -> dict[int, dict[str, list[float]]]:
    """Word counts per iteration and role from the stage records; the summary's means when the records are gone.
    A role with no words has an empty list (missing), never a zero."""
    out: dict[int, dict[str, list[float]]] = {}
    per_iter = (summary or {}).get("iterations") or {}
    for k in layout.iterations():
        roles = {role: _stage_words(layout.stage(k, stage)) for role, stage in ROLES.items()}
        entry = per_iter.get(str(k)) or per_iter.get(k) or {}
        for role in ("generator", "extender"):
            mean = _summary_mean(entry, role) if isinstance(entry, Mapping) else None
            if not roles[role] and mean is not None:
                roles[role] = [mean]  # only the mean survives: one representative value
        out[k] = roles
    return out


def _acceptance(layout: RunLayout) -> dict[int, dict[str, Any]]:
    """Extension acceptance per iteration: from ``extend/done.json`` (its counts are ``common.summarize``'s:
    ``records`` extended, ``ok`` accepted), or counted from records while running; ``kept`` is the ``ok`` count of
    ``select/done.json``."""
    out: dict[int, dict[str, Any]] = {}
    for k in layout.iterations():
        ext = layout.stage(k, "extend")
        done = _read_dict(ext / DONE_NAME)
        row: dict[str, Any] = {}
        if done is not None:
            counts = done.get("counts") or {}
            inputs, accepted = counts.get("records"), counts.get("ok")
            rate = (done.get("metrics") or {}).get("extend/accept_rate")
            row = {"inputs": inputs, "accepted": accepted, "partial": False,
                   "rate": rate if is_number(rate) else (accepted / inputs if inputs else None)}
        elif (ext / RECORDS_NAME).is_file():
            rows = read_jsonl(ext / RECORDS_NAME)
            ok = sum(r.get("status") == "ok" for r in rows)
            row = {"inputs": len(rows), "accepted": ok, "rate": ok / len(rows) if rows else None, "partial": True}
        select = _read_dict(layout.stage(k, "select") / DONE_NAME)
        if select is not None:
            row["kept"] = (select.get("counts") or {}).get("ok")
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
            if is_number(v) and "score" in k.lower() and not k.endswith("score_scale")}


def point_name(key: Any) -> str:
    """Evaluation points are ``0`` (base), ``1``..``K`` and ``final``; ``iter_2`` is accepted for ``2``.

    >>> point_name("iter_2"), point_name(3), point_name("final")
    ('2', '3', 'final')
    """
    return str(key).removeprefix("iter_")


def latest(points: Iterable[str]) -> str:
    """The last evaluation point: ``final``, else the highest iteration."""
    return max(points, key=point_key)


def _ordered(by_point: Mapping[str, Any]) -> dict[str, Any]:
    return {p: by_point[p] for p in sorted(by_point, key=point_key) if by_point[p]}


def _eval_folders(layout: RunLayout) -> dict[str, Path]:
    return {point_name(p): layout.stage(p, "evaluate") for p in layout.eval_points()}


def _eval_files(folder: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """An evaluate folder's ``summary.json`` and ``scored.jsonl`` rows (or those of its benchmark subfolders)."""
    summary = _read_dict(folder / "summary.json")
    for extra in [] if summary is not None else sorted(folder.rglob("summary.json")):
        if (summary := _read_dict(extra)) is not None:
            break
    files = [folder / "scored.jsonl"] if (folder / "scored.jsonl").is_file() else sorted(folder.rglob("scored.jsonl"))
    return summary, [r for f in files for r in read_jsonl(f)]


def eval_rows(layout: RunLayout) -> dict[str, dict[str, Any]]:
    """:func:`~selflen.report.lengths.eval_length_row` of every evaluate folder holding a summary or scored rows,
    keyed ``"0"`` (base), ``"1"``..``"K"``, ``"final"``, each with its ``paired_growth`` over the base model's
    answers to the same prompts (None without them)."""
    out, scored = {}, {}
    for point, folder in _eval_folders(layout).items():
        summary, rows = _eval_files(folder)
        if summary is not None or rows:
            out[point], scored[point] = eval_length_row(summary, rows), rows
    for point, row in out.items():
        row["paired_growth"] = paired_growth(scored.get("0") or [], scored[point])
        row["intervals"] = growth_intervals(scored["0"], scored[point]) if "0" in scored else {}
    return out


def self_rows(layout: RunLayout) -> dict[str, list[dict[str, Any]]]:
    """The answered rows of the held-out self-instructed split (``iter_<k>/evaluate/self_instructed.jsonl``) per
    point, 0..K."""
    out = {}
    for k in [0, *layout.iterations()]:
        rows = [r for r in read_jsonl(layout.stage(k, "evaluate") / ROWS_FILE) if r.get("status") == "ok"]
        if rows:
            out[str(k)] = rows
    return out


def _evals(layout: RunLayout, summary: Mapping[str, Any] | None) -> dict[str, dict[str, float]]:
    """Scores per evaluation point: ``evaluate/done.json`` metrics, else any ``*summary*.json`` in that folder;
    then ``summary.json["eval"]``. Absent evaluation gives ``{}``."""
    out: dict[str, dict[str, float]] = {}
    for name, folder in _eval_folders(layout).items():
        metrics = score_metrics(read_json(folder / DONE_NAME))
        for extra in [] if metrics else sorted(folder.rglob("*summary*.json")):
            prefix = extra.parent.relative_to(folder).as_posix()
            found = score_metrics(read_json(extra))
            metrics.update({(f"{prefix}/{k}" if prefix != "." else k): v for k, v in found.items()})
        out[name] = metrics
    block = (summary or {}).get("eval")
    if isinstance(block, Mapping):  # {point: overall score} or {point: {metric: value}}; the folders win
        for key, value in block.items():
            point = point_name(key)
            if out.get(point):
                continue
            if is_number(value):
                out[point] = {"eval/score": float(value)}
            elif isinstance(value, Mapping):
                out[point] = score_metrics(value) or {k: float(v) for k, v in flatten(value).items() if is_number(v)}
    return _ordered(out)


def _scatter(layout: RunLayout) -> dict[str, list[tuple[float, float]]]:
    """(required, produced) word pairs from the scored rows of each evaluation point."""
    out = {}
    for point, folder in _eval_folders(layout).items():
        rows = _eval_files(folder)[1]
        out[point] = [(float(r["required"]), float(r["words"])) for r in rows
                      if is_number(r.get("required")) and is_number(r.get("words"))]
    return _ordered(out)


def _finished_stages(layout: RunLayout) -> list[str]:
    points = [0, *layout.iterations(), "final"]
    done = [p.parent for k in points for p in sorted((layout.root / layout.point_dir_name(k)).glob(f"*/{DONE_NAME}"))]
    done.sort(key=lambda d: (d / DONE_NAME).stat().st_mtime)
    return [layout.rel(d) for d in done]


def load_run(path: Path) -> Run:
    """Read one run directory (complete or not)."""
    layout = RunLayout(path)
    summary = _read_dict(layout.summary_path)
    return Run(path=layout.root, config=_load_config(layout), overrides=_load_overrides(layout), summary=summary,
               words=_words(layout, summary), acceptance=_acceptance(layout), evals=_evals(layout, summary),
               eval_lengths=eval_rows(layout), scatter=_scatter(layout), finished_stages=_finished_stages(layout))


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
            own = [f"{k}={short(run.config.get(k), 24)}" for k in keys]
        text = ",".join(own) or run.path.name
        run.label = text if len(text) <= max_len else text[: max_len - 1] + "…"
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.label] = seen.get(run.label, 0) + 1
    for i, run in enumerate(runs):
        if seen[run.label] > 1:
            run.label = f"{run.label} #{i}"


def short(value: Any, limit: int = 40) -> str:
    """A value as text of at most ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
