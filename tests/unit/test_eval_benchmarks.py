"""Benchmark loading, annotation, flagging and slicing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.benchmarks import (
    BENCHMARKS,
    LONGEN_FLAGGED,
    annotate,
    benchmark_file,
    default_data_dir,
    lbw_bucket,
    load_benchmark,
    longen_flag,
    slice_rows,
)

pytestmark = pytest.mark.unit


def _need_data() -> None:
    assert benchmark_file("longen").is_file(), "the packaged benchmark copy (selflen/benchmarks) is missing"


def test_missing_file_error_names_file_and_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_benchmark("longbench_write_en", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "longbench_write" / "longbench_write_en.jsonl") in message
    assert "SELFLEN_DATA_DIR" in message and "--online" in message


def test_data_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFLEN_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    (tmp_path / "longbench_write").mkdir()
    rows = [{"prompt": "Write 200 words on tea", "type": "Community Forum", "length": 200}]
    (tmp_path / "longbench_write" / "longwrite_ruler.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    loaded = load_benchmark("longwrite_ruler")
    assert (
        loaded[0]["id"] == "longwrite_ruler-0001" and loaded[0]["language"] == "en" and loaded[0]["range"] == "0-500"
    )


def test_online_refuses_when_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="run without those variables"):
        load_benchmark("longen", online=True)


def test_lbw_buckets() -> None:
    assert [lbw_bucket(x) for x in (100, 499, 500, 1999, 2000, 4000, 20000, 20001)] == [
        "0-500", "0-500", "500-2k", "500-2k", "2k-4k", "4k-20k", "4k-20k", "20k+"
    ]  # fmt: skip


def test_annotate_language_from_prompt() -> None:
    rows = annotate(
        "longbench_write", [{"prompt": "写一首诗", "type": "x", "length": 5}, {"prompt": "A poem", "length": 9}]
    )
    assert [r["language"] for r in rows] == ["zh", "en"]
    assert [r["line"] for r in rows] == [1, 2]


def test_longen_real_file_and_flags() -> None:
    _need_data()
    rows = load_benchmark("longen")
    assert len(rows) == 240
    flagged = [r for r in rows if r["flagged"]]
    assert [r["line"] for r in flagged] == sorted(LONGEN_FLAGGED) == [183, 195, 206, 217]
    assert all(r["language"] == "en" and r["flag_reason"] for r in flagged)
    # a row that lost its line number is still recognised by its query
    bare = {k: v for k, v in flagged[1].items() if k not in ("line", "benchmark")}
    assert longen_flag(bare) == LONGEN_FLAGGED[195]


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_every_benchmark_loads(name: str) -> None:
    _need_data()
    rows = load_benchmark(name)
    assert rows and all({"id", "line", "language", "range", "type", "flagged"} <= set(r) for r in rows)
    expected = {"longen": 240, "longbench_write": 120, "longbench_write_en": 60, "longwrite_ruler": 48}[name]
    assert len(rows) == expected


def test_slicing_is_deterministic_and_per_cell() -> None:
    _need_data()
    rows = load_benchmark("longen")
    one = slice_rows(rows, n_per_cell=1)
    assert len(one) == 24  # 2 languages x 3 buckets x 4 types
    assert [r["id"] for r in one] == [r["id"] for r in slice_rows(rows, n_per_cell=1)]
    assert [r["id"] for r in one] != [r["id"] for r in slice_rows(rows, n_per_cell=1, seed=1)]
    first = slice_rows(rows, language="en", bucket=["2-4k"], type_="about", n_per_cell=2, seed=None)
    assert [r["line"] for r in first] == [121, 122]
    assert len(slice_rows(rows, language="en", include_flagged=False)) == 116
