"""Generation engines behind one interface (see ``base``). ``build_engine`` picks one by name."""

from __future__ import annotations

from typing import Any

from selflen.engines.base import Completion, Engine, Request, Result, SamplingParams, error_result

BACKENDS = ("hf", "vllm", "openai")

__all__ = ["BACKENDS", "Completion", "Engine", "Request", "Result", "SamplingParams", "build_engine", "error_result"]


def build_engine(backend: str, model: str, **kwargs: Any) -> Engine:
    """Construct an engine; heavy imports (vLLM) happen only for the backend asked for."""
    if backend == "hf":
        from selflen.engines.hf import HFEngine

        return HFEngine(model, **kwargs)
    if backend == "vllm":
        from selflen.engines.vllm import VLLMEngine

        return VLLMEngine(model, **kwargs)
    if backend == "openai":
        from selflen.engines.openai import OpenAIEngine

        return OpenAIEngine(model, **kwargs)
    raise ValueError(f"backend={backend!r} is unknown; choose one of {', '.join(BACKENDS)}")
