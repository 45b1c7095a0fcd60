"""A trained LoRA adapter on vLLM (CPU): served per request, or merged into a copy of the base model.

Side by side in one process on the embedded SmolLM2-135M: a random non-zero PEFT all-linear LoRA (r 8), then
  * ``adapter``: the base model's engine started with LoRA support, every request carrying the adapter
    (what the loop did for iterations 2+ before ``backend.merge_adapters``);
  * ``merged``: ``selflen.models.merged_model_dir`` folds the adapter into a copy of the model, served by an engine
    without LoRA support (what ``backend.merge_adapters=auto`` does on CPU);
  * ``base``: the base model without LoRA support (the ceiling).
Each side reports its engine start, forced-length throughput (EOS ignored) at each batch size, and the merge time.
``--greedy`` adds a float32 check that both ways of serving the adapter write the same greedy text.

    python bench/lora_merge.py --batch-sizes 32,64 --max-new-tokens 256
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent


def random_adapter(model_dir: str, out: Path, r: int = 8) -> Path:
    """A PEFT all-linear LoRA with random, non-zero A and B (a trained adapter's shape, not its values)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear", init_lora_weights=False)
    peft = get_peft_model(base, cfg)
    with torch.no_grad():  # small, so the text stays fluent enough to be compared
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.mul_(0.05)
    peft.save_pretrained(out)
    return out


def timed_side(label: str, model: str, adapter: str | None, batches: list[int], new_tokens: int, dtype: str,
               greedy_prompts: int) -> dict:
    sys.path.insert(0, str(HERE))
    from engine_sweep import forced_length
    from generate import Sampling, cpu_seconds, prompts, requests

    from selflen.engines import build_engine
    from selflen.engines.base import Request, SamplingParams

    lora = adapter is not None
    t0 = time.perf_counter()
    engine = build_engine("vllm", model, dtype=dtype, single_process=True, enable_lora=lora, max_lora_rank=8,
                          max_num_batched_tokens=65536)
    out = {"label": label, "dtype": dtype, "start_s": round(time.perf_counter() - t0, 2), "runs": []}
    try:
        if lora:
            engine.add_adapter("x", adapter)
        name = "x" if lora else None
        if greedy_prompts:
            g = SamplingParams(temperature=0.0, max_new_tokens=48, repetition_penalty=1.0)
            reqs = [Request([{"role": "user", "content": p}], g, adapter=name) for p in prompts(greedy_prompts)]
            out["greedy"] = [r.text for r in engine.generate(reqs)]
        forced_length(engine)
        s = Sampling(0.7, 0.8, 20, 1.0, 0)
        for batch in batches:
            warm = [dataclasses.replace(q, adapter=name) for q in requests(batch, 4, s)]
            engine.generate(warm)
            reqs = [dataclasses.replace(q, adapter=name) for q in requests(batch, new_tokens, s)]
            load = os.getloadavg()[0]
            c0, w0 = cpu_seconds(), time.perf_counter()
            res = engine.generate(reqs)
            wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
            tokens = sum(o.tokens for r in res for o in r.outputs)
            assert tokens == batch * new_tokens, tokens
            out["runs"].append({"batch": batch, "tokens": tokens, "wall_s": round(wall, 2), "cpu_s": round(cpu, 1),
                                "tok_s": round(tokens / wall, 1), "loadavg_1m": load})
            print(f"[{label}] B={batch} {tokens / wall:.1f} tok/s ({wall:.1f} s, load {load:.2f})", flush=True)
    finally:
        engine.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="32,64")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--dtype", default="bf16_if_supported", help="engine dtype (bf16_if_supported: bf16 where native)")
    ap.add_argument("--greedy", action="store_true", help="also compare greedy texts of both ways in float32")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "lora_merge.json")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    from selflen.dtypes import resolve_dtype
    from selflen.models import embedded_model_dir, merged_model_dir

    model = str(embedded_model_dir())
    dtype = resolve_dtype(args.dtype)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="lora_merge_"))
    adapter = random_adapter(model, work / "adapter")
    t0 = time.perf_counter()
    merged = merged_model_dir(model, adapter, work, "bench", dtype)
    merge_s = time.perf_counter() - t0
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": os.cpu_count(),
        "model": model,
        "max_new_tokens": args.max_new_tokens,
        "merge_s": round(merge_s, 2),
        "sides": [
            timed_side("adapter", model, str(adapter), batches, args.max_new_tokens, dtype, 0),
            timed_side("merged", str(merged), None, batches, args.max_new_tokens, dtype, 0),
            timed_side("base", model, None, batches, args.max_new_tokens, dtype, 0),
        ],
    }
    if args.greedy:  # float32, so the only difference is where the adapter's product is added
        merged32 = merged_model_dir(model, adapter, work, "bench32", "float32")
        a = timed_side("adapter-fp32", model, str(adapter), [], 0, "float32", 4)["greedy"]
        m = timed_side("merged-fp32", str(merged32), None, [], 0, "float32", 4)["greedy"]
        record["greedy_same"] = [x == y for x, y in zip(a, m, strict=True)]
        record["greedy"] = {"adapter": a, "merged": m}
    by = {s["label"]: {r["batch"]: r["tok_s"] for r in s["runs"]} for s in record["sides"]}
    record["merged_over_adapter"] = {b: round(by["merged"][b] / by["adapter"][b], 2) for b in batches}
    record["base_over_adapter"] = {b: round(by["base"][b] / by["adapter"][b], 2) for b in batches}
    print(json.dumps({k: record[k] for k in ("merge_s", "merged_over_adapter", "base_over_adapter")}))
    if "greedy_same" in record:
        print("greedy texts equal (fp32, adapter vs merged):", record["greedy_same"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
