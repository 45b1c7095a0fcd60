"""One engine configuration per process: start-up time, forced-length throughput at some batch sizes, greedy texts.

Used to sweep vLLM / hf settings (env vars such as ``VLLM_CPU_KVCACHE_SPACE`` only take effect in a fresh
process). Prints one JSON object on the last line and appends it to ``--out`` (JSON lines).

    python bench/engine_sweep.py --backend vllm --kwargs '{"dtype": "bfloat16"}' --batch-sizes 64,128
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def forced_length(engine) -> None:
    """Benchmark-only, on this instance: no sequence stops before max_new_tokens."""
    if engine.name == "hf":
        engine.stop_ids = [-1]
        return
    llm = engine.llm
    real = llm.generate

    def generate(prompts, params, **kwargs):
        for p in params if isinstance(params, list) else [params]:
            p.ignore_eos = True
        return real(prompts, params, **kwargs)

    llm.generate = generate


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="vllm")
    ap.add_argument("--kwargs", default="{}", help="engine constructor arguments (JSON)")
    ap.add_argument("--label", default="")
    ap.add_argument("--model", default=None, help="an embedded model's key (selflen/embedded.py; default SmolLM2)")
    ap.add_argument("--batch-sizes", default="64,128")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--greedy", type=int, default=4, help="greedy texts of this many prompts (32 tokens) to compare")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "engine_sweep.jsonl")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from generate import Sampling, cpu_seconds, requests

    from selflen.engines import build_engine
    from selflen.engines.base import Request, SamplingParams
    from selflen.models import embedded_model_dir

    kwargs = json.loads(args.kwargs)
    record = {
        "label": args.label,
        "model": args.model,
        "backend": args.backend,
        "kwargs": kwargs,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("VLLM_", "OMP_"))},
        "loadavg_at_start": os.getloadavg(),
        "max_new_tokens": args.max_new_tokens,
    }
    t0 = time.perf_counter()
    engine = build_engine(args.backend, str(embedded_model_dir(key=args.model)), **kwargs)
    record["start_s"] = round(time.perf_counter() - t0, 2)
    print(f"[{args.label}] start {record['start_s']} s", flush=True)
    try:
        if args.greedy:
            from generate import prompts

            greedy = SamplingParams(temperature=0.0, max_new_tokens=32, repetition_penalty=1.0)
            res = engine.generate([Request([{"role": "user", "content": p}], greedy) for p in prompts(args.greedy)])
            record["greedy"] = [r.text for r in res]
        forced_length(engine)
        s = Sampling(0.7, 0.8, 20, 1.0, 0)
        runs = []
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            engine.generate(requests(batch, 4, s))  # warm-up at this batch shape
            for _ in range(args.repeats):
                load = os.getloadavg()[0]
                c0, w0 = cpu_seconds(), time.perf_counter()
                res = engine.generate(requests(batch, args.max_new_tokens, s))
                wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
                tokens = sum(o.tokens for r in res for o in r.outputs)
                assert tokens == batch * args.max_new_tokens, tokens
                runs.append(
                    {
                        "batch": batch,
                        "tokens": tokens,
                        "wall_s": round(wall, 3),
                        "cpu_s": round(cpu, 2),
                        "tok_s": round(tokens / wall, 2),
                        "loadavg_1m": load,
                    }
                )
                print(
                    f"[{args.label}] B={batch} {tokens / wall:.1f} tok/s ({wall:.1f} s, CPU {cpu:.1f} s, "
                    f"load {load:.2f})",
                    flush=True,
                )
        record["runs"] = runs
    finally:
        engine.close()
    record["loadavg_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
