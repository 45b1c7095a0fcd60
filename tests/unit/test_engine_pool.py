"""Engine pool policy (one vLLM engine alive, release before training) and the data-parallel sharding, on fakes."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from selflen.engines import (
    Engine,
    EngineMemoryNotFreed,
    EnginePool,
    Request,
    Result,
    SamplingParams,
    wait_for_free_gpu_memory,
)
from selflen.engines.vllm_dp import replica_envs, request_cost, shard, split_evenly, unshard


class FakeEngine(Engine):
    def __init__(self, folder: Path, exclusive: bool, can_sleep: bool = False, util: float = 0.85) -> None:
        self.folder, self.exclusive, self.can_sleep, self.gpu_memory_utilization = folder, exclusive, can_sleep, util
        self.closed, self.sleeps, self._adapters = 0, 0, {}

    def generate(self, requests: Sequence[Request], desc: str | None = None) -> list[Result]:
        return []

    def add_adapter(self, name: str, path: str) -> None:
        self._adapters[name] = path

    def sleep(self) -> None:
        self.sleeps += 1

    def close(self) -> None:
        self.closed += 1


def _pool(tmp_path: Path, exclusive: bool, can_sleep: bool = False) -> tuple[EnginePool, list[FakeEngine]]:
    built: list[FakeEngine] = []

    def build(folder: Path) -> FakeEngine:
        built.append(FakeEngine(folder, exclusive, can_sleep))
        return built[-1]

    return EnginePool(tmp_path / "base", build), built


def _full_model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def test_the_pool_keeps_one_vllm_engine_alive(tmp_path: Path) -> None:
    pool, built = _pool(tmp_path, exclusive=True)
    gen, ext = _full_model(tmp_path / "gen" / "model"), _full_model(tmp_path / "ext" / "model")
    pool.for_folder(None, "base")
    pool.for_folder(gen, "gen1")
    assert [e.closed for e in built] == [1, 0]  # the base engine closed before the Generator's started
    pool.for_folder(ext, "ext1")
    pool.for_folder(ext, "ext1")  # the same folder: the same engine
    assert [e.closed for e in built] == [1, 1, 0] and len(built) == 3
    pool.close()
    assert [e.closed for e in built] == [1, 1, 1]


def test_hf_engines_may_coexist(tmp_path: Path) -> None:
    pool, built = _pool(tmp_path, exclusive=False)
    pool.for_folder(None, "base")
    pool.for_folder(_full_model(tmp_path / "gen" / "model"), "gen1")
    assert [e.closed for e in built] == [0, 0]
    pool.close()
    assert [e.closed for e in built] == [1, 1]


def test_release_closes_engines_that_cannot_sleep_and_keeps_sleeping_ones(tmp_path: Path) -> None:
    pool, built = _pool(tmp_path, exclusive=True)
    pool.engine()
    pool.release()  # CPU here: closed, and no CUDA call is made
    assert built[0].closed == 1 and built[0].sleeps == 0
    pool.engine()
    assert len(built) == 2  # started again on next use

    pool, built = _pool(tmp_path, exclusive=True, can_sleep=True)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(b"x")
    pool.for_folder(adapter, "gen1")
    pool.release()
    assert built[0].sleeps == 1 and built[0].closed == 0
    assert pool.for_folder(adapter, "gen1").has_adapter("gen1")  # same engine, adapters kept, nothing rebuilt
    assert len(built) == 1


def test_a_merging_pool_serves_each_adapter_as_a_model_of_its_own(tmp_path: Path) -> None:
    built: list[FakeEngine] = []
    merges: list[tuple[Path, str]] = []

    def merge(adapter: Path, label: str) -> Path:
        merges.append((adapter, label))
        folder = tmp_path / "merged" / f"{label}-1"
        return folder if folder.exists() else _full_model(folder)

    def build(folder: Path) -> FakeEngine:
        built.append(FakeEngine(folder, exclusive=True))
        return built[-1]

    pool = EnginePool(tmp_path / "base", build, tag="t", merge=merge)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(b"x")
    pool.for_folder(None, "base")
    pool.for_folder(adapter, "gen1")
    pool.for_folder(adapter, "gen1")  # asked again (a resumed stage): the same copy, the same engine
    assert merges == [(adapter, "gen1"), (adapter, "gen1")]
    assert [e.folder for e in built] == [tmp_path / "base", tmp_path / "merged" / "gen1-1"]
    assert built[0].closed == 1 and built[1].closed == 0  # one vLLM engine alive at a time
    assert not built[0]._adapters and not built[1]._adapters  # nothing served through per-request adapters
    assert pool.served == ["base", "t-gen1 (merged)", "t-gen1 (merged)"]


class FakeCuda:
    """``torch.cuda`` with one device whose free memory follows a script."""

    def __init__(self, free: list[float]) -> None:
        self.free = free

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1

    def mem_get_info(self, i: int) -> tuple[int, int]:
        value = self.free.pop(0) if len(self.free) > 1 else self.free[0]
        return int(value * 2**30), 100 * 2**30


def test_release_on_cuda_waits_for_the_memory_then_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch, "cuda", FakeCuda([10, 50, 90]))
    wait_for_free_gpu_memory(0.85, timeout_s=5, asleep=False, poll_s=0.0)  # freed on the third look

    monkeypatch.setattr(torch, "cuda", FakeCuda([10]))
    with pytest.raises(EngineMemoryNotFreed, match=r"cuda:0 10.0 of 100.0 GiB free.*backend.single_process=false"):
        wait_for_free_gpu_memory(0.85, timeout_s=0, asleep=False, poll_s=0.0)
    with pytest.raises(EngineMemoryNotFreed, match="backend.sleep_mode=false"):
        wait_for_free_gpu_memory(0.85, timeout_s=0, asleep=True, poll_s=0.0)


# ---------------------------------------------------------------- sharding across replicas
def test_shard_keeps_every_request_once_balanced_and_in_order() -> None:
    rng = random.Random(0)
    costs = [rng.randint(1, 500) for _ in range(101)]
    for parts in (1, 2, 3, 8):
        out = shard(costs, parts)
        assert sorted(i for p in out for i in p) == list(range(len(costs)))
        assert all(p == sorted(p) for p in out)
        loads = [sum(costs[i] for i in p) for p in out]
        assert max(loads) - min(loads) <= max(costs)  # greedy longest-first: within one request of even
    assert shard([], 3) == [[], [], []]
    assert shard([7], 3) == [[0], [], []]


def test_unshard_restores_the_original_order() -> None:
    costs = [3, 9, 1, 4, 4, 2]
    parts = shard(costs, 3)
    values = [[f"r{i}" for i in p] for p in parts]
    assert unshard(parts, values, len(costs)) == [f"r{i}" for i in range(len(costs))]
    with pytest.raises(RuntimeError, match="answered 0 of"):
        unshard(parts, [[], *values[1:]], len(costs))


def test_request_cost_counts_samples_and_budget() -> None:
    short = Request([{"role": "user", "content": "hi"}], SamplingParams(max_new_tokens=100))
    two = Request([{"role": "user", "content": "hi"}], SamplingParams(max_new_tokens=100, n=2))
    long = Request([{"role": "user", "content": "x" * 4000}], SamplingParams(max_new_tokens=100))
    assert request_cost(short) < request_cost(long) and request_cost(two) > request_cost(short)


def test_replica_envs_slice_gpus_and_cores() -> None:
    assert replica_envs(2, 2, ["0", "1", "2", "3", "4"], []) == [
        {"CUDA_VISIBLE_DEVICES": "0,1"},
        {"CUDA_VISIBLE_DEVICES": "2,3"},
    ]
    with pytest.raises(ValueError, match=r"data_parallel_size=3 x backend.tensor_parallel_size=2 needs 6 GPUs"):
        replica_envs(3, 2, ["0", "1", "2", "3"], [])
    cpu = replica_envs(2, 2, [], list(range(9)))
    assert [e["VLLM_CPU_OMP_THREADS_BIND"] for e in cpu] == ["0,1,2|3,4", "5,6|7,8"]
    assert [e["SELFLEN_REPLICA_CORES"] for e in cpu] == ["0,1,2,3,4", "5,6,7,8"]
    with pytest.raises(ValueError, match="needs 3 CPU cores"):
        replica_envs(3, 1, [], [0, 1])
    assert split_evenly([1, 2, 3], 3) == [[1], [2], [3]]


def test_build_engine_routes_replicas_and_keeps_the_in_process_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import selflen.engines.vllm as single
    import selflen.engines.vllm_dp as dp
    from selflen.config import BackendConfig, ModelConfig
    from selflen.engines import engine_from_config

    made = []
    monkeypatch.setattr(single, "VLLMEngine", lambda model, **kw: made.append(("one", kw)))
    monkeypatch.setattr(dp, "DataParallelVLLM", lambda model, **kw: made.append(("dp", kw)))
    engine_from_config(BackendConfig(name="vllm"), ModelConfig(), Path("m"))
    engine_from_config(BackendConfig(name="vllm", data_parallel_size=2, sleep_mode=True), ModelConfig(), Path("m"))
    (kind1, kw1), (kind2, kw2) = made
    assert kind1 == "one" and "data_parallel_size" not in kw1 and kw1["sleep_mode"] is False
    assert kind2 == "dp" and kw2["data_parallel_size"] == 2 and kw2["sleep_mode"] is True
