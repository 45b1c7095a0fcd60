"""Generation throughput: the ``hf`` and ``vllm`` engines against a bare loop on the same model, prompts and batch.

For each batch size B the same B chat prompts (the English seed prompts, rendered by the engine's own ``render``)
go through

* ``hf``:   ``HFEngine.generate`` vs a bare ``model.generate`` (``do_sample=True``, same temperature/top-p/top-k/
            repetition penalty, ``min_new_tokens = max_new_tokens``) on the same ``nn.Module``, then a
            ``batch_decode`` — what a hand-written loop does;
* ``vllm``: ``VLLMEngine.generate`` vs a bare ``LLM.generate`` on pre-rendered token ids with the same
            ``vllm.SamplingParams`` (same per-request seeds) and ``ignore_eos=True``. The bare call goes through
            ``engine.llm`` — the engine's own ``LLM`` — so vLLM starts once (~35 s on this CPU) and both sides run
            on an identically configured engine.

Forced length, so both sides decode exactly ``B * max_new_tokens`` tokens: the bare sides suppress EOS
(``min_new_tokens`` / ``ignore_eos``). The engines run their real code path with one benchmark-only change made
on the instance, never in ``selflen``: the ``hf`` engine's ``stop_ids`` become ``[-1]`` (no token has id -1, so no
row stops early; its per-row sampler and everything else are untouched), and the ``vllm`` engine's ``_sampling``
is wrapped to set ``ignore_eos=True`` on the ``SamplingParams`` it builds (the engine then runs its own
``LLM.enqueue`` and step loop, ``VLLMEngine.stream``). The tokens each side really
produced are counted and must equal ``B * max_new_tokens``; the script fails otherwise.

Timing: one warm-up per side and batch size, then ``--repeats`` alternating runs (bare first on even repeats,
engine first on odd ones); tokens/s uses the fastest run of each side (the least disturbed one on a shared CPU)
and all raw times are kept in the JSON. Everything runs in one process so ratios inside one run are fair. Each run
also records the CPU seconds of this process and its children (vLLM's engine core and workers): on a machine shared
with other jobs the wall-clock ratio mostly measures how much CPU each side happened to get, while the CPU-time
ratio (fewest CPU seconds of each side) measures the work each side does. Under CPU contention, run with
``OMP_WAIT_POLICY=PASSIVE``: with the default spinning OpenMP barriers two torch threads on two busy cores run
several times slower than one.

Compute floor: the median GFLOP/s of a fp32 ``torch.mm`` (2048 x 2048, ``--threads`` torch threads) divided by
``2 * params`` FLOP per generated token gives the tokens/s the CPU could reach if generation were pure matmul at that
rate; the table reports each side as a percentage of it. At batch 1 decoding is bound by streaming the fp32 weights
(~540 MB per token), not by FLOPs, so low percentages there are expected.

The same run also measures a bf16 ``torch.mm`` when the CPU has native bf16 (AVX512-BF16 / AMX) and reports each
engine against that "bf16 floor" too (the fp32 floor stays the reference: the % column). ``--hf-kwargs`` /
``--vllm-kwargs`` pass engine constructor arguments (JSON), ``--engine-only`` skips the bare loops, and every
row records the 1-minute load average after each timed run.

    HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE python bench/generate.py   # batch 64, 128; 128 new tokens; both engines
    HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE python bench/generate.py --small   # the previous batch 1, 8, 32
    HF_HUB_OFFLINE=1 python bench/generate.py --batch-sizes 1,8 --max-new-tokens 32 --skip-vllm
    HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE python bench/generate.py --engine-only --hf-batch-sizes 64 \
        --vllm-kwargs '{"dtype": "bf16_if_supported", "single_process": true, "max_num_batched_tokens": 16384}'
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
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
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "generate.json"


@dataclass(frozen=True)
class Sampling:
    """The sampling settings both sides of every comparison use."""

    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float
    seed: int


@dataclass
class Row:
    """One (engine, batch size) comparison: wall and CPU seconds (this process and its children) of every run."""

    engine: str
    batch: int
    new_tokens_per_seq: int
    tokens: int
    bare_s: list[float] = field(default_factory=list)
    engine_s: list[float] = field(default_factory=list)
    bare_cpu_s: list[float] = field(default_factory=list)
    engine_cpu_s: list[float] = field(default_factory=list)
    loadavg_1m: list[float] = field(default_factory=list)  # after each timed run
    config: str = ""

    @property
    def bare_tps(self) -> float:
        return self.tokens / min(self.bare_s) if self.bare_s else float("nan")

    @property
    def engine_tps(self) -> float:
        return self.tokens / min(self.engine_s)

    @property
    def ratio(self) -> float:
        return self.engine_tps / self.bare_tps

    @property
    def cpu_ratio(self) -> float:
        return min(self.bare_cpu_s) / min(self.engine_cpu_s) if self.bare_cpu_s else float("nan")

    def as_dict(self, floor_tps: float, bf16_floor_tps: float | None = None) -> dict[str, Any]:
        return {
            **asdict(self),
            "engine_pct_of_bf16_floor": None
            if bf16_floor_tps is None
            else round(100 * self.engine_tps / bf16_floor_tps, 3),
            "bare_tokens_per_s": round(self.bare_tps, 3),
            "engine_tokens_per_s": round(self.engine_tps, 3),
            "engine_over_bare": round(self.ratio, 4),
            "engine_over_bare_cpu_time": round(self.cpu_ratio, 4),
            "bare_pct_of_floor": round(100 * self.bare_tps / floor_tps, 3),
            "engine_pct_of_floor": round(100 * self.engine_tps / floor_tps, 3),
        }


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and all its children (vLLM's engine core and workers)."""
    import psutil

    total = 0.0
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:  # a child that just exited
            pass
    return total


