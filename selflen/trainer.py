"""Fine-tune one role (Generator, Extender, or the final length-following model) on chat ``messages`` data.

LoRA by default (PEFT), full fine-tuning on request, through TRL's ``SFTTrainer`` with loss on the response only
(prompt-completion format, the tokenizer's chat template). The maximum length is computed from the data: an
example longer than the cap is dropped and counted, never silently truncated. Batches are grouped by length so
skewed data wastes little compute on padding (``bucketed``: sorted-by-length batches in a shuffled order;
docs/benchmarks/2026-11-25-generation-and-fine-tuning.md has the real-token fractions).
Checkpoints let a killed run resume mid-training.
Usable in-process (``launch=inprocess``) or as a launched job, ``accelerate launch -m selflen.trainer --job
job.json`` (``selflen.launch``, the default): one process or several (DDP, FSDP, DeepSpeed), each rank running
``train`` on its share of every global batch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selflen.errors import check_stop, request_stop, stop_requested
from selflen.groups import FinetuneConfig
from selflen.schema import build
from selflen.store import read_jsonl

log = logging.getLogger(__name__)


def to_prompt_completion(rows: list[dict]) -> list[dict]:
    """Split chat rows into TRL's conversational prompt/completion form (loss on the last assistant turn).

    >>> to_prompt_completion([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}])
    [{'prompt': [{'role': 'user', 'content': 'q'}], 'completion': [{'role': 'assistant', 'content': 'a'}]}]
    """
    out = []
    for row in rows:
        msgs = row["messages"]
        if not msgs or msgs[-1]["role"] != "assistant":
            raise ValueError(f"row {row.get('id', '?')}: the last message must be the assistant's answer")
        out.append({"prompt": msgs[:-1], "completion": [msgs[-1]]})
    return out


def token_lengths(tokenizer, rows: list[dict]) -> list[int]:
    """Tokens of each full conversation under the chat template."""
    return [
        len(tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=True, return_dict=True)["input_ids"])
        for r in rows
    ]


def bucketed_order(lengths: list[int], batch: int, seed: int, epoch: int) -> list[int]:
    """Indices sorted by length, cut into batches, the batch order shuffled per epoch (padding-light, not ordered).

    >>> bucketed_order([5, 1, 9, 2], batch=2, seed=0, epoch=0) in ([1, 3, 0, 2], [0, 2, 1, 3])
    True
    >>> bucketed_order([5, 1, 9, 2, 7], batch=2, seed=0, epoch=0)[-1]  # the remainder (longest) stays last
    2
    """
    import random as _random

    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    # only full batches are shuffled; the short remainder stays last, or every later batch would straddle buckets
    full = len(order) - len(order) % batch
    batches = [order[i : i + batch] for i in range(0, full, batch)]
    _random.Random(seed * 1_000_003 + epoch).shuffle(batches)
    return [i for b in batches for i in b] + order[full:]


class _BucketSampler:
    """A sampler whose every ``batch`` consecutive indices are one length bucket; a new batch order per epoch.

    The epoch comes from ``epoch_of()`` (the trainer's state) when given: a run resumed mid-epoch must draw that
    epoch's order, and a sampler wrapped for several processes does not always get ``set_epoch``."""

    def __init__(self, lengths: list[int], batch: int, seed: int, epoch_of: Callable[[], int] | None = None) -> None:
        self.lengths, self.batch, self.seed, self.epoch, self.epoch_of = lengths, batch, seed, 0, epoch_of

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        if self.epoch_of is not None:
            self.epoch = self.epoch_of()
        order = bucketed_order(self.lengths, self.batch, self.seed, self.epoch)
        self.epoch += 1
        return iter(order)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


def _bucketed(base: type, seed: int) -> type:
    """``base`` (an SFTTrainer class) with the bucketed train sampler. A bucket is one *global* micro-batch
    (per-process batch x processes): accelerate hands consecutive per-process batches to the ranks in turn, so
    every step of an N-process run sees the examples of the same step of a 1-process run with N x the batch."""

    class BucketedTrainer(base):
        def _get_train_sampler(self, train_dataset=None):
            data = train_dataset if train_dataset is not None else self.train_dataset
            lengths = [len(ids) for ids in data["input_ids"]]
            return _BucketSampler(lengths, self.args.per_device_train_batch_size * self.args.world_size, seed,
                                  epoch_of=lambda: int((self.state.epoch or 0) + 1e-6))

    return BucketedTrainer


def _forwarding_callback(losses: list[float], on_log: Callable[[dict[str, float]], None] | None,
                         on_train_begin: Callable[[], None] | None, stop_file: str | Path | None):
    """The trainer callback that forwards logs (and losses) to the caller and stops with a checkpoint on request."""
    from transformers import TrainerCallback

    class _Forward(TrainerCallback):
        def on_train_begin(self, _args, _state, _control, **_kw):
            if on_train_begin:
                on_train_begin()

        def on_step_end(self, args, _state, control, **_kw):
            if _agreed_stop(stop_file, args.device):  # save a checkpoint and end training after this step
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_log(self, _args, state, _control, logs=None, **_kw):
            if not logs or not state.is_world_process_zero:
                return
            if "loss" in logs:
                losses.append(float(logs["loss"]))
            numeric = {k: float(v) for k, v in logs.items() if isinstance(v, int | float) and not isinstance(v, bool)}
            if on_log and numeric:
                on_log({**numeric, "step": state.global_step})

    return _Forward()


def train(
    model_dir: str | Path,
    data_path: str | Path,
    out_dir: str | Path,
    s: FinetuneConfig,
    *,
    seed: int = 0,
    init_adapter: str | Path | None = None,
    on_log: Callable[[dict[str, float]], None] | None = None,
    dtype: str = "float32",
    report_to: str = "none",
    on_train_begin: Callable[[], None] | None = None,
    stop_file: str | Path | None = None,
) -> dict[str, Any]:
    """Train and save to ``out_dir`` (an adapter folder for LoRA, a model folder for full); returns stats.

    ``report_to="wandb"`` (only when a W&B run is open) lets the transformers W&B integration log the trainer's own
    metrics (learning rate, grad norm, throughput) into that run; ``on_train_begin`` runs after it set itself up.
    ``on_log`` receives every numeric trainer log (``loss``, ``learning_rate``, ``grad_norm``, ...) plus ``step``
    (on the main process only). ``stop_file``: its existence, like SIGTERM, ends training with a checkpoint.
    Under a launcher every rank calls this; rank 0 writes the output."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, set_seed
    from trl import SFTTrainer

    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = to_prompt_completion(read_jsonl(Path(data_path)))
    lengths = token_lengths(tokenizer, rows)
    keep = [i for i, n in enumerate(lengths) if n <= s.max_length]
    stats: dict[str, Any] = {"examples": len(rows), "dropped_too_long": len(rows) - len(keep)}
    if not keep:
        log.warning("no trainable example in %s (all %d over max_length=%d)", data_path, len(rows), s.max_length)
        return {**stats, "trained": False}
    data = Dataset.from_list([rows[i] for i in keep])
    max_len = max(lengths[i] for i in keep)
    stats.update(max_length=max_len, tokens=sum(lengths[i] for i in keep))

    set_seed(seed)  # the new adapter's initial weights: the same in-process, launched, on every rank
    model, peft_config = load_model(model_dir, s, dtype, init_adapter)
    ckpt_dir = out_dir.parent / (out_dir.name + ".checkpoints")
    args = sft_config(s, ckpt_dir, examples=len(keep), max_len=max_len, use_cpu=not torch.cuda.is_available(),
                      report_to=report_to, seed=seed)
    losses: list[float] = []
    forward = _forwarding_callback(losses, on_log, on_train_begin, stop_file)
    trainer_cls = _bucketed(SFTTrainer, seed) if s.batching == "bucketed" else SFTTrainer
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[forward],
    )
    check_stop()
    resume = any(ckpt_dir.glob("checkpoint-*"))
    if resume:
        log.info("resuming training from the last checkpoint in %s", ckpt_dir)
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    check_stop()  # stopped early: the checkpoint is kept, the adapter is not saved, the next run resumes
    _save(trainer, tokenizer, out_dir, ckpt_dir)
    stats.update(
        trained=True,
        steps=result.global_step,
        train_loss=round(result.training_loss, 4),
        train_seconds=round(float(result.metrics.get("train_runtime", 0.0)), 1),
        first_loss=losses[0] if losses else None,
        last_loss=losses[-1] if losses else None,
        resumed=resume,
    )
    return stats


def _agreed_stop(stop_file: str | Path | None, device) -> bool:  # torch.device
    """Whether to stop after this step: a signal or the stop file on any rank, agreed by all ranks (one all-reduce)
    so that they save their checkpoint together instead of one waiting in a collective the others never reach."""
    import torch
    import torch.distributed as dist

    if stop_file and Path(stop_file).exists() and not stop_requested():
        request_stop(signal.SIGTERM)
    wanted = stop_requested()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        flag = torch.tensor([1 if wanted else 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and not wanted:
            request_stop(signal.SIGTERM)
        return bool(flag.item())
    return wanted


def _save(trainer, tokenizer, out_dir: Path, ckpt_dir: Path) -> None:
    """Write the trained adapter/model to ``out_dir`` atomically (rank 0; ``save_model`` gathers FSDP/ZeRO-3
    shards), then drop the checkpoints. Every rank returns after the folder is complete."""
    tmp = out_dir.parent / (out_dir.name + ".tmp")
    main = trainer.is_world_process_zero()
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(tmp))
    if main:
        tokenizer.save_pretrained(str(tmp))
        (tmp / "training_args.bin").unlink(missing_ok=True)  # the trainer's pickle: not part of an adapter
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()


def load_model(model_dir: str | Path, s: FinetuneConfig, dtype: str, init_adapter: str | Path | None):
    """The model to train and, for a new LoRA adapter, its PEFT config (None when continuing an adapter or for full
    fine-tuning)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype, "auto")
    if s.method != "lora":  # full: fp32 master weights (bf16 is the compute precision, finetune.bf16), never
        # Adam updates applied to bf16 weights; the saved model is fp32 (vLLM serves it in backend.dtype)
        return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32), None
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch_dtype)
    from peft import LoraConfig, PeftModel

    if init_adapter:
        return PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True), None
    config = LoraConfig(r=s.lora.r, lora_alpha=s.lora.alpha, lora_dropout=s.lora.dropout,
                        target_modules=s.lora.target_modules,
                        task_type="CAUSAL_LM")
    return model, config


