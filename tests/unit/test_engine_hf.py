"""The hf engine on a tiny random model: batching, seeds, stops, prefixes, finish reasons, adapters."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from selflen.engines import Request, SamplingParams, build_engine
from selflen.engines.base import LOOP, ends_in_loop
from selflen.engines.hf import LoopStop
from selflen.engines.openai import OpenAIEngine

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def engine(tiny_model: Path):
    with build_engine("hf", str(tiny_model), batch_size=4) as eng:
        yield eng


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_results_in_order_with_n_samples(engine) -> None:
    reqs = [Request(chat(f"topic {i} " * (i + 1)), SamplingParams(max_new_tokens=8, seed=i, n=2)) for i in range(5)]
    results = engine.generate(reqs)
    assert len(results) == 5 and all(len(r.outputs) == 2 for r in results)
    assert all(o.tokens <= 8 and o.finish_reason in ("stop", "length") for r in results for o in r.outputs)
    assert results[0].prompt_tokens < results[4].prompt_tokens


def test_sampling_depends_on_the_seed_not_the_batch(engine) -> None:
    reqs = [
        Request(chat(f"write about {w}"), SamplingParams(max_new_tokens=12, seed=7 + i))
        for i, w in enumerate(["tea", "rivers", "a long road home", "x"])
    ]
    together = [r.text for r in engine.generate(reqs)]
    alone = [engine.generate([r])[0].text for r in reqs]
    assert together == alone
    other_seed = engine.generate([Request(reqs[0].messages, reqs[0].params.with_(seed=999))])[0].text
    assert other_seed != together[0]


def test_greedy_is_deterministic_and_length_reason(engine) -> None:
    req = Request(chat("hello"), SamplingParams(temperature=0.0, max_new_tokens=6, repetition_penalty=1.0))
    a, b = engine.generate([req, req])
    assert a.text == b.text
    out = a.outputs[0]
    assert out.finish_reason in ("stop", "length")
    assert (out.finish_reason == "length") == (out.tokens == 6)  # "length" exactly when the budget was used up


def test_stop_strings_cut_the_text(engine) -> None:
    free = engine.generate([Request(chat("story"), SamplingParams(max_new_tokens=24, seed=3))])[0].text
    assert len(free) > 4
    stop = free[2:4]
    cut = engine.generate([Request(chat("story"), SamplingParams(max_new_tokens=24, seed=3, stop=(stop,)))])[0]
    assert stop not in cut.text and free.startswith(cut.text)
    assert cut.outputs[0].finish_reason == "stop"


def test_loop_stop_ends_only_the_looping_rows_with_the_guard_on() -> None:
    prompt = [5, 6, 7]
    unit = list(range(20, 20 + LOOP.min_pattern))
    looping = prompt + [1, 2] + unit * LOOP.count
    varied = prompt + list(range(100, 100 + 2 + LOOP.min_pattern * LOOP.count))
    ids = torch.tensor([looping, varied, looping])
    stop = LoopStop([True, True, False], prompt_len=len(prompt))
    assert stop(ids, None).tolist() == [True, False, False]  # the third row loops but asked for no guard
    assert not stop(ids[:, :-1], None).any()  # one token earlier the third copy is not complete


def test_a_row_ended_by_the_guard_finishes_as_loop(engine) -> None:
    words = engine.tokenizer(" river stone", add_special_tokens=False)["input_ids"]
    unit = (words * LOOP.min_pattern)[:LOOP.min_pattern]
    pad = engine.tokenizer.pad_token_id
    tokens = unit * LOOP.count + [pad] * 5  # what generate returns for a row stopped early: padded to the batch
    done = engine._completion(tokens, 100, (), stop_loops=True)
    assert done.finish_reason == "loop" and done.tokens == LOOP.min_pattern * LOOP.count
    assert done.text == engine.tokenizer.decode(unit * LOOP.count, skip_special_tokens=True)
    assert engine._completion(tokens, 100, ()).finish_reason == "stop"  # without the guard: an ordinary end


def test_loop_rule_matches_vllm_repetition_detection() -> None:
    sched = pytest.importorskip("vllm.v1.core.sched.utils", reason="vllm not installed: nothing to compare with")
    from vllm.sampling_params import RepetitionDetectionParams

    params = RepetitionDetectionParams(max_pattern_size=LOOP.max_pattern, min_pattern_size=LOOP.min_pattern,
                                       min_count=LOOP.count)
    rng = random.Random(0)
    cases = 0
    for _ in range(400):
        head = [rng.randrange(50) for _ in range(rng.randrange(0, 40))]
        unit = [rng.randrange(5) for _ in range(rng.randrange(1, 20))]
        tokens = head + unit * rng.randrange(1, 5) + [rng.randrange(5) for _ in range(rng.randrange(0, 3))]
        ours = ends_in_loop(tokens)
        assert ours == sched.check_sequence_repetition(tokens, params), tokens
        cases += ours
    assert 20 < cases < 380  # both outcomes were exercised


def test_prefix_is_continued_not_repeated(engine) -> None:
    params = SamplingParams(temperature=0.0, max_new_tokens=5, repetition_penalty=1.0)
    with_prefix = engine.render(Request(chat("q"), params, prefix="The answer"))
    without = engine.render(Request(chat("q"), params))
    assert with_prefix[: len(without)] == without and len(with_prefix) > len(without)


def test_adapter_changes_output_and_base_stays(engine, perturbed_adapter: Path) -> None:
    params = SamplingParams(temperature=0.0, max_new_tokens=10, repetition_penalty=1.0)
    base_before = engine.generate([Request(chat("tell me"), params)])[0].text
    engine.add_adapter("p", str(perturbed_adapter))
    with_adapter, base_after = engine.generate(
        [Request(chat("tell me"), params, adapter="p"), Request(chat("tell me"), params)]
    )
    assert with_adapter.text != base_before
    assert base_after.text == base_before
    with pytest.raises(KeyError, match="never added"):
        engine.generate([Request(chat("x"), params, adapter="missing")])


def test_openai_engine_counts_errors_and_stops_when_the_server_is_down() -> None:
    from selflen.errors import EngineUnavailable

    eng = OpenAIEngine("m", base_url="http://127.0.0.1:9/v1", max_retries=1, backoff_s=0.01, timeout_s=2)
    with pytest.raises(EngineUnavailable, match="answered none of 1 requests after 1 retries"):
        eng.generate([Request(chat("x"), SamplingParams(max_new_tokens=4, n=2))])
    assert eng.stats["errors"] == 1 and eng.stats["retries"] == 1 and eng.stats["transport_errors"] == 1
    res, down = eng._call(Request(chat("x"), SamplingParams(max_new_tokens=4, n=2)))  # one request: an error result
    assert down and not res.ok and len(res.outputs) == 2 and res.outputs[0].finish_reason == "error"
    eng.close()


def test_row_sampler_draws_from_the_filtered_softmax() -> None:
    import torch

    from selflen.engines.hf import RowSampler

    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    n = 20000
    ids = torch.zeros((n, 3), dtype=torch.long)

    def draw(**kw: float) -> torch.Tensor:
        params = [SamplingParams(repetition_penalty=1.0, **kw)] * n
        out = RowSampler(params, list(range(n)), torch.device("cpu"), prompt_width=2)(ids, logits.repeat(n, 1))
        return torch.bincount(out.argmax(-1), minlength=4).float() / n

    free = draw(temperature=1.0, top_k=0, top_p=1.0)
    assert torch.allclose(free, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.015)
    top2 = draw(temperature=1.0, top_k=2, top_p=1.0)
    assert top2[2:].sum() == 0 and abs(float(top2[0]) - 0.625) < 0.015
    nucleus = draw(temperature=1.0, top_k=0, top_p=0.7)  # keeps 0.5 and 0.3 (the token crossing p)
    assert nucleus[2:].sum() == 0 and abs(float(nucleus[0]) - 0.625) < 0.015
    greedy = draw(temperature=0.0)
    assert greedy[0] == 1.0


def test_top_k_fast_path_draws_the_same_tokens_as_the_full_vocabulary_path() -> None:
    import torch

    from selflen.engines.hf import RowSampler

    torch.manual_seed(0)
    scores = torch.randn(64, 300) * 3
    ids = torch.randint(0, 300, (64, 5))
    params = [SamplingParams(temperature=0.8, top_k=12, top_p=0.9, repetition_penalty=1.1)] * 64
    fast = RowSampler(params, list(range(64)), torch.device("cpu"), prompt_width=3)
    slow = RowSampler(params, list(range(64)), torch.device("cpu"), prompt_width=3)
    slow.all_top_k = False
    assert fast.all_top_k
    assert torch.equal(fast(ids, scores.clone()).argmax(-1), slow(ids, scores.clone()).argmax(-1))


def test_row_sampler_holds_eos_per_row_until_its_min_new_tokens() -> None:
    from selflen.engines.hf import RowSampler

    logits = torch.log(torch.tensor([[0.7, 0.1, 0.1, 0.1]] * 3))  # token 0 (the EOS here) is the likeliest
    params = [SamplingParams(temperature=0.0, repetition_penalty=1.0, min_new_tokens=m) for m in (0, 2, 5)]
    sampler = RowSampler(params, [0, 1, 2], torch.device("cpu"), prompt_width=2, eos_ids=[0])

    def picks(new_tokens: int) -> list[int]:  # greedy picks after ``new_tokens`` generated tokens
        return sampler(torch.ones((3, 2 + new_tokens), dtype=torch.long), logits).argmax(-1).tolist()

    assert picks(0) == [0, 1, 1]  # row 0 may end at once; rows 1 and 2 are held
    assert picks(2) == [0, 0, 1]  # row 1 has its 2 tokens
    assert picks(5) == [0, 0, 0]
    sampled = RowSampler([p.with_(temperature=1.0) for p in params] * 100, list(range(300)), torch.device("cpu"),
                         prompt_width=2, eos_ids=[0])(torch.ones((300, 3), dtype=torch.long), logits.repeat(100, 1))
    chosen = sampled.argmax(-1).view(100, 3)
    assert (chosen[:, 1:] != 0).all() and (chosen[:, 0] == 0).any()  # sampled rows too: never EOS while held


def test_stream_yields_each_request_as_its_batch_ends_and_a_stop_keeps_the_batches_done(engine) -> None:
    from selflen.errors import Interrupted, clear_stop, request_stop

    reqs = [Request(chat(f"topic {i} " * (i + 1)), SamplingParams(max_new_tokens=6, seed=i)) for i in range(6)]
    streamed = dict(engine.stream(reqs))
    assert sorted(streamed) == list(range(6))
    assert [streamed[i].text for i in range(6)] == [r.text for r in engine.generate(reqs)]

    got = []
    try:
        with pytest.raises(Interrupted):
            for i, _ in engine.stream(reqs):
                got.append(i)
                request_stop(15)  # SIGTERM during the first batch of 4: its results still come out
    finally:
        clear_stop()
    assert sorted(got) == [0, 1, 2, 3] and streamed[0].text == engine.generate(reqs[:1])[0].text
