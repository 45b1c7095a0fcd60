"""Fine-tuning one role: LoRA changes only the adapter, loss only on answers, over-long rows dropped and counted."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from selflen.trainer import to_prompt_completion, train
from tests.defaults import group

pytestmark = pytest.mark.unit
FAST = group("finetune", epochs=2, batch_size=2, learning_rate=5e-3, save_steps=1000, logging_steps=1, max_length=256)


def _data(path: Path, n: int = 6, long_rows: int = 0) -> Path:
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"Write about topic {i}."},
                                         {"role": "assistant", "content": "A long answer. " * (3 + i)}]}
            for i in range(n)]
    rows += [{"id": f"long{i}", "messages": [{"role": "user", "content": "x"},
                                             {"role": "assistant", "content": "word " * 2000}]}
             for i in range(long_rows)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.glob("*.safetensors")))).hexdigest()


def _lora_b(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(str(folder / "adapter_model.safetensors")).items() if "lora_B" in k}


def test_prompt_completion_split_rejects_rows_without_an_answer() -> None:
    with pytest.raises(ValueError, match="row bad"):
        to_prompt_completion([{"id": "bad", "messages": [{"role": "user", "content": "q"}]}])


def test_lora_trains_adapter_and_leaves_base_untouched(tiny_model: Path, tmp_path: Path) -> None:
    base_before = _digest(tiny_model)
    stats = train(tiny_model, _data(tmp_path / "d.jsonl", long_rows=2), tmp_path / "adapter", FAST)
    assert stats["trained"] and stats["dropped_too_long"] == 2 and stats["examples"] == 8
    assert stats["max_length"] <= FAST.max_length and stats["steps"] == 6
    assert _digest(tiny_model) == base_before  # base weights unchanged
    b = _lora_b(tmp_path / "adapter")
    assert b and any(float(t.abs().max()) > 0 for t in b.values())  # LoRA B starts at zero: it was trained
    assert not (tmp_path / "adapter.checkpoints").exists()


def test_continue_lineage_starts_from_the_previous_adapter(tiny_model: Path, tmp_path: Path) -> None:
    data = _data(tmp_path / "d.jsonl")
    first = tmp_path / "a1"
    train(tiny_model, data, first, FAST)
    second = tmp_path / "a2"
    stats = train(tiny_model, data, second, FAST, init_adapter=first)
    assert stats["trained"]
    b1, b2 = _lora_b(first), _lora_b(second)
    assert b1.keys() == b2.keys()
    assert any(not (b1[k] == b2[k]).all() for k in b1)  # trained further, from a non-zero start
    fresh = _lora_b(tmp_path / "fresh") if train(tiny_model, data, tmp_path / "fresh", FAST)["trained"] else {}
    assert any(not (fresh[k] == b2[k]).all() for k in fresh)


def test_all_rows_too_long_trains_nothing(tiny_model: Path, tmp_path: Path) -> None:
    stats = train(tiny_model, _data(tmp_path / "d.jsonl", n=0, long_rows=2), tmp_path / "adapter", FAST)
    assert stats == {"examples": 2, "dropped_too_long": 2, "trained": False}
    assert not (tmp_path / "adapter").exists()


def test_bucketed_batches_are_length_buckets_in_shuffled_order() -> None:
    from selflen.trainer import bucketed_order

    lengths = [50, 3, 700, 12, 9, 400, 8, 60]
    order = bucketed_order(lengths, batch=2, seed=1, epoch=0)
    assert sorted(order) == list(range(8))
    batches = [sorted(order[i : i + 2]) for i in range(0, 8, 2)]
    by_length = sorted(range(8), key=lambda i: lengths[i])
    assert sorted(batches) == sorted(sorted(by_length[i : i + 2]) for i in range(0, 8, 2))
    assert bucketed_order(lengths, 2, 1, 0) == order and bucketed_order(lengths, 2, 1, 1) != order


def test_bucketed_remainder_stays_last_so_batches_stay_buckets() -> None:
    from selflen.trainer import bucketed_order

    lengths = [3, 90, 5, 40, 7, 60, 1]  # 7 rows, batch 2: one short remainder batch
    order = bucketed_order(lengths, batch=2, seed=3, epoch=0)
    by_length = sorted(range(7), key=lambda i: lengths[i])
    buckets = {frozenset(by_length[i : i + 2]) for i in range(0, 6, 2)}
    assert {frozenset(order[i : i + 2]) for i in range(0, 6, 2)} == buckets
    assert order[-1] == by_length[-1]


def test_stop_request_mid_training_saves_a_checkpoint_and_the_next_run_resumes(tiny_model: Path,
                                                                               tmp_path: Path) -> None:
    import signal

    from selflen import errors

    data = _data(tmp_path / "d.jsonl")

    def stop_at_step_2(m: dict) -> None:
        if m["step"] == 2:
            errors.request_stop(signal.SIGTERM)  # what the SIGTERM handler does

    try:
        with pytest.raises(errors.Interrupted):
            train(tiny_model, data, tmp_path / "adapter", FAST, on_log=stop_at_step_2)
    finally:
        errors.clear_stop()
    assert not (tmp_path / "adapter").exists()  # no half-trained adapter
    ckpts = [p.name for p in (tmp_path / "adapter.checkpoints").glob("checkpoint-*")]
    assert ckpts == ["checkpoint-3"]  # logs of step 2 come after its step end: the stop lands after step 3 of 6
    stats = train(tiny_model, data, tmp_path / "adapter", FAST)
    assert stats["resumed"] and stats["steps"] == 6 and (tmp_path / "adapter" / "adapter_config.json").exists()