def sft_config(s: FinetuneConfig, ckpt_dir: Path, *, examples: int, max_len: int, use_cpu: bool,
               report_to: str = "none", seed: int = 0):
    """TRL's ``SFTConfig`` for one training run: loss on the completion only, checkpoints for resuming."""
    from trl import SFTConfig

    processes = int(os.environ.get("WORLD_SIZE", "1"))  # set by the launcher on every rank
    steps_per_epoch = math.ceil(examples / (s.batch_size * s.grad_accum * processes))  # optimizer steps
    return SFTConfig(
        output_dir=str(ckpt_dir),
        num_train_epochs=s.epochs,
        per_device_train_batch_size=s.batch_size,
        gradient_accumulation_steps=s.grad_accum,
        learning_rate=s.learning_rate,
        lr_scheduler_type=s.scheduler,
        warmup_steps=int(s.warmup_ratio * steps_per_epoch * s.epochs),
        max_length=max_len,
        completion_only_loss=True,
        logging_steps=s.logging_steps,
        save_strategy="steps",
        save_steps=s.save_steps,
        save_total_limit=1,
        report_to=report_to,
        run_name=ckpt_dir.parent.name if report_to != "none" else None,
        seed=seed,
        bf16=s.bf16,
        use_cpu=use_cpu,
        gradient_checkpointing=s.gradient_checkpointing,
        disable_tqdm=False,
        dataloader_num_workers=0,
        train_sampling_strategy="group_by_length" if s.batching == "group_by_length" else "random",
        packing=False,
    )


