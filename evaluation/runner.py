"""Generate answers for a benchmark slice with any engine, then score (and optionally judge) them.

This is what ``python -m evaluation generate`` runs; the functions are importable for scripts and notebooks.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from evaluation import api
from evaluation.judge import Judge, judge_summary, rubric_for
from selflen.engines import build_engine
from selflen.engines.base import Engine, SamplingParams
from selflen.jsonl import write_jsonl
from selflen.models import merged_model_dir, merges_adapters

__all__ = ["JudgeSettings", "generate_responses", "judge_and_summarize", "run_generate", "write_outputs"]

log = logging.getLogger(__name__)
ADAPTER_NAME = "eval"


@dataclass
class JudgeSettings:
    """Which model judges quality, through which backend, and where its cache lives."""

    model: str
    backend: str = "hf"
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    cache_path: str | None = None
    max_attempts: int = 3
    max_new_tokens: int = 1024
    max_response_chars: int | None = None


def generate_responses(
    engine: Engine,
    rows: Sequence[dict[str, Any]],
    benchmark: str,
    params: SamplingParams,
    adapter: str | None = None,
) -> list[dict[str, Any]]:
    """``api.response_rows`` of the engine's answers to ``api.benchmark_requests``."""
    results = engine.generate(api.benchmark_requests(rows, benchmark, params, adapter), desc=f"generate {benchmark}")
    return api.response_rows(rows, results)


def judge_and_summarize(
    scored: list[dict[str, Any]], benchmark: str, judge: Judge, summary: dict[str, Any]
) -> list[dict[str, Any]]:
    """Judge scored rows, then recompute the summary (so ``quality`` and ``overall_S`` appear) plus ``judge``."""
    judged = judge.judge_rows(scored)
    summary.update(api.summarize(judged, benchmark, summary["counter"], _bad(summary)))
    summary["judge"] = judge_summary(judged, judge.rubric, judge.model_id)
    return judged


def _bad(summary: dict[str, Any]) -> list[tuple[int, str]]:
    return [(b["line"], b["reason"]) for b in summary.get("bad_row_lines", [])]


def write_outputs(out_dir: Path, scored: list[dict[str, Any]], summary: dict[str, Any], title: str) -> None:
    """Write ``scored.jsonl``, ``summary.json`` and ``scatter.png`` into ``out_dir``."""
    write_jsonl(out_dir / "scored.jsonl", scored, private=False)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    api.scatter_plot(scored, out_dir / "scatter.png", title)


def run_generate(
    benchmark: str,
    rows: Sequence[dict[str, Any]],
    backend: str,
    model: str,
    out_dir: str | Path,
    params: SamplingParams,
    adapter_dir: str | None = None,
    engine_kwargs: dict[str, Any] | None = None,
    counter: str | None = None,
    judge: JudgeSettings | None = None,
    merge_adapter: str = "auto",
) -> dict[str, Any]:
    """Generate, score, optionally judge, and write ``responses.jsonl``, ``scored.jsonl``, ``summary.json``
    and ``scatter.png`` under ``out_dir``. Returns the summary.

    ``merge_adapter`` (auto|always|never, as ``backend.merge_adapters`` of a run): a merged adapter is folded into a
    copy of ``model`` under ``<out_dir>/merged/`` and served as a plain model; ``auto`` merges for vLLM on a CPU,
    where an adapter on every request decodes about three times slower."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kwargs = dict(engine_kwargs or {})
    served, merged = model, None
    if adapter_dir and merges_adapters(SimpleNamespace(name=backend, merge_adapters=merge_adapter)):
        dtype = str(kwargs.get("dtype", "float32"))  # the engine's: VLLMEngine's own default is float32
        merged = merged_model_dir(model, adapter_dir, out / "merged", "adapter", dtype,
                                  trust_remote_code=bool(kwargs.get("trust_remote_code", False)))  # fmt: skip
        served = str(merged)
        kwargs.setdefault("enable_lora", False)
    started = time.time()
    with build_engine(backend, served, **kwargs) as engine:
        adapter = ADAPTER_NAME if adapter_dir and merged is None else None
        if adapter:
            engine.add_adapter(adapter, adapter_dir)
        responses = generate_responses(engine, rows, benchmark, params, adapter)
    gen_seconds = time.time() - started
    write_jsonl(out / "responses.jsonl", responses, private=False)
    scored, summary = api.score_rows(responses, benchmark, counter)
    if judge is not None:
        cache = judge.cache_path or str(out / "judge_cache.jsonl")
        judge_params = SamplingParams(
            temperature=0.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=judge.max_new_tokens
        )
        with build_engine(judge.backend, judge.model, **judge.engine_kwargs) as judge_engine:
            j = Judge(judge_engine, judge.model, rubric_for(benchmark), cache, judge.max_attempts, judge_params,
                      max_response_chars=judge.max_response_chars)  # fmt: skip
            scored = judge_and_summarize(scored, benchmark, j, summary)
    summary["generation"] = {
        "backend": backend,
        "model": model,
        "adapter": adapter_dir,
        "merged_model": str(merged) if merged else None,
        "params": asdict(params),
        "prompts": len(rows),
        "outputs": len(responses),
        "generation_errors": sum(r["generation_error"] is not None for r in responses),
        "seconds": round(gen_seconds, 2),
    }
    write_outputs(out, scored, summary, f"{benchmark}: {Path(model).name}{' + adapter' if adapter_dir else ''}")
    log.info("wrote %s (n=%d, overall score %s)", out, summary["n"], summary["overall"]["score"])
    return summary
