"""LoRA fine-tuning throughput in fp32 against bf16 autocast on this CPU (`finetune.bf16`), side by side.

    HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE python bench/sft_dtype.py

Trains the embedded SmolLM2-135M with ``selflen.trainer.train`` (LoRA r 8, all-linear, batch 2, one epoch) on the
same 8 synthetic chat rows of ~1100-word answers, once per dtype, each in a fresh process, and reports wall
seconds, tokens/s and the first/last loss. bf16 autocast only pays on CPUs with native bf16 (AVX512-BF16, AMX).
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


def _rows(n: int, words: int, seed: int = 0) -> list[dict]:
    text = ("the of and to in a is that for it as was with be by on not this are or from at which but have an they "
            "you were there one all we their history river market science winter letter")
    vocab = text.split()
    rng = random.Random(seed)
    return [{"id": str(i), "messages": [
        {"role": "user", "content": f"Write a long essay about topic {i}."},
        {"role": "assistant", "content": " ".join(rng.choice(vocab) for _ in range(words)) + "."}]}
        for i in range(n)]


def one(dtype: str, data: Path, out: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from selflen.config import load
    from selflen.models import embedded_model_dir
    from selflen.trainer import train

    s = dataclasses.replace(load("finetune=lora").finetune, epochs=1, batch_size=2, learning_rate=5e-4,
                            max_length=4096, save_steps=1000, logging_steps=1, bf16=dtype == "bf16")
    t0 = time.time()
    stats = train(embedded_model_dir(), data, out, s)
    wall = time.time() - t0
    return {"dtype": dtype, "wall_s": round(wall, 1), "tokens": stats["tokens"],
            "tok_s": round(stats["tokens"] / wall, 1), "first_loss": stats.get("first_loss"),
            "last_loss": stats.get("last_loss")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--words", type=int, default=1100)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sft_dtype.json")
    p.add_argument("--one", nargs=3, metavar=("DTYPE", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], Path(args.one[1]), Path(args.one[2]))))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in _rows(args.rows, args.words)))
        results = []
        for dtype in ("fp32", "bf16"):
            res = subprocess.run([sys.executable, __file__, "--one", dtype, str(data), str(Path(tmp) / dtype)],
                                 stdout=subprocess.PIPE, text=True, check=True)  # its errors on our stderr
            results.append(json.loads(res.stdout.strip().splitlines()[-1]))
    report = {"command": " ".join(sys.argv), "machine": f"{platform.machine()} {os.cpu_count()} cores",
              "date": time.strftime("%Y-%m-%d"), "loadavg": os.getloadavg(), "results": results,
              "bf16_over_fp32": round(results[1]["tok_s"] / results[0]["tok_s"], 3)}
    args.out.write_text(json.dumps(report, indent=2))
    for r in results:
        print(f"{r['dtype']}: {r['wall_s']} s, {r['tok_s']} tok/s, loss {r['first_loss']} -> {r['last_loss']}")
    print("bf16 / fp32 throughput:", report["bf16_over_fp32"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
