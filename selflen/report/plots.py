"""Every PNG selflen draws: length histograms, growth curves, evaluation scores, required-vs-produced scatter.

Inputs are plain data (no run objects), so the pipeline and the comparison report share these functions; the
figure helpers and the required-vs-produced scatter are the evaluation package's (``evaluation.plot_helpers``). A
missing value (``None`` or NaN) is a gap in a line, never a point at zero. matplotlib is imported on first use, with
the Agg backend, so importing this module is cheap.

Evaluation points are ``0`` (the base model, labelled "base"), ``1``..``K`` and ``"final"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evaluation.plot_helpers import _pyplot, colors, save, scatter  # noqa: F401 - scatter: the report's too

Point = int | str


def point_key(point: Point) -> tuple[int, int]:
    """Sort key of an evaluation point: base, 1..K, final (``"iter_2"`` and ``"2"`` read as 2).

    >>> sorted(["final", "2", 0, "10"], key=point_key)
    [0, '2', '10', 'final']
    """
    text = str(point).removeprefix("iter_")
    return (1, 0) if text == "final" else (0, int(text) if text.isdigit() else 0)


def point_label(point: Point) -> str:
    """How a point is shown: ``0`` is "base".

    >>> point_label(0), point_label("3"), point_label("final")
    ('base', '3', 'final')
    """
    text = str(point).removeprefix("iter_")
    return "base" if text == "0" else text


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _point_axis(ax: Any, points: Sequence[Point], xlabel: str = "iteration") -> dict[str, int]:
    """Evaluation points as evenly spaced categories on x; returns the x position of each point's label."""
    ordered = sorted({point_label(p): p for p in points}.values(), key=point_key)
    where = {point_label(p): i for i, p in enumerate(ordered)}
    ax.set_xticks(range(len(ordered)), [point_label(p) for p in ordered])
    ax.set_xlabel(xlabel)
    return where


def _line(ax: Any, where: Mapping[str, int], values: Mapping[Point, Any], style: str, **kw: Any) -> bool:
    """One series over the point axis; a missing value is NaN, so the line breaks there. False if all missing."""
    xs = sorted(where.values())
    by_x = {where[point_label(p)]: float(v) for p, v in values.items() if is_number(v) and point_label(p) in where}
    if not by_x:
        return False
    ax.plot(xs, [by_x.get(x, math.nan) for x in xs], style, **kw)
    return True


def length_histogram(words_by_iter: Mapping[int, Mapping[str, Sequence[float]]], path: Path | str) -> Path:
    """One panel per iteration; Generator answers and Extender outputs overlaid (a role with none is left out)."""
    plt = _pyplot()
    iters = sorted(words_by_iter)
    fig, axes = plt.subplots(1, max(1, len(iters)), figsize=(4.5 * max(1, len(iters)), 3.4), squeeze=False)
    for ax, k in zip(axes[0], iters, strict=False):
        for role, color in (("generator", "tab:blue"), ("extender", "tab:orange")):
            values = list(words_by_iter[k].get(role) or [])
            if values:
                ax.hist(values, bins=min(20, max(3, len(values))), alpha=0.6, color=color, label=role)
        ax.set_title(f"iteration {k}")
        ax.set_xlabel("words")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[0][0].set_ylabel("answers")
    return save(fig, path)


def growth_curve(series: Mapping[str, Mapping[Point, float | None] | Sequence[float | None]], path: Path | str,
                 title: str = "length growth", styles: Mapping[str, str] | None = None) -> Path:
    """Mean words per point for each named series (e.g. generator, extender, held-out eval).

    A series is ``{point: mean}`` (points 0/base, 1..K, final) or a list for iterations 1..n. ``None`` or NaN
    is a gap: a role that accepted nothing in an iteration is not drawn at zero.
    """
    plt = _pyplot()
    as_maps = {name: dict(vals) if isinstance(vals, Mapping) else dict(enumerate(vals, start=1))
               for name, vals in series.items()}
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    where = _point_axis(ax, [p for vals in as_maps.values() for p in vals])
    for (name, vals), color in zip(as_maps.items(), colors(len(as_maps)), strict=True):
        _line(ax, where, vals, (styles or {}).get(name, "-o"), color=color, label=name)
    ax.set_ylabel("mean words")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save(fig, path)


def run_lines(lines: Sequence[tuple[str, Mapping[Point, Any], str, Any]], path: Path | str, *, title: str,
              ylabel: str, xlabel: str = "iteration") -> Path | None:
    """Several runs on one point axis: ``(label, {point: value}, style, colour)`` per line; None if none has data."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    where = _point_axis(ax, [p for _, vals, _, _ in lines for p, v in vals.items() if is_number(v)], xlabel)
    drawn = [_line(ax, where, vals, style, color=color, label=label) for label, vals, style, color in lines]
    if not any(drawn):
        plt.close(fig)
        return None
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save(fig, path)


def eval_scores(panels: Mapping[str, Mapping[str, Mapping[Point, float]]], path: Path | str) -> Path | None:
    """One panel per score: ``{metric: {run label: {point: value}}}``, points on x, one line per run."""
    if not panels:
        return None
    plt = _pyplot()
    labels = list(dict.fromkeys(label for runs in panels.values() for label in runs))
    palette = dict(zip(labels, colors(len(labels)), strict=True))
    points = [p for runs in panels.values() for vals in runs.values() for p in vals]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (metric, runs) in zip(axes[0], panels.items(), strict=True):
        where = _point_axis(ax, points, "evaluated after iteration")
        for label, vals in runs.items():
            _line(ax, where, vals, "-o", color=palette[label], label=label)
        ax.set_title(metric, fontsize=9)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save(fig, path)


def verdict_plot(growth: Mapping[str, Mapping[Point, Mapping[str, Any]]], links: Mapping[Point, Mapping[str, Any]],
                 bars: Mapping[str, float], path: Path | str) -> Path:
    """Left: each point's effective-words ratio to the base model with its 95 % interval, one series per slice
    (``{slice: {point: interval}}``, the dashed line at 1 = no change). Right: the three links per iteration
    (``{k: {link: value}}``), each with its bar dotted in its colour."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 3.9))
    where = _point_axis(left, [p for vals in growth.values() for p in vals], "evaluated after iteration")
    for i, ((name, vals), color) in enumerate(zip(growth.items(), colors(max(1, len(growth))), strict=False)):
        pts = [(where[point_label(p)] + 0.08 * i, v) for p, v in vals.items()
               if point_label(p) in where and is_number((v or {}).get("ratio"))]
        if not pts:
            continue
        xs, ys = [x for x, _ in pts], [v["ratio"] for _, v in pts]
        lows = [v["ratio"] - v["low"] if is_number(v.get("low")) else 0.0 for _, v in pts]
        highs = [v["high"] - v["ratio"] if is_number(v.get("high")) else 0.0 for _, v in pts]
        left.errorbar(xs, ys, yerr=[lows, highs], fmt="-o", capsize=4, color=color, label=name)
    left.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    left.set(ylabel="effective words / base (95 % interval)", title="held-out length against the base model")
    if left.get_legend_handles_labels()[0]:
        left.legend(fontsize=8)
    names = list(bars)
    wk = _point_axis(right, list(links))
    for name, color in zip(names, colors(len(names)), strict=True):
        _line(right, wk, {k: (row or {}).get(name) for k, row in links.items()}, "-o", color=color, label=name)
        right.axhline(bars[name], color=color, linestyle=":", linewidth=1)
    right.set(ylabel="ratio (dotted: the link's bar)", title="the links: target gain, fit, transfer")
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save(fig, path)
