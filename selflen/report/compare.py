"""Compare runs from their run directories alone: a Markdown report with tables, and PNG plots.

    python -m selflen.report.compare outputs/run_a outputs/run_b --out comparison
    python -m selflen.report.compare --sweep multirun/2026-11-25_18-00-00     # every run dir below the sweep

Everything is read from the files a run writes (see :mod:`selflen.report.runs`), so it works offline, on copied
folders, and on a run that failed midway (no ``summary.json``: it reports what exists). ``report.md`` holds the
runs and their status, the config keys that differ, words per iteration per role, extension acceptance, the
held-out length at each evaluation point (base, 1..K, final) and evaluation scores. Plots: length growth per run,
held-out length per run, evaluation scores per run, and required-vs-produced words. With W&B online (an API key
configured, ``WANDB_MODE`` not offline) it also creates a W&B Report; otherwise that step is skipped with a note.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from selflen.report import plots
from selflen.report.markdown import render_report
from selflen.report.runs import Run, find_runs, label_runs, latest, load_run
from selflen.report.wandb_report import wandb_report

REPORT_NAME = "report.md"
MAX_EVAL_PANELS = 4
PROG = "python -m selflen.report.compare"


def plot_growth(runs: Sequence[Run], path: Path) -> Path | None:
    """Mean words per iteration: Generator (solid) and Extender (dashed), one colour per run; a role with
    nothing in an iteration leaves a gap."""
    lines = []
    for run, color in zip(runs, plots.colors(len(runs)), strict=True):
        for role, style in (("generator", "-o"), ("extender", "--s")):
            means = {k: statistics.fmean(w[role]) if w.get(role) else None for k, w in run.words.items()}
            lines.append((f"{run.label} · {role}", means, style, color))
    return plots.run_lines(lines, path, ylabel="mean words",
                           title="length growth per run (solid: Generator, dashed: Extender)")


def plot_eval_length(runs: Sequence[Run], path: Path) -> Path | None:
    """The Generator's mean words on the held-out slice at base, 1..K and final, one line per run."""
    lines = [(run.label, {p: e.get("mean_words") for p, e in run.eval_lengths.items()}, "-o", color)
             for run, color in zip(runs, plots.colors(len(runs)), strict=True)]
    return plots.run_lines(lines, path, ylabel="mean words", xlabel="evaluation point",
                           title="held-out length per run (Generator)")


def plot_evals(runs: Sequence[Run], path: Path) -> Path | None:
    """One panel per score (those most runs have, the most general first), points on x, one line per run."""
    counts: dict[str, int] = {}
    for r in runs:
        for m in {m for scores in r.evals.values() for m in scores}:
            counts[m] = counts.get(m, 0) + 1
    metrics = sorted(counts, key=lambda m: (-counts[m], m.count("/") + m.count("."), m))[:MAX_EVAL_PANELS]
    panels = {m: {r.label: {p: s[m] for p, s in r.evals.items() if m in s} for r in runs if r.evals}
              for m in metrics}
    return plots.eval_scores(panels, path)


def plot_scatter(runs: Sequence[Run], path: Path) -> Path | None:
    """Required vs produced words of each run's latest evaluation, with the y = x line."""
    groups = {}
    for run in runs:
        if run.scatter:
            point = latest(run.scatter)
            groups[f"{run.label} (eval {plots.point_label(point)})"] = run.scatter[point]
    return plots.scatter(groups, path, title="required vs produced")


def compare(run_dirs: Sequence[Path], out: Path, title: str = "selflen run comparison",
            use_wandb: bool = True) -> Path:
    """Read the runs, write ``out/report.md`` and its PNG plots; with ``use_wandb`` (``--publish``) and W&B
    online, also save a W&B Report (plots uploaded as media) and link it; returns the report's path."""
    runs = [load_run(p) for p in run_dirs]
    label_runs(runs)
    out.mkdir(parents=True, exist_ok=True)
    drawn = {caption: p for caption, p in (
        ("length growth per run", plot_growth(runs, out / "growth.png")),
        ("held-out length per run", plot_eval_length(runs, out / "eval_length.png")),
        ("evaluation scores per run", plot_evals(runs, out / "eval_scores.png")),
        ("required vs produced words", plot_scatter(runs, out / "required_vs_produced.png")),
    ) if p is not None}
    notes = [f"{r.label}: {r.status}" for r in runs if not r.complete]
    text = render_report(runs, drawn, title, notes) + regression_section(runs)
    url = wandb_report(runs, title, text, images=drawn) if use_wandb else None
    if url:
        text += f"\nW&B report: {url}\n"
    report = out / REPORT_NAME
    report.write_text(text, encoding="utf-8")
    return report


def regression_section(runs: Sequence[Run]) -> str:
    """The general-ability verdicts of the runs that ran ``final/regression`` (empty when none did)."""
    from evaluation.lm_eval_compare import verdict_lines

    lines = [f"- {r.label}: {line}" for r in runs for line in verdict_lines((r.summary or {}).get("regression") or {})]
    return "\n## General-ability regression (final model vs base, paired bootstrap SE)\n\n" + "\n".join(lines) + "\n" \
        if lines else ""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("runs", nargs="*", type=Path, help="run directories (each with config.json or summary.json)")
    p.add_argument("--sweep", type=Path, action="append", default=[],
                   help="a folder (e.g. a Hydra multirun dir) whose run directories are all compared; repeatable")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: <first sweep>/comparison, else ./comparison)")
    p.add_argument("--title", default="selflen run comparison")
    p.add_argument("--publish", action="store_true",
                   help="save a W&B Report (needs a W&B API key; `pip install selflen[reports]`)")
    p.add_argument("--no-wandb", action="store_true", help="never try to create a W&B Report (the default)")
    return p


def _run_dirs(runs: Sequence[Path], sweeps: Sequence[Path]) -> list[Path]:
    found = list(runs)
    for sweep in sweeps:
        below = find_runs(sweep)
        if not below:
            print(f"{PROG}: no run directory (with summary.json or config.json) below {sweep}", file=sys.stderr)
        found += below
    return list(dict.fromkeys(p.resolve() for p in found))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m selflen.report.compare``; returns the exit code (2 when there is nothing to compare)."""
    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    missing = [p for p in [*args.runs, *args.sweep] if not p.is_dir()]
    if missing:
        print(f"{PROG}: not a directory: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    run_dirs = _run_dirs(args.runs, args.sweep)
    if not run_dirs:
        print(f"{PROG}: nothing to compare; give run directories or --sweep DIR", file=sys.stderr)
        return 2
    out = args.out or ((args.sweep[0] / "comparison") if args.sweep else Path("comparison"))
    report = compare(run_dirs, out, title=args.title, use_wandb=args.publish and not args.no_wandb)
    print(f"compared {len(run_dirs)} runs -> {report}")
    for png in sorted(out.glob("*.png")):
        print(f"plot: {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
