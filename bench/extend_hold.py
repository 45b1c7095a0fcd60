"""The extend stage with and without ``extend.hold_to_ratio``: how many extensions it accepts, how long they are,
how much they repeat, and what each side costs.

    python bench/extend_hold.py outputs/cpu_lengthen_clean --responses 40   # a run's iteration-1 Extender inputs

Side by side in one process and one engine (the run's backend serving the base model, which is iteration 1's
Extender): the answers the run's ``iter_1/select_responses`` kept are extended with the run's own extend settings,
once as the reference decodes stage 2 (it may end whenever it likes) and once with its EOS held back until the kept
prefix plus the continuation could reach ``min_ratio`` x the answer (``hold_to_ratio``). Same seeds on both sides.
Reports each side's wall time, accepted extensions (and per minute), their mean growth ratio and words, their
repeated-10-gram rate (the in-loop evaluation's measure, so a forced continuation that pads shows here), and the
drops by reason. Writes ``bench/results/extend_hold.json``; the extensions go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sides import header, write  # noqa: E402
from evaluation.repetition import repeated_ngram_rate  # noqa: E402
from selflen.run_inputs import finished_run, warm_base_engine  # noqa: E402
from selflen.stages import extend  # noqa: E402
from selflen.store import Stage  # noqa: E402


def side(engine: Any, responses: list[dict[str, Any]], settings: extend.ExtendSettings, folder: Path
         ) -> dict[str, Any]:
    """One side: the extend stage run into ``folder``; its numbers."""
    stage = Stage(folder, folder.name, "bench")
    started = time.time()
    result = extend.run(stage, responses, settings, engine)
    wall = time.time() - started
    ok = [r for r in stage.records() if r["status"] == "ok"]

    def mean(values: list[float]) -> float | None:
        return round(statistics.fmean(values), 3) if values else None

    return {
        "wall_s": round(wall, 1),
        "extensions": len(stage.records()),
        "accepted": len(ok),
        "accepted_per_min": round(len(ok) / (wall / 60), 2),
        "mean_ratio": mean([r["ratio"] for r in ok]),
        "mean_words": mean([r["words"] for r in ok]),
        "repeated_10gram_rate": mean([repeated_ngram_rate(r["extended"], 10) for r in ok]),
        "source_repeated_10gram_rate": mean([repeated_ngram_rate(r["response"], 10) for r in ok]),
        "drops": result.drops,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="a run with iter_1/select_responses and config.json")
    p.add_argument("--responses", type=int, help="only the first N answers")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "extend_hold.json")
    args = p.parse_args(argv)
    layout, cfg = finished_run(args.run_dir)
    source = layout.stage(1, "select_responses")
    responses = [r for r in Stage.read_records(source) if r["status"] == "ok"][: args.responses]
    if not responses:
        p.error(f"{source} holds no kept answer")
    base = extend.settings(cfg)
    sides: dict[str, Any] = {}
    with warm_base_engine(cfg) as engine, tempfile.TemporaryDirectory() as tmp:
        for name, on in (("reference", False), ("hold_to_ratio", True)):
            settings = replace(base, extend=replace(base.extend, hold_to_ratio=on))
            sides[name] = side(engine, responses, settings, Path(tmp) / name)
            print(name, json.dumps(sides[name]), flush=True)
    ref, held = sides["reference"], sides["hold_to_ratio"]
    result = {
        **header(layout, cfg),
        "responses": len(responses),
        "extend": {k: getattr(base.extend, k) for k in ("extensions", "rounds", "attempts", "min_ratio")}
                  | {"max_new_tokens": base.sampling.max_new_tokens},
        "sides": sides,
        "accepted_ratio": round(held["accepted"] / max(1, ref["accepted"]), 3),
        "wall_ratio": round(held["wall_s"] / max(1e-9, ref["wall_s"]), 3),
        "accepted_per_min_ratio": round(held["accepted_per_min"] / max(1e-9, ref["accepted_per_min"]), 3),
    }
    write(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
