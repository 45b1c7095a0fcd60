"""Did the model write longer? Measure a finished run against its own base model, on the held-out slice.

    python bench/lengthen.py outputs/+experiment=cpu_lengthen            # an existing run dir
    python bench/lengthen.py --run +experiment=cpu_lengthen               # run `train.py` first, timed

Reads the run's evaluate folders (``iter_0`` = the base model, ``iter_k`` = iteration k's Generator): mean and
median words, the mean of the answers the model ended itself, the paired growth over the base (geometric mean of
per-prompt ratios), finish-by-budget rate, repeated 10-gram rate, and the goals of issue 9 at every iteration (the
issue names iteration 2: mean words >= 1.5x base, finish-by-budget <= 10 %, repeated 10-gram rate <= base + 0.02).
Also what each iteration's stages
kept and dropped, and the Extender's ratios, so a run that does not get there shows where it stops. Writes
``bench/results/<name>.json``, ``<run>/plots/eval_length_histogram.png`` and ``<run>/plots/eval_paired.png``
(each prompt's words at every iteration against the base model's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selflen.report.lengths import eval_length_row, paired_growth  # noqa: E402
from selflen.store import RunLayout, Stage, read_json  # noqa: E402

GOAL_RATIO, GOAL_BUDGET, GOAL_REPEAT = 1.5, 0.10, 0.02


def point_stats(layout: RunLayout, point: int | str, base_rows: list[dict[str, Any]] | None = None
                ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """One point's held-out length (``selflen.report.lengths``) and its scored rows; None when it has none."""
    path = layout.stage(point, "evaluate") / "scored.jsonl"
    rows = [json.loads(line) for line in path.open()] if path.exists() else []
    if not rows:
        return None, rows
    row = eval_length_row(None, rows)
    return {
        "n": row["n"],
        "mean_words": row["mean_words"],
        "median_words": row["median_words"],
        "effective_words": row["effective_words"],
        "ended_mean_words": row["ended_mean_words"],
        "ended_n": sum(r.get("finish_reason") != "length" for r in rows),
        "paired_growth": paired_growth(base_rows if base_rows is not None else rows, rows),
        "finish_by_budget_rate": row["finish_by_budget_rate"],
        "repeated_10gram_rate": row["repeated_ngram_rate"],
        "words": [r["words"] for r in rows],
    }, rows


