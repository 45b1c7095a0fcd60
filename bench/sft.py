"""Fine-tune padding waste and throughput: real-token fraction and tokens/s of batching strategies on skewed data.

The fine-tune stage (``selflen.trainer.train``) pads every batch to its longest example, so how examples are put
into batches decides how much compute goes to padding. On the same data this script compares

* ``random``          — naive: a random permutation cut into batches (``finetune.batching=random``);
* ``group_by_length`` — transformers' ``LengthGroupedSampler`` (``batching="group_by_length"``; random megabatches
                        of ``min(N // (4 * batch), 50) * batch`` examples, each sorted by length, then cut);
* ``bucketed``        — ``selflen.trainer``'s default (``batching="bucketed"``): its own ``bucketed_order``, all
                        examples sorted by length, cut into batches, the batch order shuffled per epoch;
* ``sorted``          — the same idea as a reference, except that the short remainder batch (when the batch size
                        does not divide the data) stays last, so the DataLoader's cuts keep falling on bucket
                        boundaries;

and reports, for each, the real-token fraction (non-padding tokens / tokens processed, i.e. the sum of the
attention masks over their numel) and the measured training tokens/s.

Padding: every strategy's batches are rebuilt with the very samplers the Trainer uses (``RandomSampler``-style
``torch.randperm``, ``transformers.trainer_pt_utils.get_length_grouped_indices``, ``selflen.trainer.bucketed_order``)
on the lengths the Trainer sees, cut every ``batch`` indices as the DataLoader cuts them,
averaged over ``--sim-epochs`` shuffles; a sweep over batch sizes and megabatch multipliers shows what reaches the
goal. Throughput: ``selflen.trainer.train`` itself runs (LoRA, its own TRL ``SFTTrainer``, collator and
optimizer) once per strategy, with a benchmark-only ``SFTTrainer`` subclass swapped in for the call that (1) records
the epoch order its sampler draws, (2) trains only ``--steps`` of that epoch's batches — picked at evenly spaced
quantiles of padded size, so they represent the whole epoch — after one untimed warm-up batch, and (3) counts
``attention_mask`` sums and numel of every batch it trains on, to check the collator pads exactly as modelled.
Strategies are interleaved over ``--rounds`` and each batch's fastest round counts (the CPU may be shared). The
measured rate is processed (padded) tokens/s, wall and per CPU-second of this process; a strategy's real tokens/s is
that rate times its whole-epoch real-token fraction (the few timed batches' own fraction is in the JSON too).

Data: a synthetic skewed chat set (English seed prompts; answers cut from a text stream to log-normal token lengths,
median ``--median`` and clipped to ``--min-len``..``--max-len``, in the model's tokenizer), or ``--data`` pointing at
a run's ``gen_sft.jsonl``.

    HF_HUB_OFFLINE=1 python bench/sft.py                         # SmolLM2-135M (embedded), batch 4, 1000 examples
    HF_HUB_OFFLINE=1 python bench/sft.py --model tiny --steps 8  # the tiny random model: fast, same padding
    HF_HUB_OFFLINE=1 python bench/sft.py --data outputs/run/iter_1/sft_data/gen_sft.jsonl --no-train
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ENV_KEYS = (
    "OMP_WAIT_POLICY",
    "OMP_NUM_THREADS",
    "VLLM_CPU_KVCACHE_SPACE",
    "VLLM_CPU_OMP_THREADS_BIND",
    "HF_HUB_OFFLINE",
)  # recorded in the JSON
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "sft.json"
STRATEGIES = ("random", "group_by_length", "bucketed", "sorted")
Batches = list[list[int]]


# -- data ---------------------------------------------------------------------------------------------------------
def text_stream(tokenizer: Any, min_tokens: int) -> list[int]:
    """Token ids of the seed prompts, repeated until at least ``min_tokens`` long (answer text is cut from it)."""
    from selflen.seeds import load_seeds

    text = "\n\n".join(s.prompt for s in load_seeds("en"))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids * math.ceil((min_tokens + 1) / max(1, len(ids)))


def synthetic_rows(tokenizer: Any, n: int, seed: int, median: float, sigma: float, lo: int, hi: int) -> list[dict]:
    """Chat rows whose answers have log-normal token lengths (median ``median``, clipped to ``lo``..``hi``)."""
    from selflen.seeds import load_seeds

    rng = random.Random(seed)
    prompts = [s.prompt for s in load_seeds("en")]
    stream = text_stream(tokenizer, 2 * hi)
    rows = []
    for i in range(n):
        length = min(hi, max(lo, round(rng.lognormvariate(math.log(median), sigma))))
        start = rng.randrange(0, len(stream) - length)
        answer = tokenizer.decode(stream[start : start + length], skip_special_tokens=True).strip()
        rows.append(
            {
                "id": f"synthetic-{i}",
                "messages": [
                    {"role": "user", "content": rng.choice(prompts)},
                    {"role": "assistant", "content": answer},
                ],
            }
        )
    return rows


# -- batching (what the Trainer's samplers do, for counting) -----------------------------------------------------
def chunk(order: Sequence[int], batch: int) -> Batches:
    """Cut a sampler's index order into the DataLoader's batches (``drop_last=False``)."""
    return [list(order[i : i + batch]) for i in range(0, len(order), batch)]


def order_random(lengths: Sequence[int], gen: Any) -> list[int]:
    """``RandomSampler``: one ``torch.randperm``."""
    import torch

    return torch.randperm(len(lengths), generator=gen).tolist()


def order_grouped(lengths: Sequence[int], batch: int, gen: Any, mega_batch_mult: int | None = None) -> list[int]:
    """``LengthGroupedSampler`` (transformers' own function; ``mega_batch_mult=None`` is the Trainer's default)."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    return get_length_grouped_indices(list(lengths), batch, mega_batch_mult=mega_batch_mult, generator=gen)


