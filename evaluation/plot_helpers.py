"""The figures the evaluation package draws itself (required vs produced words), and the figure helpers the
project's reports build on (``selflen.report.plots``). matplotlib is imported on first use, with the Agg backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colors(n: int) -> list[Any]:
    """``n`` distinct colours (tab10, or tab20 beyond ten)."""
    cmap = _pyplot().get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def save(fig: Any, path: Path | str) -> Path:
    """Write a figure (parents created) and close it. ``bbox_inches="tight"`` grows the saved box to hold a
    legend outside the axes instead of shrinking the axes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def scatter(groups: Mapping[str, Sequence[tuple[float, float]]], path: Path | str, title: str = "required vs produced",
            log: bool = False, keep_empty: bool = False, axes: tuple[str, str, str] = (
                "required words", "produced words", "produced = required")) -> Path | None:
    """Required vs produced words, one colour per group, with the y = x line; ``axes`` names x, y and that line
    (other pairs of word counts use it too). On log axes an empty answer is drawn at 1 word so it stays visible.
    None when there are no points, unless ``keep_empty`` (empty axes)."""
    pairs = {name: [(float(r), float(w)) for r, w in pts] for name, pts in groups.items() if pts}
    if not pairs and not keep_empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 5.0))
    values = []
    for (name, pts), color in zip(pairs.items(), colors(len(pairs)), strict=True):
        xs = [r for r, _ in pts]
        ys = [max(1.0, w) if log else w for _, w in pts]
        ax.scatter(xs, ys, s=14, alpha=0.65, color=color, label=name)
        values += xs + ys
    values = values or [1.0, 10.0]
    lo = min(values) if log else 0.0
    hi = max(max(values), 1.0)
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1, linestyle=":", label=axes[2])
    if log:
        ax.set(xscale="log", yscale="log")
    ax.set(xlabel=axes[0], ylabel=axes[1], title=title)
    ax.legend(fontsize=7)
    return save(fig, path)
