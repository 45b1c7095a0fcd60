"""How far does the held-out length move between two samples of the same model? The noise floor of lengthen.py.

    python bench/eval_noise.py outputs/cpu_lengthen_clean --points 0 2 --seeds 2

A run samples each held-out answer once, with the run seed, so its growth ratio (iteration k over the base model)
carries sampling noise that the run itself cannot show: 24 prompts at temperature 0.7, some of which loop to the
budget on one draw and end on the next. This script re-evaluates points of a finished run (0 = the base model,
k = iteration k's Generator, served as the run served it: a merged copy under ``<run>/merged`` is reused) on the
run's own slice, with its decoding and budget, under ``--seeds`` further sampling seeds; only the sampling seed
changes, never the prompts. It reports every draw's length and the spread of the ratios over all pairs of draws:
base over base (a model compared with itself: what "no change" looks like) and iteration k over base.

Answers go to ``<run>/noise/<point>-s<seed>/`` (a draw already there is read, not redone); the report to
``bench/results/<name>.json``. Run it on an idle machine after the run has finished (it takes the run's lock).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selflen.locks import RunLock  # noqa: E402
from selflen.report.lengths import eval_length_row, paired_growth  # noqa: E402
from selflen.run_inputs import eval_rows, finished_run, model_folder  # noqa: E402
from selflen.stage_runner import Runner  # noqa: E402
from selflen.stages import evaluate  # noqa: E402
from selflen.store import Stage, config_hash, read_jsonl  # noqa: E402
from selflen.tracking import NullLogger  # noqa: E402


def draw_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One draw's length on the slice: mean words, mean of the answers the model ended, budget and repeat rates."""
    row = eval_length_row(None, rows)
    return {key: row[key] for key in ("n", "mean_words", "ended_mean_words", "finish_by_budget_rate",
                                      "repeated_ngram_rate")}


def spread(values: list[float]) -> dict[str, float] | None:
    """Min, median and max of ``values`` (rounded); None when there are none."""
    if not values:
        return None
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3), "max": round(max(values), 3),
            "n": len(values)}


def ratios(draws: dict[str, dict[int, list[dict[str, Any]]]], point: str) -> dict[str, Any]:
    """Ratios of ``point`` over the base model for every pair of draws; for the base over itself, every ordered
    pair of two different draws (both directions, so the spread is symmetric: "no change" has median 1)."""
    pairs = [(a, b) for a, b in itertools.product(draws[point], draws["0"]) if point != "0" or a != b]
    mean, ended, paired = [], [], []
    for a, b in pairs:
        top, bottom = draws[point][a], draws["0"][b]
        s_top, s_bottom = draw_stats(top), draw_stats(bottom)
        mean.append(s_top["mean_words"] / s_bottom["mean_words"])
        if s_top["ended_mean_words"] and s_bottom["ended_mean_words"]:
            ended.append(s_top["ended_mean_words"] / s_bottom["ended_mean_words"])
        growth = paired_growth(bottom, top)
        if growth is not None:
            paired.append(growth)
    return {"mean_words": spread(mean), "ended_mean_words": spread(ended), "paired_growth": spread(paired)}


def draw(runner: Runner, rows: list[dict[str, Any]], point: int, seed: int) -> list[dict[str, Any]]:
    """The scored answers of ``point`` under sampling seed ``seed``: the run's own for the run seed, else a new
    draw under ``<run>/noise`` (kept, so a second call reads it)."""
    layout, cfg = runner.layout, runner.cfg
    if seed == cfg.seed:
        return read_jsonl(layout.stage(point, "evaluate") / "scored.jsonl")
    folder, j = layout.current("gen", point) if point else (None, 0)
    settings = replace(evaluate.settings(cfg, point), seed=seed)
    rel = f"noise/{point}-s{seed}"
    stage = Stage(layout.root / rel, rel, config_hash({"settings": asdict(settings), "adapter": str(folder)}))
    scored = stage.dir / "scored.jsonl"
    if not scored.exists():
        started = time.time()
        engine = runner.engines.for_folder(folder, f"gen{j}" if folder else "base")
        evaluate.run(stage, evaluate.EvaluateInputs(rows), settings, engine)
        print(f"point {point} seed {seed}: {time.time() - started:.0f} s", flush=True)
    return read_jsonl(scored)


def measure(run_dir: Path, points: list[int], extra_seeds: int) -> dict[str, Any]:
    layout, cfg = finished_run(run_dir)
    missing = [p for p in points if not (layout.stage(p, "evaluate") / "scored.jsonl").exists()]
    if missing:
        raise SystemExit(f"{run_dir} has no evaluation at point(s) {missing}: let the run finish first")
    seeds = [cfg.seed, *(cfg.seed + 1 + i for i in range(extra_seeds))]
    with RunLock(layout.root):
        model_dir = model_folder(cfg)
        runner = Runner(cfg, layout, model_dir, NullLogger())
        rows = eval_rows(cfg)
        try:
            draws = {str(p): {s: draw(runner, rows, p, s) for s in seeds} for p in sorted(set([0, *points]))}
        finally:
            runner.engines.close()
    return {
        "run_dir": str(run_dir),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "seeds": seeds,
        "prompts": len(rows),
        "draws": {p: {str(s): draw_stats(r) for s, r in by_seed.items()} for p, by_seed in draws.items()},
        "ratios_over_base": {p: ratios(draws, p) for p in draws},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="a finished run directory")
    p.add_argument("--points", type=int, nargs="+", default=[0, 2], help="evaluation points (0 = the base model)")
    p.add_argument("--seeds", type=int, default=2, help="sampling seeds beyond the run's own")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "eval_noise.json")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error("--seeds must be at least 1: the run's own draw alone has no spread")
    result = measure(args.run_dir.resolve(), args.points, args.seeds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{'point':>6} {'seed':>5} {'mean':>7} {'ended':>7} {'by budget':>9} {'rep10':>6}")
    for point, by_seed in result["draws"].items():
        for seed, s in by_seed.items():
            ended = f"{s['ended_mean_words']:.1f}" if s["ended_mean_words"] is not None else "-"
            print(f"{point:>6} {seed:>5} {s['mean_words']:>7.1f} {ended:>7} {s['finish_by_budget_rate']:>9.2%} "
                  f"{s['repeated_ngram_rate']:>6.3f}")
    for point, r in result["ratios_over_base"].items():
        print(f"point {point} over base, over all pairs of draws:", json.dumps(r))
    print("written:", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
