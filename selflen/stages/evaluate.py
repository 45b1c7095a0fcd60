"""In-loop evaluation: the iteration's Generator answers a configured benchmark slice; responses are scored
with the benchmark's own counter and formulas (``evaluation``), logged as ``eval/*`` with a scatter plot.

This is the one place where ``selflen`` imports ``evaluation``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from evaluation.api import log_metrics, scatter_plot, score_rows
from evaluation.benchmarks import load_benchmark, slice_rows
from evaluation.runner import generate_responses
from selflen.engines.base import SamplingParams
from selflen.store import write_json, write_jsonl

if TYPE_CHECKING:
    from selflen.pipeline import Loop

log = logging.getLogger(__name__)


def run_for_iteration(loop: Loop, k: int, rel: str | None = None, adapter_dir: Path | None = None) -> None:
    """Evaluate the Generator of iteration ``k`` (what ``finetune_gen`` produced, or ``adapter_dir``): a LoRA
    adapter is served on the base model's engine, a fully fine-tuned model folder gets an engine of its own."""
    cfg = loop.cfg.eval
    rel = rel or f"iter_{k}/evaluate"
    adapter_dir = adapter_dir or loop.trained("gen", k) or loop.run_dir / f"iter_{k}" / "finetune_gen" / "adapter"
    data_dir = Path(loop.cfg.paths.data_dir).expanduser() if loop.cfg.paths.data_dir else None
    try:
        rows = load_benchmark(cfg.benchmark, data_dir=data_dir, online=loop.cfg.online)
    except FileNotFoundError as err:
        log.warning("evaluation skipped: %s", str(err).splitlines()[0])
        return
    rows = slice_rows(rows, language=cfg.languages or None, n_per_cell=cfg.n_per_cell, seed=loop.cfg.seed)
    params = SamplingParams(
        temperature=cfg.temperature,
        top_p=1.0,
        top_k=0,
        repetition_penalty=1.1,
        max_new_tokens=cfg.max_new_tokens,
        seed=loop.cfg.seed,
    )
    settings = {
        "benchmark": cfg.benchmark,
        "languages": cfg.languages,
        "n_per_cell": cfg.n_per_cell,
        "max_new_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "adapter": str(adapter_dir),
        "n_rows": len(rows),
    }

    def body(st) -> dict:  # noqa: ANN001
        name, engine = None, loop.engine()
        if (adapter_dir / "adapter_config.json").exists():
            name = f"eval_{rel.replace('/', '_')}"
            engine.add_adapter(name, str(adapter_dir))
        elif (adapter_dir / "config.json").exists():
            engine = loop.engine(adapter_dir)
        responses = generate_responses(engine, rows, cfg.benchmark, params, adapter=name)
        scored, summary = score_rows(responses, cfg.benchmark)
        write_jsonl(st.dir / "scored.jsonl", scored)
        write_json(st.dir / "summary.json", summary)
        plot = scatter_plot(scored, st.dir / "scatter.png", title=f"{rel}: required vs produced words")
        loop.logger.log_image(f"plots/{rel.replace('/', '_')}_scatter", plot)
        metrics = log_metrics(summary, "eval")
        return {"counts": {"rows": len(scored)}, "metrics": metrics, "summary": summary}

    loop.run_stage(rel, settings, body, k)
