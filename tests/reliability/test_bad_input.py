"""Class 4 of issue 33: one line for every bad input.

Every numeric knob in ``selflen.config.RANGES`` at its bounds (``cases.knob_values``: refused just outside, accepted
at a closed bound, checked before anything is written), and the files a run reads besides its own stages: benchmark
rows, model folders, records.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from selflen.config import ConfigError, check, load
from selflen.models import ModelNotFound
from selflen.store import Stage, StoreError
from tests.reliability.cases import INPUT_CASES, knob_values

pytestmark = pytest.mark.unit
BASE = load("debug=smoke")


def _with(obj: Any, dotted: str, value: Any) -> Any:
    head, _, rest = dotted.partition(".")
    return dataclasses.replace(obj, **{head: _with(getattr(obj, head), rest, value) if rest else value})


@pytest.mark.parametrize(("key", "value", "accepted"), knob_values(), ids=lambda v: str(v))
def test_every_numeric_knob_at_its_bounds(key: str, value: float, accepted: bool) -> None:
    cfg = _with(BASE, key, value)
    try:
        check(cfg)
    except ConfigError as err:
        about_this_key = f"{key}={value!r} is out of range" in str(err) or f"{key}={float(value)!r}" in str(err)
        assert not accepted or not about_this_key, err  # an accepted value may still meet a cross-field rule
        assert accepted or about_this_key, err
        assert "\n" not in str(err)
        return
    assert accepted, f"{key}={value} passed"


def test_max_retries_below_zero_is_refused_before_the_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(repo / "train.py"), "debug=smoke", "logger=none", "backend=openai",
                           "backend.max_retries=-1", "length.generate_tokens=0", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert "out of range" in proc.stderr and not (tmp_path / "run").exists()


def _benchmark_copy(tmp_path: Path) -> tuple[Path, Path]:
    from selflen.benchmark_files import BENCHMARK_SPECS

    src = Path(__file__).resolve().parents[2] / "selflen" / "benchmarks"
    data = tmp_path / "data"
    shutil.copytree(src, data)
    return data, data / BENCHMARK_SPECS[BASE.evaluate.benchmark].relpath


def test_a_benchmark_row_that_is_not_json(tmp_path: Path) -> None:
    from selflen.run_inputs import decontaminator, eval_rows

    data, path = _benchmark_copy(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + b"{not json\n" + b"".join(lines[1:]))
    cfg = dataclasses.replace(BASE, paths=dataclasses.replace(BASE.paths, data_dir=str(data)))
    for read in (eval_rows, decontaminator):
        with pytest.raises(StoreError, match=rf"{path}:2: .*fix or replace that benchmark file") as info:
            read(cfg)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("weights", ["none", "truncated"])
def test_a_local_model_folder_without_whole_weights(tmp_path: Path, weights: str) -> None:
    from selflen.run_inputs import check_model_weights

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    if weights == "truncated":
        header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
        (tmp_path / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 5)
    with pytest.raises(ModelNotFound, match=rf"model folder {tmp_path} has (no weights|a truncated weights file)"):
        check_model_weights(tmp_path)


@pytest.mark.parametrize(("stage", "lines", "said"), [
    ("iter_2/extend", '{"id": "a"}\n{"id": "b", oops\n{"id": "c"}\n', "corrupt record"),  # a torn line in the middle
    ("iter_1/generate", '{"id": "a"}\n{"status": "ok"}\n', "a record without an id"),
])
def test_a_bad_record_names_file_line_and_a_redo_that_works(tmp_path: Path, stage: str, lines: str, said: str) -> None:
    folder = tmp_path / stage
    folder.mkdir(parents=True)
    (folder / "records.jsonl").write_text(lines)
    with pytest.raises(StoreError, match=rf"records.jsonl:2: {said} .*redo=\[{stage}\]"):
        Stage(folder, stage, "h")
    assert Stage(folder, stage, "h", redo=True).records() == []  # the fix recomputes it


def test_a_config_hash_marker_that_is_not_text(tmp_path: Path) -> None:
    folder = tmp_path / "iter_1" / "generate"
    folder.mkdir(parents=True)
    (folder / "config_hash").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(StoreError, match=r"was run with another config .*redo=\[iter_1/generate\]"):
        Stage(folder, "iter_1/generate", "h")


def test_every_input_case_of_the_table_has_its_test() -> None:
    assert len(INPUT_CASES) == 6