def matmul_gflops(n: int = 2048, runs: int = 9, dtype: str = "float32") -> tuple[float, list[float]]:
    """Median ``torch.mm`` rate (GFLOP/s) of an n x n product in ``dtype``, with the current torch thread count."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(getattr(torch, dtype))
    b = torch.randn(n, n, generator=gen).to(getattr(torch, dtype))
    torch.mm(a, b)  # warm-up: thread pool and allocator
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates), rates


def cpu_has_bf16() -> bool:
    """Native bf16 matmul on this CPU (AVX512-BF16 / AMX); the engine's own probe when it is importable."""
    try:
        from selflen.dtypes import cpu_has_bf16 as probe
    except ImportError:
        import torch

        return bool(torch.cpu._is_avx512_bf16_supported())
    return probe()


def prompts(count: int) -> list[str]:
    """``count`` English seed prompts (cycled if there are fewer), so every batch has varied prompt lengths."""
    from selflen.seeds import load_seeds

    texts = [s.prompt for s in load_seeds("en")]
    return [texts[i % len(texts)] for i in range(count)]


def requests(batch: int, new_tokens: int, s: Sampling) -> list[Any]:
    from selflen.engines.base import Request, SamplingParams

    params = [
        SamplingParams(
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,
            repetition_penalty=s.repetition_penalty,
            max_new_tokens=new_tokens,
            seed=s.seed + i,
        )
        for i in range(batch)
    ]
    return [Request([{"role": "user", "content": p}], params[i]) for i, p in enumerate(prompts(batch))]


def timed(fn: Callable[[], int]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, tokens) of one call."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    tokens = fn()
    return time.perf_counter() - t0, cpu_seconds() - c0, tokens


