"""One short check of the CUDA paths on a GPU machine (not a test: CI has no GPU).

Covers: the hf engine in bf16 on CUDA (sampling batch-invariance, greedy determinism, adapter switching), its
throughput against a bare ``model.generate`` on a mid-size random Llama, fine-tuning steps (LoRA through
``selflen.trainer`` / TRL, and a full fine-tune step) on the tiny random model, and the loop itself: two
iterations through ``train.py`` with ``backend=vllm`` (hf where vLLM is not installed), LoRA fine-tuning through
the launched path (``launch=ddp`` over every visible GPU, ``single`` on one), iteration 2 generating with
iteration 1's adapter; its stage timings come from the stages' ``done.json``. Writes JSON to ``--out``.

    python bench/device_check.py --out bench/results/device.json
    python bench/device_check.py --only loop --loop "model=qwen2 model.source=local model.path=/m/Qwen2-7B-Instruct"
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
import traceback
from pathlib import Path

import torch

DEVICE = "cuda"


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def engine_checks(tiny: Path, adapter: Path) -> dict:
    from selflen.engines import Request, SamplingParams
    from selflen.engines.hf import HFEngine

    eng = HFEngine(str(tiny), dtype="bfloat16", device=DEVICE, batch_size=8)
    reqs = [Request(_chat(f"topic {i} " * (i + 1)), SamplingParams(max_new_tokens=24, seed=i)) for i in range(6)]
    together = [r.text for r in eng.generate(reqs)]
    alone = [eng.generate([r])[0].text for r in reqs]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=16, repetition_penalty=1.0)
    g1 = eng.generate([Request(_chat("hello"), greedy)])[0].text
    g2 = eng.generate([Request(_chat("hello"), greedy)])[0].text
    eng.add_adapter("p", str(adapter))
    with_adapter, base_after = eng.generate(
        [Request(_chat("hello"), greedy, adapter="p"), Request(_chat("hello"), greedy)]
    )
    out = {
        "device": str(eng.model.device),
        "dtype": str(next(eng.model.parameters()).dtype),
        "batch_invariant_sampling": together == alone,
        "greedy_deterministic": g1 == g2,
        "adapter_changes_output": with_adapter.text != g1,
        "base_unchanged_after_adapter": base_after.text == g1,
    }
    eng.close()
    return out


def throughput(tmp: Path, batch_sizes: list[int], new_tokens: int) -> list[dict]:
    """Engine vs bare generate (same prompts, batch, sampling settings, forced length) on a 8-layer random Llama."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from selflen.engines import Request, SamplingParams
    from selflen.engines.hf import HFEngine
    from selflen.models import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=1024,
        intermediate_size=2816,
        num_hidden_layers=8,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=64,
        max_position_embeddings=2048,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    folder = tmp / "mid"
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    eng = HFEngine(str(folder), dtype="bfloat16", device=DEVICE, batch_size=max(batch_sizes))
    eng.stop_ids = []  # random weights: never stop early, so both sides generate exactly new_tokens
    bare = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16).to(DEVICE).eval()
    rows = []
    for bs in batch_sizes:
        prompts = [_chat(f"Write essay number {i} about the history of bridges.") for i in range(bs)]
        params = SamplingParams(
            temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.0, max_new_tokens=new_tokens, seed=1
        )
        reqs = [Request(p, params) for p in prompts]
        eng.generate(reqs)  # warm-up with the same batch shape (the CUDA caching allocator fills up)
        sync()
        t = time.perf_counter()
        eng.generate(reqs)
        sync()
        t_eng = time.perf_counter() - t
        enc = tok.apply_chat_template(prompts, add_generation_prompt=True, tokenize=False)
        batch = tok(enc, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt").to(DEVICE)
        kw = dict(
            do_sample=True,
            temperature=0.7,
            top_p=0.8,
            top_k=20,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            pad_token_id=tok.pad_token_id,
        )
        bare.generate(**batch, **kw)  # warm-up
        sync()
        t = time.perf_counter()
        bare.generate(**batch, **kw)
        sync()
        t_bare = time.perf_counter() - t
        toks = bs * new_tokens
        rows.append(
            {
                "batch": bs,
                "engine_tok_s": round(toks / t_eng, 1),
                "bare_tok_s": round(toks / t_bare, 1),
                "ratio": round(t_bare / t_eng, 3),
            }
        )
    eng.close()
    return rows


def finetune_checks(tiny: Path, tmp: Path) -> dict:
    rows = [
        {
            "id": f"r{i}",
            "messages": [
                {"role": "user", "content": f"Write about {i}."},
                {"role": "assistant", "content": "Long answer. " * (5 + 3 * i)},
            ],
        }
        for i in range(8)
    ]
    data = tmp / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out: dict = {}
    try:
        from selflen.config import load
        from selflen.trainer import train

        lora = load("finetune=lora").finetune

        t = time.perf_counter()
        stats = train(
            tiny,
            data,
            tmp / "adapter",
            dataclasses.replace(lora, epochs=1, batch_size=4, bf16=DEVICE == "cuda", logging_steps=1, save_steps=1000),
        )
        out["trl_lora"] = {**stats, "seconds": round(time.perf_counter() - t, 2)}
        t = time.perf_counter()
        stats = train(
            tiny,
            data,
            tmp / "full",
            dataclasses.replace(
                load("finetune=full").finetune,
                epochs=1,
                batch_size=4,
                bf16=DEVICE == "cuda",
                logging_steps=1,
                save_steps=1000,
                learning_rate=1e-5,
            ),
        )
        out["trl_full"] = {**stats, "seconds": round(time.perf_counter() - t, 2)}
    except ImportError as err:
        out["trl_error"] = f"{type(err).__name__}: {err}"
    return out


def loop_check(tmp: Path, overrides: list[str]) -> dict:
    """Two smoke-sized iterations of the real loop on this machine's devices; per-stage seconds."""
    import importlib.util
    import os
    import subprocess
    import sys

    backend = "vllm" if importlib.util.find_spec("vllm") else "hf"
    gpus = torch.cuda.device_count() if DEVICE == "cuda" else 0
    launch = ["launch=ddp", f"launch.num_processes={gpus}"] if gpus > 1 else ["launch=single"]
    run_dir = tmp / "loop"
    cmd = [sys.executable, str(Path(__file__).resolve().parents[1] / "train.py"), "debug=smoke", f"backend={backend}",
           "iterations=two", "logger=none", f"hydra.run.dir={run_dir}", *launch, *overrides]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"})
    stages = {str(p.parent.relative_to(run_dir)): json.loads(p.read_text())["seconds"]
              for p in sorted(run_dir.glob("**/done.json"))}
    return {
        "backend": backend,
        "launch": launch,
        "command": " ".join(cmd[1:]),
        "returncode": proc.returncode,
        "wall_s": round(time.perf_counter() - t, 1),
        "stage_seconds": stages,
        "adapter_trained": (run_dir / "iter_1" / "finetune_gen" / "adapter" / "adapter_config.json").exists(),
        "iteration_2_generated": "iter_2/generate" in stages,
        "output_tail": None if proc.returncode == 0 else (proc.stdout + proc.stderr)[-3000:],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "device.json"))
    ap.add_argument("--only", default="engine,throughput,finetune,loop", help="comma-separated checks to run")
    ap.add_argument("--loop", default="", help="extra train.py overrides for the loop check")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of this script")
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from selflen.models import make_tiny_model

    gpu = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "none (dry run)"
    result: dict = {"torch": torch.__version__, "gpu": gpu}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tiny = make_tiny_model(tmp / "tiny")
        peft = get_peft_model(
            AutoModelForCausalLM.from_pretrained(str(tiny)),
            LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"]),
        )
        torch.manual_seed(1)
        with torch.no_grad():
            for name, p in peft.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)
        peft.save_pretrained(str(tmp / "perturbed"))
        for name, fn in (
            ("engine", lambda: engine_checks(tiny, tmp / "perturbed")),
            ("throughput", lambda: throughput(tmp, [int(b) for b in args.batches.split(",")], args.new_tokens)),
            ("finetune", lambda: finetune_checks(tiny, tmp)),
            ("loop", lambda: loop_check(tmp, args.loop.split())),
        ):
            if name not in args.only.split(","):
                continue
            t = time.perf_counter()
            try:
                result[name] = fn()
            except Exception:
                result[name] = {"error": traceback.format_exc()[-2000:]}
            print(
                name, round(time.perf_counter() - t, 1), "s:", json.dumps(result[name], default=str)[:800], flush=True
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