def order_sorted(lengths: Sequence[int], batch: int, gen: Any) -> list[int]:
    """Global sort by length, cut into batches, full batches in random order, the short remainder batch last."""
    import torch

    by_len = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches = chunk(by_len, batch)
    full = [b for b in batches if len(b) == batch]
    rest = [b for b in batches if len(b) < batch]
    shuffled = [full[j] for j in torch.randperm(len(full), generator=gen).tolist()]
    return [i for b in shuffled + rest for i in b]


def order_bucketed(lengths: Sequence[int], batch: int, gen: Any) -> list[int]:
    """``selflen.trainer.bucketed_order`` (the fine-tune stage's default sampler), one epoch per draw of ``gen``."""
    import torch

    from selflen.trainer import bucketed_order

    return bucketed_order(list(lengths), batch, seed=int(torch.randint(0, 2**31, (1,), generator=gen)), epoch=0)


def make_order(
    strategy: str, lengths: Sequence[int], batch: int, gen: Any, mega_batch_mult: int | None = None
) -> list[int]:
    if strategy == "random":
        return order_random(lengths, gen)
    if strategy == "group_by_length":
        return order_grouped(lengths, batch, gen, mega_batch_mult)
    if strategy == "bucketed":
        return order_bucketed(lengths, batch, gen)
    if strategy == "sorted":
        return order_sorted(lengths, batch, gen)
    raise ValueError(f"unknown strategy {strategy!r}")


def padded(batch: Sequence[int], lengths: Sequence[int]) -> tuple[int, int]:
    """(real tokens, tokens processed) of one batch padded to its longest example."""
    sizes = [lengths[i] for i in batch]
    return sum(sizes), len(sizes) * max(sizes)


def real_fraction(batches: Batches, lengths: Sequence[int]) -> float:
    real = total = 0
    for b in batches:
        r, t = padded(b, lengths)
        real, total = real + r, total + t
    return real / total


