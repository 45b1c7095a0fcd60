"""PNG plots of a run: word-count histograms per iteration and the growth curve across iterations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def length_histogram(words_by_iter: Mapping[int, Mapping[str, Sequence[int]]], path: Path) -> Path:
    """One panel per iteration; Generator answers and Extender outputs overlaid."""
    iters = sorted(words_by_iter)
    fig, axes = plt.subplots(1, max(1, len(iters)), figsize=(4.5 * max(1, len(iters)), 3.4), squeeze=False)
    for ax, k in zip(axes[0], iters, strict=False):
        for role, color in (("generator", "tab:blue"), ("extender", "tab:orange")):
            values = list(words_by_iter[k].get(role, []))
            if values:
                ax.hist(values, bins=min(20, max(3, len(values))), alpha=0.6, color=color, label=role)
        ax.set_title(f"iteration {k}")
        ax.set_xlabel("words")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("answers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def growth_curve(means: Mapping[str, Sequence[float]], path: Path, title: str = "length growth") -> Path:
    """Mean words per iteration for each series (e.g. generator / extender)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, values in means.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean words")
    ax.set_title(title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
