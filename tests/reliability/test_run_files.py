"""Class 1 of issue 33: every kind of file in a finished run folder, torn, garbage, empty, truncated or deleted.

A damage the run cannot repair by itself stops it with one line naming the file and ``redo=[iter_<k>/<stage>]``,
leaves the file as it is (a finished stage is never truncated), and that redo really recomputes the stage; a damage
it can repair (a deleted ``done.json``, marker or round state) resumes to the same records. A trained folder that
``done.json`` declares is whole or the run stops: it never falls back to the base model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from selflen.stages import extend
from selflen.store import RunLayout, Stage, StoreError
from tests.reliability.cases import REDO, RUN_FILES

pytestmark = pytest.mark.unit
RECORDS = [{"id": f"k1-i{i}-s0", "status": "ok", "reason": None, "response": f"answer {i}.", "drops": {}}
           for i in range(3)]
FILE_PARAMS = [pytest.param(path, damage, outcome, id=f"{path.split(' ')[0]}:{damage}")
               for path, damages in RUN_FILES.items() for damage, outcome in damages.items()]


def _safetensors(path: Path, floats: int = 16) -> None:
    """A small, valid safetensors file (header length, JSON header, float32 data) written by hand."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [floats], "data_offsets": [0, 4 * floats]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * (4 * floats))


def _finish(stage: Stage, records: list[dict], extra: dict | None = None) -> None:
    for r in records:
        stage.append(r)
    stage.finish({"records": len(records)}, extra=extra)


def finished_run(root: Path, method: str = "lora") -> RunLayout:
    """A run folder with a finished generate, sft_data, evaluate and finetune_gen stage and an unfinished extend."""
    lay = RunLayout(root)
    _finish(Stage(lay.stage(1, "generate"), "iter_1/generate", "h-gen"), RECORDS)
    sft = Stage(lay.stage(1, "sft_data"), "iter_1/sft_data", "h-sft")
    (sft.dir / "gen.jsonl").write_text("".join(json.dumps({"messages": [r["id"]]}) + "\n" for r in RECORDS))
    _finish(sft, [])
    ev = Stage(lay.stage(1, "evaluate"), "iter_1/evaluate", "h-eval")
    (ev.dir / "summary.json").write_text(json.dumps({"n": 3, "overall": {"score": 50.0}}))
    _finish(ev, [])
    ft = Stage(lay.finetune_dir("gen", 1), "iter_1/finetune_gen", "h-ft")
    out = ft.dir / ("adapter" if method == "lora" else "model")
    out.mkdir()
    (out / ("adapter_config.json" if method == "lora" else "config.json")).write_text(json.dumps({"r": 8}))
    _safetensors(out / ("adapter_model.safetensors" if method == "lora" else "model.safetensors"))
    _finish(ft, [], {"train": {"examples": 3}, "settings": {"finetune": {"method": method}}})
    ext = Stage(lay.stage(1, "extend"), "iter_1/extend", "h-ext")
    ext.append({"id": "k1-i0-s0-e0", "status": "ok", "reason": None, "drops": {}})
    ext.close()
    (ext.dir / extend.STATE_FILE).write_text(json.dumps({"retry": 0, "round": 0, "items": {}}))
    return lay