def simulate(
    strategy: str, lengths: Sequence[int], batch: int, epochs: int, seed: int, mega_batch_mult: int | None = None
) -> dict[str, float]:
    """Real-token fraction of ``epochs`` independently shuffled epochs: mean, min, max."""
    import torch

    fracs = []
    for e in range(epochs):
        gen = torch.Generator().manual_seed(seed + e)
        fracs.append(real_fraction(chunk(make_order(strategy, lengths, batch, gen, mega_batch_mult), batch), lengths))
    return {"mean": statistics.fmean(fracs), "min": min(fracs), "max": max(fracs)}


def default_mult(n: int, batch: int) -> int:
    """The Trainer's megabatch multiplier: ``min(n // (4 * batch), 50)``, at least 1."""
    return max(1, min(n // (batch * 4), 50))


def megabatch_needed(lengths: Sequence[int], batch: int, goal: float, epochs: int, seed: int) -> int | None:
    """Smallest megabatch multiplier (a x1.25 grid from the Trainer's default up to one megabatch holding every
    example) at which length grouping's mean real-token fraction reaches ``goal``; ``None`` if even that fails."""
    mult, top = default_mult(len(lengths), batch), math.ceil(len(lengths) / batch)
    while True:
        if simulate("group_by_length", lengths, batch, epochs, seed, mult)["mean"] >= goal:
            return mult
        if mult >= top:
            return None
        mult = min(top, max(mult + 1, math.ceil(mult * 1.25)))


def resample(lengths: Sequence[int], n: int, seed: int) -> list[int]:
    """``n`` lengths drawn with replacement from ``lengths`` (the same distribution, another data-set size)."""
    rng = random.Random(seed)
    return [rng.choice(lengths) for _ in range(n)]


# -- measured training through selflen.trainer.train -------------------------------------------------------------
class Probe:
    """What the instrumented trainer saw: the epoch order, the batches it trained on and their times."""

    def __init__(self, strategy: str, batch: int, steps: int, seed: int) -> None:
        self.strategy, self.batch, self.steps, self.seed = strategy, batch, steps, seed
        self.lengths: list[int] = []
        self.epoch_batches: Batches = []
        self.chosen: Batches = []
        self.masks: list[tuple[int, int]] = []  # (attention_mask sum, numel) per trained batch
        self.step_s: list[float] = []
        self.step_cpu_s: list[float] = []
        self._t0 = self._c0 = 0.0

    def choose(self, order: list[int], lengths: list[int]) -> list[int]:
        """Keep the whole epoch for counting; train one warm-up batch + ``steps`` batches at padded-size quantiles."""
        self.lengths = lengths
        self.epoch_batches = chunk(order, self.batch)
        full = [b for b in self.epoch_batches if len(b) == self.batch] or self.epoch_batches
        by_size = sorted(full, key=lambda b: padded(b, lengths)[1])
        picks = [by_size[min(len(by_size) - 1, int((q + 0.5) / self.steps * len(by_size)))] for q in range(self.steps)]
        self.chosen = [by_size[0], *picks]  # the smallest batch warms up (optimizer state, allocator)
        return [i for b in self.chosen for i in b]


class ListSampler:
    """A sampler yielding a fixed index list (the chosen batches, back to back)."""

    def __init__(self, indices: list[int]) -> None:
        self.indices = indices

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def instrumented_trainer(probe: Probe) -> type:
    """A ``trl.SFTTrainer`` subclass that draws its real sampler's epoch, trains the chosen batches, records them."""
    import torch
    from transformers import TrainerCallback
    from trl import SFTTrainer

    class Timer(TrainerCallback):
        def on_step_begin(self, *_a: Any, **_kw: Any) -> None:
            probe._t0, probe._c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, *_a: Any, **_kw: Any) -> None:
            probe.step_s.append(time.perf_counter() - probe._t0)
            probe.step_cpu_s.append(time.process_time() - probe._c0)

    class Instrumented(SFTTrainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.add_callback(Timer())
            # wrap the most derived sampler (selflen may subclass this class, e.g. for its bucketed sampler)
            inner = self._get_train_sampler

            def sampler(train_dataset: Any = None) -> Any:
                dataset = train_dataset if train_dataset is not None else self.train_dataset
                lengths = [len(ids) for ids in dataset["input_ids"]]
                if probe.strategy == "sorted":
                    order = order_sorted(lengths, probe.batch, torch.Generator().manual_seed(probe.seed))
                else:  # what selflen/the Trainer would draw: random, LengthGroupedSampler or bucketed
                    order = list(iter(inner(train_dataset)))
                return ListSampler(probe.choose(order, lengths))

            self._get_train_sampler = sampler  # type: ignore[method-assign]

        def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            mask = inputs["attention_mask"]
            probe.masks.append((int(mask.sum()), int(mask.numel())))
            return super().compute_loss(model, inputs, *args, **kwargs)

    return Instrumented


def train_once(strategy: str, model_dir: str, data_path: Path, batch: int, steps: int, seed: int) -> Probe:
    """Run ``selflen.trainer.train`` (LoRA) once with the instrumented trainer; returns what it saw."""
    import dataclasses

    import trl

    from selflen.config import load
    from selflen.trainer import train

    probe = Probe(strategy, batch, steps, seed)
    settings = dataclasses.replace(
        load("finetune=lora").finetune,
        batch_size=batch,
        epochs=1,
        batching={"sorted": "random"}.get(strategy, strategy),  # "sorted": the probe replaces the sampler
        save_steps=10_000,
        logging_steps=10_000,
    )
    original = trl.SFTTrainer
    trl.SFTTrainer = instrumented_trainer(probe)  # train() imports it at call time; restored below
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sft-") as tmp:
            train(model_dir, data_path, Path(tmp) / "adapter", settings, seed=seed)
    finally:
        trl.SFTTrainer = original
    return probe


def summarize(probes: list[Probe]) -> dict[str, Any]:
    """Tokens/s of one strategy over its timed batches, each batch's time the fastest of the rounds."""
    first = probes[0]
    if any(p.chosen != first.chosen for p in probes):
        raise RuntimeError(f"{first.strategy}: rounds trained different batches (the sampler is not seeded)")
    expected = [padded(b, first.lengths) for b in first.chosen]
    step_s = [min(p.step_s[j] for p in probes) for j in range(1, len(first.chosen))]  # [0] is the warm-up
    step_cpu_s = [min(p.step_cpu_s[j] for p in probes) for j in range(1, len(first.chosen))]
    real = sum(m[0] for m in first.masks[1:])
    total = sum(m[1] for m in first.masks[1:])
    seconds = sum(step_s)
    return {
        "strategy": first.strategy,
        "epoch_real_fraction": real_fraction(first.epoch_batches, first.lengths),
        "epoch_batches": len(first.epoch_batches),
        "collator_matches_model": all(p.masks == expected for p in probes),
        "rounds": len(probes),
        "timed_steps": len(step_s),
        "timed_real_fraction": real / total,
        "step_s": [round(t, 3) for t in step_s],
        "step_s_all_rounds": [[round(t, 3) for t in p.step_s] for p in probes],
        "step_cpu_s": [round(t, 3) for t in step_cpu_s],
        "batch_shapes": [[len(b), max(first.lengths[i] for i in b)] for b in first.chosen[1:]],
        "real_tokens_per_s": real / seconds,
        "processed_tokens_per_s": total / seconds,
        "processed_tokens_per_cpu_s": total / sum(step_cpu_s),
        "projected_real_tokens_per_s": total / seconds * real_fraction(first.epoch_batches, first.lengths),
        "epoch_estimate_s": statistics.fmean(step_s) * len(first.epoch_batches),
    }


# -- reporting ----------------------------------------------------------------------------------------------------
def fraction_table(rows: list[dict[str, Any]], goal: float) -> str:
    lines = [
        "| strategy | batch | megabatch | real-token fraction (mean) | min | max | goal |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ok = "yes" if r["mean"] >= goal else f"no ({100 * (goal - r['mean']):.1f} pts short)"
        lines.append(
            f"| {r['strategy']} | {r['batch']} | {r['megabatch']} | {r['mean']:.3f} | {r['min']:.3f} | "
            f"{r['max']:.3f} | {ok} |"
        )
    return "\n".join(lines)


def rows_table(rows: list[dict[str, Any]], strategies: Sequence[str]) -> str:
    lines = [
        "| examples | batch | default megabatch | " + " | ".join(strategies) + " | multiplier for goal |",
        "|---:|---:|---:|" + "---:|" * len(strategies) + "---:|",
    ]
    for r in rows:
        need = r["mult_for_goal"] or "-"
        lines.append(
            f"| {r['rows']} | {r['batch']} | {r['default_mult']} x {r['batch']} | "
            + " | ".join(f"{r[s]:.3f}" for s in strategies)
            + f" | {need} |"
        )
    return "\n".join(lines)


def speed_table(rows: list[dict[str, Any]]) -> str:
    """Measured processed tokens/s on the timed batches; real tokens/s = that x the epoch's real-token fraction."""
    base = next((r for r in rows if r["strategy"] == "random"), None)
    lines = [
        "| strategy | epoch real-token fraction | timed batches (size x padded len) | processed tok/s | "
        "processed tok per CPU-s | real tok/s (epoch) | vs random | real tok/s (timed batches) | est. epoch |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rel = f"{r['projected_real_tokens_per_s'] / base['projected_real_tokens_per_s']:.2f}x" if base else "-"
        shapes = ", ".join(f"{b}x{n}" for b, n in r["batch_shapes"])
        lines.append(
            f"| {r['strategy']} | {r['epoch_real_fraction']:.3f} | {shapes} | "
            f"{r['processed_tokens_per_s']:.0f} | {r['processed_tokens_per_cpu_s']:.0f} | "
            f"{r['projected_real_tokens_per_s']:.0f} | {rel} | {r['real_tokens_per_s']:.0f} | "
            f"{r['epoch_estimate_s'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def length_summary(lengths: Sequence[int]) -> dict[str, float]:
    s = sorted(lengths)
    q = lambda p: s[min(len(s) - 1, int(p * len(s)))]
    return {
        "n": len(s),
        "min": s[0],
        "p10": q(0.1),
        "median": q(0.5),
        "mean": round(statistics.fmean(s), 1),
        "p90": q(0.9),
        "max": s[-1],
    }


def resolve(model: str) -> str:
    from selflen.models import embedded_model_dir, tiny_model_dir

    if model == "embedded":
        return str(embedded_model_dir())
    if model == "tiny":
        return str(tiny_model_dir())
    return model


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="embedded", help="embedded (SmolLM2-135M, default), tiny, or a model folder")
    ap.add_argument(
        "--data", type=Path, default=None, help="a gen_sft.jsonl (chat `messages` rows) instead of the synthetic set"
    )
    ap.add_argument("--rows", type=int, default=1000, help="synthetic examples (default 1000)")
    ap.add_argument("--median", type=float, default=250, help="median answer tokens (log-normal)")
    ap.add_argument("--sigma", type=float, default=0.9, help="log-normal sigma of answer tokens")
    ap.add_argument("--min-len", type=int, default=30)
    ap.add_argument("--max-len", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=4, help="per-device batch (selflen's default 4)")
    ap.add_argument("--sweep-batch-sizes", default="2,4,8,16", help="batch sizes for the padding sweep")
    ap.add_argument(
        "--sweep-rows",
        default="30,100,300,1000,3000",
        help="data-set sizes for the length-grouping sweep (resampled from the data's lengths)",
    )
    ap.add_argument("--sim-epochs", type=int, default=20, help="shuffles averaged per padding figure")
    ap.add_argument("--goal", type=float, default=0.95)
    ap.add_argument("--steps", type=int, default=4, help="timed training steps per strategy (+1 warm-up)")
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="times each strategy's batches are trained; the fastest time per batch counts",
    )
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--no-train", action="store_true", help="padding analysis only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from transformers import AutoTokenizer

    from selflen.store import read_jsonl
    from selflen.trainer import to_prompt_completion, token_lengths

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    t_start = time.perf_counter()
    model_dir = resolve(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with tempfile.TemporaryDirectory(prefix="bench-sft-data-") as tmp:
        if args.data:
            data_path, rows = args.data, read_jsonl(args.data)
        else:
            rows = synthetic_rows(tokenizer, args.rows, args.seed, args.median, args.sigma, args.min_len, args.max_len)
            data_path = Path(tmp) / "gen_sft.jsonl"
            data_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        lengths = token_lengths(tokenizer, to_prompt_completion(rows))
        summary = length_summary(lengths)
        print(f"model {model_dir}\ndata {args.data or 'synthetic'}: conversation tokens {summary}", flush=True)

        strategies = [s for s in args.strategies.split(",") if s]
        sweep_sizes = sorted({args.batch_size, *(int(b) for b in args.sweep_batch_sizes.split(",") if b)})
        fractions = []
        for batch in sweep_sizes:
            for strategy in strategies:
                sim = simulate(strategy, lengths, batch, args.sim_epochs, args.seed)
                mega = f"{default_mult(len(lengths), batch)} x {batch}" if strategy == "group_by_length" else "-"
                fractions.append({"strategy": strategy, "batch": batch, "megabatch": mega, **sim})
        needed = megabatch_needed(lengths, args.batch_size, args.goal, args.sim_epochs, args.seed)
        print("\n" + fraction_table(fractions, args.goal), flush=True)
        print(
            f"\nlength grouping at batch {args.batch_size} on these {len(lengths)} examples reaches {args.goal} "
            f"with a megabatch multiplier of {needed or 'none (not even one megabatch of everything)'}",
            flush=True,
        )
        by_rows = []
        for n in [int(x) for x in args.sweep_rows.split(",") if x]:
            sub = resample(lengths, n, args.seed)
            by_rows.append(
                {
                    "rows": n,
                    "batch": args.batch_size,
                    "default_mult": default_mult(n, args.batch_size),
                    **{s: simulate(s, sub, args.batch_size, args.sim_epochs, args.seed)["mean"] for s in strategies},
                    "mult_for_goal": megabatch_needed(sub, args.batch_size, args.goal, args.sim_epochs, args.seed),
                }
            )
        print("\n" + rows_table(by_rows, strategies), flush=True)

        speeds = []
        if not args.no_train:
            probes: dict[str, list[Probe]] = {s: [] for s in strategies}
            for rnd in range(args.rounds):  # strategies interleaved, so a load change hits them all alike
                for strategy in strategies:
                    print(
                        f"\nround {rnd + 1}/{args.rounds}, {strategy}: selflen.trainer.train on 1 warm-up + "
                        f"{args.steps} timed batches",
                        flush=True,
                    )
                    probe = train_once(strategy, model_dir, data_path, args.batch_size, args.steps, args.seed)
                    probes[strategy].append(probe)
                    print(f"  step times {[round(t, 2) for t in probe.step_s]} s", flush=True)
            speeds = [summarize(probes[s]) for s in strategies]
            print("\n" + speed_table(speeds))
            if not all(r["collator_matches_model"] for r in speeds):
                print("WARNING: the trainer's attention masks differ from the padding model (see JSON)")

    result = {
        "benchmark": "sft",
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "loadavg_at_start": load_start,
            "loadavg_at_end": os.getloadavg(),
            "env": {k: os.environ[k] for k in ENV_KEYS if k in os.environ},
        },
        "model": model_dir,
        "data": str(args.data)
        if args.data
        else {
            "synthetic": True,
            "rows": args.rows,
            "median": args.median,
            "sigma": args.sigma,
            "min_len": args.min_len,
            "max_len": args.max_len,
            "seed": args.seed,
        },
        "lengths": summary,
        "batch_size": args.batch_size,
        "goal": args.goal,
        "sim_epochs": args.sim_epochs,
        "fractions": fractions,
        "megabatch_mult_for_goal": needed,
        "by_rows": by_rows,
        "steps": args.steps,
        "rounds": args.rounds,
        "training": speeds,
        "total_s": round(time.perf_counter() - t_start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['total_s']:.0f} s)")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
