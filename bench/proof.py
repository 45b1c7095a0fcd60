"""The proof run's verdict, from finished runs' ``summary.json``: final / base effective words on the held-out
LonGen prompts with its paired 95 % interval, the ended rate and repeated-10-gram rate against the base's, the three
links of each iteration, and whether the goals of issue 23 hold (ratio >= 1.5, interval's low end >= 1.2, ended
rate >= base - 5 points, repeated 10-grams <= base + 0.02).

    python bench/proof.py outputs/+experiment=cpu_lengthen outputs/+experiment=cpu_lengthen,seed=1 \
        --out bench/results/proof.json

Prints one markdown table of the points and one of the links per run (the rows docs/benchmarks/2026-12-03-proof-run.md
carries).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOALS = {"ratio": 1.5, "low": 1.2, "ended_points": 0.05, "repeat": 0.02}


def goals(intervals: dict[str, Any]) -> dict[str, Any]:
    """The four goals of one point against the base, from its ``eval.<p>.intervals``.

    >>> iv = {"effective_words": {"ratio": 1.6, "low": 1.25}, "ended_rate": {"base": 0.5, "point": 0.47},
    ...       "repeated_10gram_rate": {"base": 0.15, "point": 0.16}}
    >>> goals(iv)["all"], goals({**iv, "ended_rate": {"base": 0.5, "point": 0.4}})["ended_rate"]
    (True, False)
    """
    eff, ended, rep = (intervals.get(k) or {} for k in ("effective_words", "ended_rate", "repeated_10gram_rate"))
    out = {
        "ratio": (eff.get("ratio") or 0) >= GOALS["ratio"],
        "low": (eff.get("low") or 0) >= GOALS["low"],
        "ended_rate": (ended.get("point") or 0) >= (ended.get("base") or 0) - GOALS["ended_points"],
        "repeated_10gram_rate": (rep.get("point") or 0) <= (rep.get("base") or 0) + GOALS["repeat"],
    }
    out["all"] = all(out.values())
    return out


def _fmt(iv: dict[str, Any] | None, key: str = "ratio") -> str:
    if not iv or iv.get(key) is None:
        return "-"
    low, high = iv.get("low"), iv.get("high")
    return f"{iv[key]:.2f}x [{low:.2f}, {high:.2f}]" if low is not None else f"{iv[key]:.2f}x"


def run_rows(run: Path) -> dict[str, Any]:
    s = json.loads((run / "summary.json").read_text())
    cfg = json.loads((run / "config.json").read_text())
    points = {}
    for point, ev in (s.get("eval") or {}).items():
        iv = ev.get("intervals") or {}
        points[point] = {"intervals": iv, "goals": goals(iv) if point != "0" else None,
                         "self_instructed": (s.get("self_instructed") or {}).get(point)}
    links = {}
    for k, link in (s.get("links") or {}).items():  # summaries written before fit_effective: computed here alike
        own = (s.get("self_instructed") or {}).get(k) or {}
        base = (s.get("eval") or {}).get("0") or {}
        target = link.get("target_words")
        links[k] = {**link,
                    "fit_effective": link.get("fit_effective") or _ratio(own.get("effective_words"), target),
                    "target_over_base_effective": link.get("target_over_base_effective")
                    or _ratio(target, base.get("effective_words"))}
    return {"run_dir": str(run), "seed": cfg["seed"], "finetune": cfg["finetune"],
            "wall_seconds": s.get("wall_seconds"), "stage_seconds": s.get("stage_seconds"),
            "headline": s.get("headline"), "links": links, "points": points}


def _ratio(top: Any, bottom: Any) -> float | None:
    numbers = isinstance(top, int | float) and isinstance(bottom, int | float)
    return round(top / bottom, 3) if numbers and bottom else None


def markdown(row: dict[str, Any]) -> str:
    lines = [f"seed {row['seed']} ({row['run_dir']}):", "",
             "| point | effective words / base [95 %] | ended rate (base) | repeated 10-grams (base) | "
             "mean words / base [95 %] | goals |", "|---|---|---|---|---|---|"]
    for point, p in row["points"].items():
        iv = p["intervals"]
        if point == "0" or not iv:
            continue
        ended, rep = iv.get("ended_rate") or {}, iv.get("repeated_10gram_rate") or {}
        g = p["goals"]
        held = ", ".join(k for k, v in g.items() if k != "all" and v) or "none"
        lines.append(f"| {point} | {_fmt(iv.get('effective_words'))} | {ended.get('point', 0):.0%} "
                     f"({ended.get('base', 0):.0%}) | {rep.get('point', 0):.3f} ({rep.get('base', 0):.3f}) | "
                     f"{_fmt(iv.get('mean_words'))} | {'all' if g['all'] else held} |")
    lines += ["", "| iteration | targets | target words | / sources | / base ended | / base effective | self words | "
              "fit (words) | fit (effective) | transfer |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k, link in (row["links"] or {}).items():
        lines.append(f"| {k} | {link.get('targets')} | {link.get('target_words')} | {link.get('target_gain')} | "
                     f"{link.get('target_over_base_ended')} | {link.get('target_over_base_effective')} | "
                     f"{link.get('self_words')} | {link.get('fit')} | {link.get('fit_effective')} | "
                     f"{link.get('transfer')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    rows = [run_rows(r) for r in args.runs]
    for row in rows:
        print(markdown(row), end="\n\n")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "runs": rows},
                                       indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
