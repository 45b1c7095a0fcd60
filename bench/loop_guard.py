"""The generate stage with and without ``generate.stop_loops``: wall time, tokens spent, what the filters keep.

    python bench/loop_guard.py outputs/cpu_lengthen_clean            # a run's iteration-1 instructions and config

Side by side in one process and one engine (the run's backend serving the base model, as in iteration 1): the run's
own accepted iteration-1 instructions are answered ``generate.samples`` times each with the run's decoding and
budget, once with loops running on to the budget (the reference) and once with the engine ending a verbatim loop
where it closes (``stop_loops``). Same seeds on both sides. Reports each side's wall time, generated tokens, finish
reasons, drops by reason, and, for the answers both sides kept, how many came out identical (vLLM on CPU batches
differently once some sequences stop early, so bf16 numbers, hence samples, can drift). Writes
``bench/results/loop_guard.json``; the answers go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sides import header, write  # noqa: E402
from selflen.run_inputs import finished_run, warm_base_engine  # noqa: E402
from selflen.stages import generate  # noqa: E402
from selflen.store import Stage  # noqa: E402


def side(engine: Any, instructions: list[dict[str, Any]], settings: generate.GenerateSettings, folder: Path
         ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """One side: the generate stage run into ``folder``; its numbers and its records by id."""
    stage = Stage(folder, folder.name, "bench")
    started = time.time()
    result = generate.run(stage, instructions, settings, engine)
    wall = time.time() - started
    records = {r["id"]: r for r in stage.records()}
    kept = [r for r in records.values() if r["status"] == "ok"]
    return {
        "wall_s": round(wall, 1),
        "answers": len(records),
        "tokens": sum(int(r["tokens"]) for r in records.values()),
        "finish": dict(Counter(r["finish_reason"] for r in records.values())),
        "kept": len(kept),
        "kept_mean_words": round(statistics.fmean(r["words"] for r in kept), 1) if kept else None,
        "drops": result.drops,
    }, records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="a run with iter_1/instruct and config.json")
    p.add_argument("--instructions", type=int, help="only the first N instructions")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "loop_guard.json")
    args = p.parse_args(argv)
    layout, cfg = finished_run(args.run_dir)
    instructions = [r for r in Stage.read_records(layout.stage(1, "instruct")) if r["status"] == "ok"]
    instructions = instructions[: args.instructions] if args.instructions else instructions
    if not instructions:
        p.error(f"{layout.stage(1, 'instruct')} holds no accepted instruction")
    base = generate.settings(cfg)
    sides: dict[str, Any] = {}
    records: dict[str, dict[str, dict[str, Any]]] = {}
    with warm_base_engine(cfg) as engine, tempfile.TemporaryDirectory() as tmp:
        for name, on in (("loops_run_on", False), ("stop_loops", True)):
            settings = replace(base, sampling=base.sampling.with_(stop_loops=on))
            sides[name], records[name] = side(engine, instructions, settings, Path(tmp) / name)
            print(name, json.dumps(sides[name]), flush=True)
    off, on = records["loops_run_on"], records["stop_loops"]
    both = [i for i in off if off[i]["status"] == "ok" and on.get(i, {}).get("status") == "ok"]
    result = {
        **header(layout, cfg),
        "instructions": len(instructions),
        "samples": base.generate.samples,
        "max_new_tokens": base.sampling.max_new_tokens,
        "sides": sides,
        "speedup": round(sides["loops_run_on"]["wall_s"] / max(1e-9, sides["stop_loops"]["wall_s"]), 3),
        "token_ratio": round(sides["stop_loops"]["tokens"] / max(1, sides["loops_run_on"]["tokens"]), 3),
        "kept_by_both": len(both),
        "kept_by_both_identical": sum(off[i]["response"] == on[i]["response"] for i in both),
        "kept_only_without_guard": sum(off[i]["status"] == "ok" and on[i]["status"] != "ok" for i in off if i in on),
        "kept_only_with_guard": sum(on[i]["status"] == "ok" and off[i]["status"] != "ok" for i in on if i in off),
    }
    write(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
