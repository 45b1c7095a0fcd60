"""Generation engines behind one interface (see ``base``).

``build_engine`` picks one by name; ``engine_from_config`` builds the configured backend for a model folder;
``EnginePool`` owns the engines of one run (one per model folder, at most one vLLM engine alive), registers adapters
under run-unique names and releases device memory before training (``release``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selflen.engines.base import BoundEngine, Completion, Engine, Request, Result, SamplingParams, error_result
from selflen.engines.journal import Journal, JournaledEngine
from selflen.errors import SelflenError

if TYPE_CHECKING:
    from selflen.config import BackendConfig, ModelConfig

BACKENDS = ("hf", "vllm", "openai")
log = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "BoundEngine",
    "Completion",
    "Engine",
    "EngineMemoryNotFreed",
    "EnginePool",
    "Request",
    "Result",
    "SamplingParams",
    "build_engine",
    "engine_from_config",
    "error_result",
]


def build_engine(backend: str, model: str, **kwargs: Any) -> Engine:
    """Construct an engine; heavy imports (vLLM) happen only for the backend asked for."""
    if backend == "hf":
        from selflen.engines.hf import HFEngine

        return HFEngine(model, **kwargs)
    if backend == "vllm":
        if kwargs.get("data_parallel_size", 1) > 1:
            from selflen.engines.vllm_dp import DataParallelVLLM

            return DataParallelVLLM(model, **kwargs)
        from selflen.engines.vllm import VLLMEngine

        kwargs.pop("data_parallel_size", None)
        return VLLMEngine(model, **kwargs)
    if backend == "openai":
        from selflen.engines.openai import OpenAIEngine

        return OpenAIEngine(model, **kwargs)
    raise ValueError(f"backend={backend!r} is unknown; choose one of {', '.join(BACKENDS)}")


def engine_from_config(
    backend: BackendConfig, model: ModelConfig, model_dir: Path, seed: int = 0, enable_lora: bool = True
) -> Engine:
    """The configured backend serving the model folder ``model_dir`` (the base model, a fully trained or a merged
    one); ``enable_lora=False`` starts vLLM without adapter support (nothing is served through adapters)."""
    if backend.name == "hf":
        return build_engine(
            "hf",
            str(model_dir),
            dtype=model.dtype,
            device=backend.device,
            batch_size=backend.batch_size,
            max_model_len=model.max_model_len,
            trust_remote_code=model.trust_remote_code,
        )
    if backend.name == "vllm":
        return build_engine(
            "vllm",
            str(model_dir),
            dtype=backend.dtype or model.dtype,
            max_model_len=model.max_model_len,
            max_lora_rank=backend.max_lora_rank,
            enable_lora=enable_lora,
            gpu_memory_utilization=backend.gpu_memory_utilization,
            tensor_parallel_size=backend.tensor_parallel_size,
            data_parallel_size=backend.data_parallel_size,
            sleep_mode=backend.sleep_mode,
            enforce_eager=backend.enforce_eager,
            cpu_kvcache_gb=backend.cpu_kvcache_gb,
            seed=seed,
            trust_remote_code=model.trust_remote_code,
            single_process=backend.single_process,
            **dict.fromkeys(("cpu_kernels", "fast_penalties", "fast_top_k_top_p"), backend.cpu_fast_paths),
            max_num_seqs=backend.max_num_seqs,
            max_num_batched_tokens=backend.max_num_batched_tokens,
        )
    served = model.name if model.source == "hub" else str(model_dir)
    return build_engine(
        "openai",
        served,
        base_url=backend.base_url,
        api_key_env=backend.api_key_env,
        concurrency=backend.concurrency,
        timeout_s=backend.timeout_s,
        max_retries=backend.max_retries,
        load_adapters=True,
    )


class EngineMemoryNotFreed(SelflenError):
    """Releasing the engines before training left the GPU memory in use."""


class EnginePool:
    """The engines of one run, built lazily: one per model folder (a full fine-tune makes a new folder).

    ``for_folder(trained)`` answers "which engine and adapter play this trained role": a LoRA adapter folder is
    served on the base model's engine under a name unique to the run (``<tag>-<label>``), a full model folder gets
    an engine of its own, ``None`` is the base model. At most one exclusive (vLLM) engine is alive: starting one
    for another folder closes the previous one first, so two large engines never share a device; hf engines may
    coexist. ``release()`` frees device memory before training, ``close()`` frees everything (at the end).
    ``served`` lists, in order, what each ``for_folder`` call served ("base", an adapter's run-unique name, that name
    with " (merged)", or a full model folder), so a stage's manifest can say which model generated it. With
    ``merge`` (a function ``merge(adapter_folder, name) -> model folder``), an adapter is folded into a copy of the
    base model and served as a model of its own instead (vLLM on CPU: see ``backend.merge_adapters``).
    """

    def __init__(self, base_dir: Path, build, tag: str = "", release_timeout_s: float = 60.0,
                 merge=None) -> None:
        self.base_dir = Path(base_dir)
        self._build = build  # build(model_dir) -> Engine
        self._merge = merge  # merge(adapter_dir, name) -> merged model folder, or None to serve adapters
        self.tag = tag
        self.release_timeout_s = release_timeout_s
        self._engines: dict[str, Engine] = {}
        self.served: list[str] = []
        self.journal: Journal | None = None  # set while a stage runs: its engines keep each result there

    @contextlib.contextmanager
    def journaled(self, path: Path) -> Iterator[Journal]:
        """While the block runs, every engine this pool hands out keeps its results in the journal at ``path``
        (``selflen.engines.journal``); the journal's file is closed, not removed, when the block ends."""
        self.journal = Journal(path)
        try:
            yield self.journal
        finally:
            self.journal.close()
            self.journal = None

    def _serve(self, engine: Engine, served: str) -> Engine:
        self.served.append(served)
        return engine if self.journal is None else JournaledEngine(engine, self.journal, served)

    def engine(self, model_dir: Path | None = None) -> Engine:
        key = str(model_dir or self.base_dir)
        if key not in self._engines:
            self.close_exclusive()
            log.info("engine: starting for %s", key)
            self._engines[key] = self._build(Path(key))
        return self._engines[key]

    def close_exclusive(self) -> None:
        """Close the running vLLM engine, if any (before another starts, or before a merge loads a model copy)."""
        for other in [k for k, e in self._engines.items() if getattr(e, "exclusive", False)]:
            log.info("engine: closing the one for %s before starting another", other)
            self._engines.pop(other).close()

    def for_folder(self, folder: Path | None, label: str) -> Engine:
        """The engine bound to ``folder``: None (base), a LoRA adapter folder, or a full model folder."""
        if folder is None:
            return self._serve(self.engine().bind(None), "base")
        if (folder / "config.json").exists() and not (folder / "adapter_config.json").exists():
            return self._serve(self.engine(folder).bind(None), str(folder))
        from selflen.models import check_adapter

        check_adapter(folder)
        name = f"{self.tag}-{label}" if self.tag else label
        if self._merge is not None:
            merged = Path(self._merge(folder, label))
            return self._serve(self.engine(merged).bind(None), f"{name} (merged)")
        base = self.engine()
        if not base.has_adapter(name):
            log.info("engine: adapter %s from %s", name, folder)
            base.add_adapter(name, str(folder))
        return self._serve(base.bind(name), name)

    def stats(self) -> Counter:
        """Retries and errors counted by the engines started so far (the OpenAI engine counts them)."""
        total: Counter = Counter()
        for eng in self._engines.values():
            total.update(getattr(eng, "stats", None) or {})
        return total

    def last_error(self) -> str | None:
        """The cause of the last request an engine failed (the OpenAI engine keeps it), None when unknown."""
        causes = [getattr(eng, "last_error", None) for eng in self._engines.values()]
        return next((c for c in reversed(causes) if c), None)

    def close(self) -> None:
        """Free every engine (vLLM does not reliably release memory in-process otherwise)."""
        while self._engines:
            self._engines.popitem()[1].close()

    def release(self) -> None:
        """Free device memory for training: an engine that can sleep (vLLM on CUDA with ``backend.sleep_mode``)
        sleeps and keeps its adapters, waking on its next request; every other engine is closed. On CUDA, after a
        vLLM engine, wait until the share of memory it was given is free again (``gpu_memory_utilization``)."""
        need, asleep = 0.0, False
        for key, eng in list(self._engines.items()):
            if getattr(eng, "exclusive", False):
                need = max(need, float(getattr(eng, "gpu_memory_utilization", 0.0)))
            if getattr(eng, "can_sleep", False):
                eng.sleep()
                asleep = True
            else:
                self._engines.pop(key).close()
        if need > 0:
            wait_for_free_gpu_memory(need, self.release_timeout_s, asleep)


def wait_for_free_gpu_memory(fraction: float, timeout_s: float, asleep: bool, poll_s: float = 1.0) -> None:
    """Wait until every visible GPU has ``fraction`` of its memory free; a clear error after ``timeout_s``.

    Nothing happens without CUDA (the CPU engines hold host memory, freed by closing them)."""
    import torch

    if not torch.cuda.is_available():
        return
    deadline = time.monotonic() + timeout_s
    while True:
        short = []
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            if free < fraction * total:
                short.append(f"cuda:{i} {free / 2**30:.1f} of {total / 2**30:.1f} GiB free")
        if not short:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    fix = (
        "set backend.sleep_mode=false (a sleeping engine still holds its CUDA context and buffers)"
        if asleep
        else "set backend.single_process=false (the engine core runs in its own process and frees its memory when "
        "it exits) or lower backend.gpu_memory_utilization"
    )
    raise EngineMemoryNotFreed(
        f"GPU memory was not freed for training within {timeout_s:.0f} s after releasing the vLLM engines "
        f"({'; '.join(short)}; needed {fraction:.0%} free, backend.gpu_memory_utilization): {fix}"
    )