def _watch_parent(pid: int | None, every_s: float = 0.5) -> None:
    """Ask for a stop (a checkpoint, then exit) once process ``pid`` is gone: a trainer outliving a killed run
    must not keep training beside the run that resumes it."""
    import threading

    def watch() -> None:
        while not stop_requested():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                log.warning("the run that launched this trainer (pid %d) is gone: checkpointing and stopping", pid)
                request_stop(signal.SIGTERM)
                return
            except PermissionError:  # alive, owned by someone else
                pass
            time.sleep(every_s)

    if pid:
        threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Entry point of a launched trainer: ``python -m selflen.trainer --job job.json`` on every rank."""
    import argparse

    from selflen.errors import Interrupted, install_stop_handlers
    from selflen.launch import TrainJob

    parser = argparse.ArgumentParser(prog="python -m selflen.trainer",
                                     description="Train one selflen role from a job file (see selflen.launch).")
    parser.add_argument("--job", required=True, type=Path, help="job.json written by the finetune stage")
    job = TrainJob.read(parser.parse_args(argv).job)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s rank{rank} %(name)s: %(message)s")
    install_stop_handlers()
    _watch_parent(job.parent_pid)

    def write_log(m: dict[str, float]) -> None:
        if job.log_file:
            with open(job.log_file, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(m) + "\n")

    try:
        stats = train(job.model_dir, job.data, job.out_dir, build(FinetuneConfig, job.settings, "finetune."),
                      seed=job.seed, init_adapter=job.init_adapter, on_log=write_log, dtype=job.dtype,
                      stop_file=job.stop_file)
    except Interrupted as err:  # a checkpoint is on disk: a clean exit, the result says it stopped
        stats = {"stopped": True, "signum": err.signum}
    if rank == 0 and job.result_file:
        tmp = Path(job.result_file + ".tmp")
        tmp.write_text(json.dumps(stats, indent=1), encoding="utf-8")
        tmp.rename(job.result_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