def compare(
    engine_name: str,
    batch: int,
    new_tokens: int,
    repeats: int,
    bare: Callable[[int], int] | None,
    engine: Callable[[int], int],
) -> Row:
    """Warm both sides up, then alternate them ``repeats`` times; both must produce ``batch * new_tokens`` tokens.

    ``bare=None`` times the engine alone (``--engine-only``)."""
    expected = batch * new_tokens
    if bare is not None:
        bare(min(4, new_tokens))
    engine(min(4, new_tokens))
    row = Row(engine_name, batch, new_tokens, expected)
    for r in range(repeats):
        sides = [("bare", bare), ("engine", engine)] if bare is not None else [("engine", engine)]
        for side, fn in sides if r % 2 == 0 else sides[::-1]:
            seconds, cpu, produced = timed(lambda fn=fn: fn(new_tokens))
            if produced != expected:
                raise RuntimeError(f"{engine_name} {side} B={batch}: produced {produced} tokens, expected {expected}")
            (row.bare_s if side == "bare" else row.engine_s).append(round(seconds, 4))
            (row.bare_cpu_s if side == "bare" else row.engine_cpu_s).append(round(cpu, 3))
            row.loadavg_1m.append(round(os.getloadavg()[0], 2))
            print(
                f"  {engine_name:4s} B={batch:<3d} {side:6s} {seconds:8.2f} s  {produced / seconds:8.2f} tok/s  "
                f"(CPU {cpu:7.2f} s, load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    return row


def bench_hf(
    model_dir: str,
    batch_sizes: Sequence[int],
    new_tokens: int,
    repeats: int,
    s: Sampling,
    engine_kwargs: dict[str, Any] | None = None,
    engine_only: bool = False,
) -> list[Row]:
    from selflen.engines.hf import HFEngine

    kwargs = {"dtype": "float32", "device": "cpu", **(engine_kwargs or {})}
    engine = HFEngine(model_dir, batch_size=max(batch_sizes), **kwargs)
    real_stop_ids = list(engine.stop_ids)
    engine.stop_ids = [-1]  # benchmark-only: no row stops early, so the engine decodes exactly max_new_tokens
    rows = []
    for batch in batch_sizes:
        engine.batch_size = batch
        ids = [engine.render(r) for r in requests(batch, new_tokens, s)]  # the bare side gets pre-rendered ids

        def run_engine(n: int, batch: int = batch) -> int:
            results = engine.generate(requests(batch, n, s))
            return sum(o.tokens for r in results for o in r.outputs)

        def run_bare(n: int, ids: list[list[int]] = ids) -> int:
            return bare_hf(engine.model, engine.tokenizer, ids, n, s, real_stop_ids)

        rows.append(compare("hf", batch, new_tokens, repeats, None if engine_only else run_bare, run_engine))
    engine.close()
    return rows


def bare_hf(model: Any, tok: Any, ids: list[list[int]], n: int, s: Sampling, stop_ids: list[int]) -> int:
    """A hand-written loop: left-pad, ``model.generate`` with HF's own sampling, decode; returns new tokens."""
    import torch
    from transformers import GenerationConfig

    config = GenerationConfig(
        do_sample=True,
        temperature=s.temperature,
        top_p=s.top_p,
        top_k=s.top_k,
        repetition_penalty=s.repetition_penalty,
        max_new_tokens=n,
        min_new_tokens=n,
        num_beams=1,
        eos_token_id=stop_ids,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(s.seed)
    with torch.no_grad():
        batch = tok.pad({"input_ids": ids}, return_tensors="pt")
        out = model.generate(**batch, generation_config=config)
    new = out[:, batch["input_ids"].shape[1] :]
    tok.batch_decode(new.tolist(), skip_special_tokens=True)
    return int(new.numel())


def bench_vllm(
    model_dir: str,
    batch_sizes: Sequence[int],
    new_tokens: int,
    repeats: int,
    s: Sampling,
    enable_lora: bool,
    engine_kwargs: dict[str, Any] | None = None,
    engine_only: bool = False,
) -> tuple[list[Row], float]:
    from vllm import SamplingParams as VSP

    from selflen.engines.hf import row_seed
    from selflen.engines.vllm import VLLMEngine

    t0 = time.perf_counter()
    kwargs = {"dtype": "float32", "enable_lora": enable_lora, "seed": s.seed, **(engine_kwargs or {})}
    engine = VLLMEngine(model_dir, **kwargs)
    start_s = time.perf_counter() - t0
    bare_generate = engine.llm.generate
    engine_sampling = engine._sampling

    def forced_sampling(req: Any, prompt_len: int) -> Any:
        p = engine_sampling(req, prompt_len)
        p.ignore_eos = True  # benchmark-only: the engine's own SamplingParams, made to run to max_tokens
        return p

    engine._sampling = forced_sampling  # type: ignore[method-assign]  # on this instance only
    rows = []
    try:
        for batch in batch_sizes:
            reqs = requests(batch, new_tokens, s)
            prompts_ = [{"prompt_token_ids": engine.render(r)} for r in reqs]  # pre-rendered for the bare side

            def run_engine(n: int, batch: int = batch) -> int:
                results = engine.generate(requests(batch, n, s))
                return sum(o.tokens for r in results for o in r.outputs)

            def run_bare(n: int, reqs: list[Any] = reqs, prompts_: list[Any] = prompts_) -> int:
                params = [
                    VSP(
                        n=1,
                        temperature=s.temperature,
                        top_p=s.top_p,
                        top_k=s.top_k,
                        repetition_penalty=s.repetition_penalty,
                        max_tokens=n,
                        ignore_eos=True,
                        seed=row_seed(r.params.seed, 0),
                    )
                    for r in reqs
                ]
                outs = bare_generate(prompts_, params, use_tqdm=False)
                return sum(len(o.token_ids) for out in outs for o in out.outputs)

            rows.append(compare("vllm", batch, new_tokens, repeats, None if engine_only else run_bare, run_engine))
    finally:
        engine.close()
    return rows, start_s


def table(rows: Sequence[Row], floor_tps: float, bf16_floor_tps: float | None = None) -> str:
    bf16 = bf16_floor_tps is not None
    lines = [
        "| engine | config | batch | new tok/seq | bare tok/s | engine tok/s | engine/bare (wall) | "
        "engine/bare (CPU time) | bare % floor | engine % floor |"
        + (" engine % bf16 floor |" if bf16 else "")
        + " load (1 min) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if bf16 else "") + "---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.engine} | {r.config} | {r.batch} | {r.new_tokens_per_seq} | {r.bare_tps:.1f} | "
            f"{r.engine_tps:.1f} | "
            f"{r.ratio:.3f} | {r.cpu_ratio:.3f} | {100 * r.bare_tps / floor_tps:.1f}% | "
            f"{100 * r.engine_tps / floor_tps:.1f}% |"
            + (f" {100 * r.engine_tps / bf16_floor_tps:.1f}% |" if bf16 else "")
            + f" {', '.join(f'{x:.1f}' for x in r.loadavg_1m)} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import torch
    import transformers

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    try:
        import vllm

        info["vllm"] = vllm.__version__
    except ImportError:
        info["vllm"] = None
    return info


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch-sizes", default="64,128", help="comma-separated batch sizes (default 64,128)")
    ap.add_argument("--small", action="store_true", help="the previous small batches 1,8,32 (overrides --batch-sizes)")
    ap.add_argument("--hf-batch-sizes", default=None, help="batch sizes for the hf side only (default: --batch-sizes)")
    ap.add_argument("--engine-only", action="store_true", help="time the engines alone (no bare loop side)")
    ap.add_argument(
        "--hf-kwargs", default="{}", help='extra HFEngine arguments, JSON (e.g. \'{"dtype": "bfloat16"}\')'
    )
    ap.add_argument(
        "--vllm-kwargs", default="{}", help="extra VLLMEngine arguments, JSON (e.g. '{\"single_process\": true}')"
    )
    ap.add_argument("--max-new-tokens", type=int, default=128, help="tokens generated per sequence (forced)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per side and batch size (fastest is used)")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--top-p", type=float, default=0.8)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--repetition-penalty", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0, help="request i uses seed + i (bare hf: torch.manual_seed(seed))")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the matmul floor and the hf engine")
    ap.add_argument("--model", default=None, help="model folder (default: the embedded SmolLM2-135M, fp32)")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--skip-vllm", action="store_true")
    ap.add_argument("--vllm-no-lora", action="store_true", help="start vLLM without enable_lora (the engine default)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from selflen.models import embedded_model_dir

    load_start = os.getloadavg()
    torch.set_num_threads(args.threads)
    model_dir = str(args.model or embedded_model_dir())
    batch_sizes = [1, 8, 32] if args.small else [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    hf_kwargs, vllm_kwargs = json.loads(args.hf_kwargs), json.loads(args.vllm_kwargs)
    s = Sampling(args.temperature, args.top_p, args.top_k, args.repetition_penalty, args.seed)
    with torch.device("meta"):
        params = sum(
            p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir)).parameters()
        )  # tied embeddings counted once: the LM head is the one matmul they take part in
    rate, rates = matmul_gflops()
    floor_tps = rate * 1e9 / (2 * params)
    has_bf16 = cpu_has_bf16()
    bf16_rate, bf16_rates = matmul_gflops(dtype="bfloat16") if has_bf16 else (None, [])
    bf16_floor_tps = None if bf16_rate is None else bf16_rate * 1e9 / (2 * params)
    print(
        f"model {model_dir}: {params / 1e6:.1f} M params; fp32 matmul {rate:.1f} GFLOP/s with {args.threads} "
        f"threads -> compute floor {floor_tps:.1f} tok/s"
        + (f"; bf16 matmul {bf16_rate:.1f} GFLOP/s -> {bf16_floor_tps:.1f} tok/s" if has_bf16 else "; no native bf16"),
        flush=True,
    )
    t_start = time.perf_counter()
    rows: list[Row] = []
    vllm_start_s = None
    if not args.skip_hf:
        hf_batches = [int(b) for b in args.hf_batch_sizes.split(",")] if args.hf_batch_sizes else batch_sizes
        hrows = bench_hf(model_dir, hf_batches, args.max_new_tokens, args.repeats, s, hf_kwargs, args.engine_only)
        for r in hrows:
            r.config = json.dumps({"dtype": "float32", **hf_kwargs}, sort_keys=True)
        rows += hrows
    if not args.skip_vllm:
        vrows, vllm_start_s = bench_vllm(
            model_dir,
            batch_sizes,
            args.max_new_tokens,
            args.repeats,
            s,
            enable_lora=not args.vllm_no_lora,
            engine_kwargs=vllm_kwargs,
            engine_only=args.engine_only,
        )
        for r in vrows:
            r.config = json.dumps(
                {"dtype": "float32", "enable_lora": not args.vllm_no_lora, **vllm_kwargs}, sort_keys=True
            )
        rows += vrows
    rate_end, _ = matmul_gflops()
    print()
    print(table(rows, floor_tps, bf16_floor_tps))
    print(
        f"\nfloor {floor_tps:.1f} tok/s = {rate:.1f} GFLOP/s / (2 x {params / 1e6:.1f} M params); matmul at the end "
        f"{rate_end:.1f} GFLOP/s; total {time.perf_counter() - t_start:.0f} s"
    )
    result = {
        "benchmark": "generate",
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            **machine(),
            "loadavg_at_start": load_start,
            "loadavg_at_end": os.getloadavg(),
            "env": {k: os.environ[k] for k in ENV_KEYS if k in os.environ},
        },
        "model": model_dir,
        "params": params,
        "sampling": asdict(s),
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "threads": args.threads,
        "matmul_gflops": round(rate, 2),
        "matmul_gflops_runs": [round(r, 2) for r in rates],
        "matmul_gflops_at_end": round(rate_end, 2),
        "floor_tokens_per_s": round(floor_tps, 2),
        "cpu_has_bf16": has_bf16,
        "bf16_matmul_gflops": None if bf16_rate is None else round(bf16_rate, 2),
        "bf16_matmul_gflops_runs": [round(r, 2) for r in bf16_rates],
        "bf16_floor_tokens_per_s": None if bf16_floor_tps is None else round(bf16_floor_tps, 2),
        "hf_kwargs": hf_kwargs,
        "vllm_kwargs": vllm_kwargs,
        "vllm_start_s": None if vllm_start_s is None else round(vllm_start_s, 1),
        "vllm_enable_lora": not args.vllm_no_lora,
        "rows": [r.as_dict(floor_tps, bf16_floor_tps) for r in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
