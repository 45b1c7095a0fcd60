"""LoRA fine-tuning throughput on this CPU: in-process, launched with 1 process, launched with 2 gloo processes.

    HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE python bench/finetune_launch.py

Trains the embedded SmolLM2-135M (LoRA r 8, all-linear, fp32, one epoch) on the same synthetic chat rows with the
same global batch (4: 1 process x 4, or 2 processes x 2), side by side in one invocation, and reports for each
the wall seconds (start-up included), the trainer's own runtime, trained tokens per second and the losses, which
must agree between the three (same examples per step, same initial adapter). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from sft_dtype import _rows  # noqa: E402 - the same synthetic rows as the dtype benchmark

from selflen.config import load  # noqa: E402
from selflen.launch import LaunchSettings, TrainJob, run_job  # noqa: E402

CASES = {
    "inprocess (1 x 4)": (LaunchSettings(name="inprocess", launcher="inprocess"), 4),
    "launched, 1 process (1 x 4)": (LaunchSettings(name="single", accelerate={"distributed_type": "NO"}), 4),
    "launched, 2 gloo processes (2 x 2)": (
        LaunchSettings(name="ddp", num_processes=2, accelerate={"distributed_type": "MULTI_GPU"}), 2),
}


def one(name: str, data: Path, out: Path) -> dict:
    from selflen.models import embedded_model_dir
    from selflen.trainer import train

    launch, batch = CASES[name]
    s = replace(load("finetune=lora").finetune, epochs=1, batch_size=batch, learning_rate=5e-4, max_length=4096,
                save_steps=1000, logging_steps=1, warmup_ratio=0.0)
    logs: list[dict] = []
    t0 = time.time()
    if launch.launcher == "inprocess":
        stats = train(embedded_model_dir(), data, out / "adapter", s, on_log=logs.append)
    else:
        job = TrainJob(model_dir=str(embedded_model_dir()), data=str(data), out_dir=str(out / "adapter"),
                       settings=asdict(s))
        stats = run_job(job, out / "launch", launch, logs.append)
    wall = time.time() - t0
    runtime = next(m["train_runtime"] for m in logs if "train_runtime" in m)
    return {"case": name, "processes": launch.num_processes, "wall_s": round(wall, 1),
            "train_runtime_s": round(runtime, 1), "tokens": stats["tokens"],
            "tok_s": round(stats["tokens"] / runtime, 1), "losses": [round(m["loss"], 4) for m in logs if "loss" in m]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=16)
    p.add_argument("--words", type=int, default=600)
    p.add_argument("--reverse", action="store_true", help="run the cases in the opposite order (order effects)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "finetune_launch.json")
    args = p.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in _rows(args.rows, args.words)))
        for i, name in enumerate(reversed(CASES) if args.reverse else CASES):
            results.append(one(name, data, Path(tmp) / str(i)))
            print(json.dumps(results[-1]), flush=True)
    base = next(r for r in results if r["processes"] == 1 and r["case"].startswith("inprocess"))
    report = {"command": " ".join(sys.argv), "machine": f"{platform.machine()} {os.cpu_count()} cores",
              "date": time.strftime("%Y-%m-%d"), "loadavg": os.getloadavg(), "results": results,
              "tok_s_over_inprocess": {r["case"]: round(r["tok_s"] / base["tok_s"], 3) for r in results},
              "wall_over_inprocess": {r["case"]: round(r["wall_s"] / base["wall_s"], 3) for r in results},
              "max_loss_gap": max(abs(a - b) for r in results for a, b in zip(r["losses"], base["losses"],
                                                                               strict=True))}
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("tok_s_over_inprocess", "wall_over_inprocess", "max_loss_gap")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
