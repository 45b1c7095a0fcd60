"""Fine-tuning launched by accelerate on CPU (gloo): two processes train what one process trains with the same
global batch, a trainer that outlives its killed run checkpoints and the next run resumes from it, and the stage
leaves the same records, drops and metrics as the in-process path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from selflen.groups import FinetuneConfig
from selflen.launch import LaunchSettings, TrainJob, run_job
from selflen.stages import finetune
from selflen.store import RunLayout, Stage
from tests.defaults import group

pytestmark = pytest.mark.integration
ONE = LaunchSettings(name="inprocess", launcher="inprocess")
TWO = LaunchSettings(name="ddp", num_processes=2, accelerate={"distributed_type": "MULTI_GPU"})
TRAIN = group("finetune", epochs=3, batch_size=4, learning_rate=5e-3, save_steps=1000, logging_steps=1, max_length=256)
LOSS_RTOL = 1e-4  # measured: the 2-process losses equal the 1-process ones to ~1e-7 (float32 reduction order)


def _data(path: Path, n: int = 8) -> Path:
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"Write about topic {i}."},
                                         {"role": "assistant", "content": "A long answer. " * (3 + 2 * i)}]}
            for i in range(n)]
    rows.append({"id": "long", "messages": [{"role": "user", "content": "x"},
                                            {"role": "assistant", "content": "word " * 600}]})  # dropped: too long
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run_stage(root: Path, name: str, model: Path, data: Path, launch: LaunchSettings, train: FinetuneConfig):
    logs: list[dict] = []
    st = Stage(root / name, name, "hash")
    s = finetune.FinetuneSettings(role="gen", finetune=train, seed=0, dtype="float32", processes=launch.num_processes)
    res = finetune.run(st, finetune.FinetuneInputs(data, model, RunLayout(root), logs.append, launch=launch), s)
    st.finish(res.counts, res.drops, {"metrics": res.metrics})
    return res, [m["loss"] for m in logs if "loss" in m], st.dir / "adapter"


def _tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def _assert_same_adapter(a: Path, b: Path, atol: float = 1e-5) -> None:
    import torch

    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.allclose(ta[key], tb[key], atol=atol), key


def test_two_gloo_processes_train_what_one_process_trains(tiny_model: Path, tmp_path: Path) -> None:
    data = _data(tmp_path / "sft.jsonl")
    one, one_losses, one_adapter = _run_stage(tmp_path, "one", tiny_model, data, ONE, TRAIN)
    two, two_losses, two_adapter = _run_stage(tmp_path, "two", tiny_model, data, TWO, replace(TRAIN, batch_size=2))
    assert one.counts == two.counts == {"examples": 9, "dropped_too_long": 1}
    assert one.drops == two.drops == {"too_long": 1}
    assert one.metrics.keys() == two.metrics.keys() == {"train/gen/final_loss"}
    assert len(one_losses) == len(two_losses) == 6  # 8 examples / global batch 4 x 3 epochs (1 warmup step)
    assert two_losses == pytest.approx(one_losses, rel=LOSS_RTOL)
    assert two.extra["train"]["steps"] == one.extra["train"]["steps"] == 6
    _assert_same_adapter(one_adapter, two_adapter)
    assert not (tmp_path / "two" / "adapter.checkpoints").exists()  # removed once the adapter is saved
    assert (tmp_path / "two" / "launch" / "trainer.log").exists()


def test_the_shipped_fsdp_launch_trains_what_one_process_trains(tiny_model: Path, tmp_path: Path) -> None:
    """conf/launch/fsdp.yaml as shipped (FSDP2, full state dict), on 2 gloo processes instead of 8 GPUs."""
    import yaml

    from selflen.config import CONF_DIR

    shipped = yaml.safe_load((CONF_DIR / "launch" / "fsdp.yaml").read_text())
    fsdp = LaunchSettings(name="fsdp", num_processes=2, accelerate=shipped["accelerate"])
    data = _data(tmp_path / "sft.jsonl")
    one, one_losses, one_adapter = _run_stage(tmp_path, "one", tiny_model, data, ONE, TRAIN)
    two, two_losses, two_adapter = _run_stage(tmp_path, "fsdp", tiny_model, data, fsdp, replace(TRAIN, batch_size=2))
    assert (one.counts, one.drops) == (two.counts, two.drops)
    assert two_losses == pytest.approx(one_losses, rel=LOSS_RTOL)
    _assert_same_adapter(one_adapter, two_adapter)  # gathered into one ordinary adapter folder


PARENT = """
import json, sys
from selflen.launch import LaunchSettings, TrainJob, run_job
job, launch = json.loads(open(sys.argv[1]).read())
run_job(TrainJob(**job), __import__("pathlib").Path(sys.argv[2]), LaunchSettings(**launch))
"""


def test_a_trainer_outliving_its_killed_run_checkpoints_and_the_next_run_resumes(tiny_model: Path,
                                                                                tmp_path: Path) -> None:
    data = _data(tmp_path / "sft.jsonl")
    train = replace(TRAIN, epochs=20, batch_size=2, save_steps=1)  # 40 steps of global batch 4, a checkpoint each
    out = tmp_path / "stage" / "adapter"
    job = TrainJob(model_dir=str(tiny_model), data=str(data), out_dir=str(out), settings=asdict(train))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps([asdict(job), asdict(TWO)]))
    # the run: its own process group, SIGKILLed as a whole (the trainer runs in a session of its own and survives)
    run = subprocess.Popen([sys.executable, "-c", PARENT, str(spec), str(tmp_path / "stage" / "launch")],
                           start_new_session=True, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    ckpts = out.parent / "adapter.checkpoints"
    deadline = time.time() + 300
    while not any(ckpts.glob("checkpoint-3")):
        assert run.poll() is None, "the run ended before its third checkpoint"
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    stats = run_job(job, tmp_path / "stage" / "launch", TWO)  # waits for the orphan's checkpoint, then resumes
    assert stats["resumed"] and stats["steps"] == 40
    assert (tmp_path / "stage" / "launch" / "result.json").exists()
    assert "is gone: checkpointing and stopping" in (tmp_path / "stage" / "launch" / "trainer.log").read_text()
    # the resumed adapter is the uninterrupted one (optimizer, schedule and data order restored)
    _, _, clean = _run_stage(tmp_path, "clean", tiny_model, data, ONE, replace(train, batch_size=4))
    _assert_same_adapter(out, clean, atol=1e-4)