def damage(path: Path, how: str) -> None:
    if how == "deleted":
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        return
    data = path.read_bytes()
    new = {"torn": data[: max(1, len(data) - 3)], "garbage": data + b"\x00{garbage", "empty": b"",
           "truncated": data[: len(data) // 2]}[how]
    path.write_bytes(new)


def reopen(lay: RunLayout, rel: str, redo: bool = False) -> object:
    """What the run does with the damaged file: open its stage (and, for a trained folder, look it up)."""
    point, name = rel.split("/")[:2]
    k = int(point.removeprefix("iter_"))
    hashes = {"generate": "h-gen", "sft_data": "h-sft", "evaluate": "h-eval", "finetune_gen": "h-ft",
              "extend": "h-ext"}
    st = Stage(lay.stage(k, name), f"{point}/{name}", hashes[name], redo=redo)
    if name == "finetune_gen" and not redo:
        return lay.trained("gen", k)
    if name == "extend" and not redo:
        return extend._restore(st, [], rounds=2)
    return st


@pytest.mark.parametrize(("rel", "how", "outcome"), FILE_PARAMS)
def test_damaged_run_file(tmp_path: Path, rel: str, how: str, outcome: str) -> None:
    rel = rel.split(" ")[0]
    lay = finished_run(tmp_path / "run", "model" if "/model" in rel else "lora")
    path = lay.root / rel
    damage(path, how)
    before = path.read_bytes() if path.is_file() else None
    stage_rel = "/".join(rel.split("/")[:2])
    if outcome != REDO:  # repaired by the run itself: the stage is resumed with its records
        got = reopen(lay, rel)
        if isinstance(got, Stage):
            assert [r["id"] for r in got.records()] == [r["id"] for r in RECORDS]
        return
    with pytest.raises(StoreError) as info:
        reopen(lay, rel)
    msg = str(info.value)
    assert "\n" not in msg and f"redo=[{stage_rel}]" in msg, msg
    assert str(path) in msg or str(path.parent) in msg, msg  # names the file (or the folder it is missing from)
    assert (path.read_bytes() if path.is_file() else None) == before  # left as it is: nothing cut
    st = reopen(lay, rel, redo=True)  # the suggested fix: redo=[<stage>] recomputes it
    assert isinstance(st, Stage) and st.redone and not st.done and st.records() == []
    if stage_rel == "iter_1/generate":  # recomputed: the same records again, done again
        _finish(st, RECORDS)
        assert Stage(st.dir, stage_rel, "h-gen").records() == RECORDS


def test_a_finished_stage_with_a_torn_last_line_is_never_cut(tmp_path: Path) -> None:
    lay = finished_run(tmp_path / "run")
    path = lay.stage(1, "generate") / "records.jsonl"
    damage(path, "torn")
    torn = path.read_bytes()
    for _ in range(2):  # every later run stops the same way; none shortens the stage
        with pytest.raises(StoreError, match="records.jsonl is not the file this finished stage wrote"):
            Stage(path.parent, "iter_1/generate", "h-gen")
    assert path.read_bytes() == torn


def test_an_old_done_json_without_digests_is_checked_by_its_record_count(tmp_path: Path) -> None:
    lay = finished_run(tmp_path / "run")
    done = lay.stage(1, "generate") / "done.json"
    manifest = json.loads(done.read_text())
    del manifest["records_file"], manifest["data_files"]  # as a run finished before issue 33 wrote it
    done.write_text(json.dumps(manifest))
    assert Stage(done.parent, "iter_1/generate", "h-gen").done  # intact: read as before
    damage(done.parent / "records.jsonl", "torn")
    with pytest.raises(StoreError, match="holds 2 records, done.json recorded 3"):
        Stage(done.parent, "iter_1/generate", "h-gen")


def test_the_base_model_is_never_used_in_place_of_a_declared_adapter(tmp_path: Path) -> None:
    lay = finished_run(tmp_path / "run")
    assert lay.current("gen", 1) == (lay.finetune_dir("gen", 1) / "adapter", 1)
    damage(lay.finetune_dir("gen", 1) / "adapter" / "adapter_config.json", "deleted")
    with pytest.raises(StoreError, match=r"iter_1/finetune_gen is finished, but its trained folder .* has no "):
        lay.current("gen", 2)  # the next iteration's Generator and its lineage


def test_an_iteration_that_trained_nothing_keeps_the_previous_model(tmp_path: Path) -> None:
    lay = finished_run(tmp_path / "run")
    st = Stage(lay.finetune_dir("gen", 2), "iter_2/finetune_gen", "h2")
    st.finish({"examples": 0}, extra={"train": {"examples": 0, "trained": False},
                                      "settings": {"finetune": {"method": "lora"}}})  # an old run's empty iteration
    assert lay.current("gen", 2) == (lay.finetune_dir("gen", 1) / "adapter", 1)


@pytest.mark.parametrize("what", ["a record", "done.json", "an SFT file"])
def test_a_disk_that_fills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str) -> None:
    import errno
    import os

    from selflen.store import write_jsonl

    st = Stage(tmp_path / "iter_1" / "sft_data", "iter_1/sft_data", "h")
    st.append(RECORDS[0])
    real_fsync = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StoreError, match="the disk is full.*re-run the same command") as info:
        if what == "a record":
            st.append(RECORDS[1])
        elif what == "done.json":
            st.finish({"records": 1})
        else:
            write_jsonl(st.dir / "gen.jsonl", [{"messages": []}])
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert "\n" not in str(info.value) and not list(st.dir.glob("*.tmp"))
    assert not st.done and not (st.dir / "gen.jsonl").exists()
    again = Stage(st.dir, "iter_1/sft_data", "h")  # space freed: the same command resumes
    assert again.records() == RECORDS[:1]
    again.append(RECORDS[1])
    again.finish({"records": 2})
    assert Stage(st.dir, "iter_1/sft_data", "h").done
