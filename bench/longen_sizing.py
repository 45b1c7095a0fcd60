"""How long does the base model answer LonGen English prompts? Words, budget hits and wall time per budget.

16 English LonGen rows (evenly spaced over the 120 English rows, so every range and constraint type is in), each
prompt the single user message, sampled with temperature 0.7, top-p 0.8, top-k 20, repetition penalty 1.1 and
per-request seeds, at each ``--budgets`` max_new_tokens; one engine serves all budgets.

    python bench/longen_sizing.py --backend vllm --kwargs '{"dtype": "bfloat16"}' --budgets 2048,1024
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data/longen/LonGen.jsonl")
    ap.add_argument("--backend", default="vllm")
    ap.add_argument("--kwargs", default="{}")
    ap.add_argument("--count", type=int, default=16)
    ap.add_argument("--budgets", default="2048,1024")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "longen_sizing.json")
    args = ap.parse_args()

    from selflen.engines import build_engine
    from selflen.engines.base import Request, SamplingParams
    from selflen.models import embedded_model_dir

    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()]
    english = [r for r in rows if r.get("language") == "en"]
    picked = [english[round(i * len(english) / args.count)] for i in range(args.count)]
    kwargs = json.loads(args.kwargs)
    result = {
        "backend": args.backend,
        "kwargs": kwargs,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("VLLM_", "OMP_"))},
        "prompts": [{k: r[k] for k in ("range", "type", "constraint")} for r in picked],
        "loadavg_at_start": os.getloadavg(),
        "budgets": [],
    }
    t0 = time.perf_counter()
    engine = build_engine(args.backend, str(embedded_model_dir()), **kwargs)
    result["start_s"] = round(time.perf_counter() - t0, 2)
    try:
        for budget in [int(b) for b in args.budgets.split(",")]:
            reqs = [
                Request(
                    [{"role": "user", "content": r["query"]}],
                    SamplingParams(
                        temperature=0.7,
                        top_p=0.8,
                        top_k=20,
                        repetition_penalty=1.1,
                        max_new_tokens=budget,
                        seed=args.seed + i,
                    ),
                )
                for i, r in enumerate(picked)
            ]
            load = os.getloadavg()
            w0 = time.perf_counter()
            res = engine.generate(reqs)
            wall = time.perf_counter() - w0
            words = [len(r.text.split()) for r in res]
            tokens = [r.outputs[0].tokens for r in res]
            hit = [r.outputs[0].finish_reason == "length" for r in res]
            entry = {
                "max_new_tokens": budget,
                "wall_s": round(wall, 1),
                "loadavg_at_start": load,
                "words": words,
                "tokens": tokens,
                "mean_words": round(statistics.mean(words), 1),
                "median_words": statistics.median(words),
                "mean_tokens": round(statistics.mean(tokens), 1),
                "hit_budget": sum(hit),
                "hit_budget_fraction": round(sum(hit) / len(hit), 3),
                "tok_s": round(sum(tokens) / wall, 1),
                "finish": [r.outputs[0].finish_reason for r in res],
                "sample_text_head": res[0].text[:400],
            }
            result["budgets"].append(entry)
            print(json.dumps({k: v for k, v in entry.items() if k not in ("words", "tokens", "finish")}), flush=True)
    finally:
        engine.close()
    result["loadavg_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