def goal(base: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """Issue 9's three goals at one point, against the base model of the same run."""
    ratio = point["mean_words"] / max(1e-9, base["mean_words"])
    return {
        "mean_words_ratio": round(ratio, 3),
        "ratio_ok": ratio >= GOAL_RATIO,
        "finish_by_budget_ok": point["finish_by_budget_rate"] <= GOAL_BUDGET,
        "repetition_ok": point["repeated_10gram_rate"] <= base["repeated_10gram_rate"] + GOAL_REPEAT,
    }


def iteration_story(layout: RunLayout, k: int) -> dict[str, Any]:
    """Counts and drops per stage, and the Extender's ratios, of iteration ``k``."""
    story: dict[str, Any] = {}
    for stage in ("instruct", "generate", "select_responses", "extend", "select", "sft_data",
                  "finetune_gen", "finetune_ext"):
        done = read_json(layout.stage(k, stage) / "done.json")
        if done:
            story[stage] = {"counts": done.get("counts"), "drops": done.get("drops"), "seconds": done.get("seconds")}
    ext = [r for r in Stage.read_records(layout.stage(k, "extend")) if r["status"] == "ok"]
    gen = [r for r in Stage.read_records(layout.stage(k, "generate")) if r["status"] == "ok"]
    story["generator_mean_words"] = round(statistics.fmean(r["words"] for r in gen), 1) if gen else None
    story["extender_mean_words"] = round(statistics.fmean(r["words"] for r in ext), 1) if ext else None
    story["extender_mean_ratio"] = round(statistics.fmean(r["ratio"] for r in ext), 3) if ext else None
    story["extender_accepted_at_try"] = {str(t): n for t, n in sorted(Counter(r.get("tries", 1) for r in ext).items())}
    train = read_json(layout.stage(k, "finetune_gen") / "done.json") or {}
    story["gen_train"] = {key: (train.get("train") or {}).get(key)
                          for key in ("examples", "tokens", "first_loss", "last_loss", "steps")}
    return story


def histogram(points: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    top = max(max(p["words"]) for p in points.values())
    bins = [i * top / 20 for i in range(21)]
    for name, p in points.items():
        ax.hist(p["words"], bins=bins, alpha=0.45, label=f"{name} (mean {p['mean_words']:.0f})")
    ax.set_xlabel("words per held-out answer")
    ax.set_ylabel("answers")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def paired_scatter(scored: dict[int, list[dict[str, Any]]], path: Path) -> Path | None:
    """Each held-out prompt's words at iteration k against the base model's on the same prompt (y = x: no change);
    ``scored`` maps points (0 = base) to their scored rows."""
    from selflen.report.plots import scatter

    def words(point: int) -> dict[tuple[Any, Any], float]:
        return {(r.get("id"), r.get("sample")): r["words"] for r in scored.get(point, [])}

    base = words(0)
    groups = {f"iteration {k}": [(base[key], w) for key, w in words(k).items() if key in base]
              for k in scored if k != 0}
    return scatter(groups, path, title="held-out words per prompt: iteration k vs the base model",
                   axes=("base model's words", "iteration k's words", "as long as the base"))


def measure(run_dir: Path, wall_seconds: float | None, command: list[str] | None) -> dict[str, Any]:
    layout = RunLayout(run_dir)
    points: dict[str, dict[str, Any]] = {}
    scored: dict[int, list[dict[str, Any]]] = {}
    for point in [0, *layout.iterations()]:
        stats, scored[point] = point_stats(layout, point, scored.get(0))
        if stats is not None:
            points["base" if point == 0 else f"iter_{point}"] = stats
    base = points.get("base")
    goals = {name: goal(base, point) for name, point in points.items() if base and name != "base"}
    if points:
        histogram(points, layout.plots_dir / "eval_length_histogram.png")
        paired_scatter(scored, layout.plots_dir / "eval_paired.png")
    return {
        "run_dir": str(run_dir),
        "command": command,
        "wall_seconds": wall_seconds,
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "points": {k: {kk: vv for kk, vv in v.items() if kk != "words"} for k, v in points.items()},
        "goals": goals,
        "iterations": {k: iteration_story(layout, k) for k in layout.iterations()},
        "stage_seconds": (read_json(layout.summary_path) or {}).get("stage_seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", nargs="?", type=Path, help="a finished run directory")
    p.add_argument("--run", nargs="+", help="train.py overrides: run the loop first (timed), then measure")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cpu_lengthen.json")
    args = p.parse_args(argv)
    wall, command = None, None
    run_dir = args.run_dir
    if args.run:
        run_dir = run_dir or ROOT / "outputs" / "bench_lengthen"
        command = [sys.executable, "train.py", *args.run, f"hydra.run.dir={run_dir}"]
        t0 = time.time()
        subprocess.run(command, cwd=ROOT, check=True)
        wall = round(time.time() - t0, 1)
    if run_dir is None:
        p.error("give a run directory or --run OVERRIDES")
    result = measure(run_dir.resolve(), wall, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{'point':>8} {'n':>3} {'mean':>7} {'median':>7} {'ended':>7} {'paired':>6} {'by budget':>9} {'rep10':>6}")
    for name, s in result["points"].items():
        ended = f"{s['ended_mean_words']:.1f}" if s["ended_mean_words"] is not None else "-"
        paired = f"{s['paired_growth']:.2f}x" if s["paired_growth"] is not None else "-"
        print(f"{name:>8} {s['n']:>3} {s['mean_words']:>7.1f} {s['median_words']:>7.1f} {ended:>7} {paired:>6} "
              f"{s['finish_by_budget_rate']:>9.2%} {s['repeated_10gram_rate']:>6.3f}")
    for name, g in result["goals"].items():
        print(f"goals at {name}:", json.dumps(g))
    print("wall seconds:", wall, "| written:", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
