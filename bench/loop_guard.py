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
import os
import platform
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

from selflen.config import to_config  # noqa: E402
from selflen.engines import Request, SamplingParams, engine_from_config  # noqa: E402
from selflen.run_inputs import model_folder  # noqa: E402
from selflen.stages import generate  # noqa: E402
from selflen.store import RunLayout, Stage, read_json  # noqa: E402


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
    layout = RunLayout(args.run_dir.resolve())
    raw = read_json(layout.config_path)
    if raw is None:
        p.error(f"{layout.config_path} is missing: give the folder of a run that train.py wrote")
    cfg = to_config(raw)
    instructions = [r for r in Stage.read_records(layout.stage(1, "instruct")) if r["status"] == "ok"]
    instructions = instructions[: args.instructions] if args.instructions else instructions
    if not instructions:
        p.error(f"{layout.stage(1, 'instruct')} holds no accepted instruction")
    model_dir = model_folder(cfg)
    base = generate.settings(cfg)
    sides: dict[str, Any] = {}
    records: dict[str, dict[str, dict[str, Any]]] = {}
    with engine_from_config(cfg.backend, cfg.model, model_dir, cfg.seed, enable_lora=False) as engine, \
            tempfile.TemporaryDirectory() as tmp:  # fmt: skip
        warm = [Request([{"role": "user", "content": "Hello."}], SamplingParams(max_new_tokens=16, seed=i))
                for i in range(4)]  # fmt: skip
        engine.generate(warm)
        for name, on in (("loops_run_on", False), ("stop_loops", True)):
            settings = replace(base, sampling=base.sampling.with_(stop_loops=on))
            sides[name], records[name] = side(engine, instructions, settings, Path(tmp) / name)
            print(name, json.dumps(sides[name]), flush=True)
    off, on = records["loops_run_on"], records["stop_loops"]
    both = [i for i in off if off[i]["status"] == "ok" and on.get(i, {}).get("status") == "ok"]
    result = {
        "run_dir": str(layout.root),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "backend": cfg.backend.name,
        "instructions": len(instructions),
        "samples": base.samples,
        "max_new_tokens": base.sampling.max_new_tokens,
        "sides": sides,
        "speedup": round(sides["loops_run_on"]["wall_s"] / max(1e-9, sides["stop_loops"]["wall_s"]), 3),
        "token_ratio": round(sides["stop_loops"]["tokens"] / max(1, sides["loops_run_on"]["tokens"]), 3),
        "kept_by_both": len(both),
        "kept_by_both_identical": sum(off[i]["response"] == on[i]["response"] for i in both),
        "kept_only_without_guard": sum(off[i]["status"] == "ok" and on[i]["status"] != "ok" for i in off if i in on),
        "kept_only_with_guard": sum(on[i]["status"] == "ok" and off[i]["status"] != "ok" for i in on if i in off),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "sides"}, indent=2))
    print("written:", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
