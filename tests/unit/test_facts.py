"""Each domain fact has one home: script classes, the benchmark table, the data directory, the offline rule."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

from selflen import benchmark_files as data
from selflen import decontam, env
from selflen.text import counting, filters, scripts, split

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# a code-point range start written in code: an escape (\u4e00, \U00020000), U+4E00 or 0x4e00
_RANGE_LITERAL = re.compile(r"4e00|(?:\\u|U\+|0x)(?:3000|3040|3400|ac00|f900|ff00)|\\U0002", re.IGNORECASE)


def test_script_ranges_are_written_only_in_scripts_py() -> None:
    offenders = []
    for top in ("selflen", "evaluation"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix not in (".py", ".yaml", ".json") or path == ROOT / "selflen" / "text" / "scripts.py":
                continue
            for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if _RANGE_LITERAL.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert offenders == [], "define character classes in selflen/text/scripts.py:\n" + "\n".join(offenders)


def test_scripts_classes_cover_what_they_name() -> None:
    def inside(cls: str, ch: str) -> bool:
        return re.fullmatch(scripts.char_class(cls), ch) is not None

    assert all(inside(scripts.LONGEN_W, c) for c in "中，。\u3000！")
    assert not inside(scripts.REFERENCE_IDEOGRAPHS, "，")
    assert all(inside(scripts.CJK_WORD_CHARS, c) for c in "中々かカ한\U00020000")
    assert not any(inside(scripts.CJK_WORD_CHARS, c) for c in "，・a")
    assert all(inside(scripts.SINGLE_CHAR_TOKENS, c) for c in "中かカ・한\U00020000")
    assert not any(inside(scripts.SINGLE_CHAR_TOKENS, c) for c in "，a1")


# ---------------------------------------------------------------- data directory and benchmark table


def test_resolve_data_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, from_env, packaged = tmp_path / "explicit", tmp_path / "env", tmp_path / "benchmarks"
    packaged.mkdir(parents=True)
    monkeypatch.setattr(data, "PACKAGE_DATA_DIR", packaged)
    monkeypatch.setenv("SELFLEN_DATA_DIR", str(from_env))
    assert data.resolve_data_dir(explicit) == explicit  # 1. explicit, even when it does not exist
    assert data.resolve_data_dir(str(explicit)) == explicit
    assert data.resolve_data_dir() == from_env  # 2. the environment
    assert data.resolve_data_dir("") == from_env  # an empty setting counts as unset
    monkeypatch.setenv("SELFLEN_DATA_DIR", "")
    assert data.resolve_data_dir() == packaged  # 3. the copy shipped in the package
    monkeypatch.delenv("SELFLEN_DATA_DIR")
    assert data.resolve_data_dir() == packaged
    monkeypatch.setattr(data, "PACKAGE_DATA_DIR", tmp_path / "missing")
    assert data.resolve_data_dir() is None  # 4. an installation that lost it


def test_benchmarks_ship_in_the_package_with_their_licences(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SELFLEN_DATA_DIR", raising=False)
    folder = data.resolve_data_dir()
    assert folder == ROOT / "selflen" / "benchmarks" == data.PACKAGE_DATA_DIR
    assert ROOT.parent / "shared" not in folder.parents  # nothing the project runs reads ../shared
    notice = (folder / "NOTICE").read_text(encoding="utf-8")
    for spec in data.BENCHMARK_SPECS.values():
        path = folder / spec.relpath
        assert path.is_file(), spec.relpath
        assert (path.parent / "LICENSE").read_text(encoding="utf-8").count("Apache License") >= 1
        assert path.name in notice or spec.name == "longen"
        assert hashlib.sha256(path.read_bytes()).hexdigest() in notice, spec.relpath  # NOTICE names this version
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"benchmarks/**/*"' in pyproject  # the files go into the wheel (tests/integration/test_wheel.py)


def test_one_data_dir_function_and_one_table() -> None:
    from evaluation import benchmarks

    assert decontam.default_data_dir is data.resolve_data_dir
    assert benchmarks.default_data_dir is data.resolve_data_dir
    assert benchmarks.BENCHMARKS is data.BENCHMARK_SPECS
    assert data.BENCHMARKS == tuple(data.BENCHMARK_SPECS) == (
        "longen", "longbench_write", "longbench_write_en", "longwrite_ruler"
    )  # fmt: skip


def test_benchmark_file_falls_back_to_the_packaged_place(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from evaluation import benchmarks

    monkeypatch.delenv("SELFLEN_DATA_DIR", raising=False)
    monkeypatch.setattr(data, "PACKAGE_DATA_DIR", tmp_path / "missing")
    monkeypatch.setattr(benchmarks, "PACKAGE_DATA_DIR", tmp_path / "missing")
    assert benchmarks.benchmark_file("longen") == tmp_path / "missing" / "longen" / "LonGen.jsonl"


def test_lm_eval_tasks_resolve_their_files_through_selflen_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tasks = ROOT / "evaluation" / "lm_eval_tasks"
    for yaml in tasks.glob("selflen_*.yaml"):
        text = yaml.read_text(encoding="utf-8")
        assert "shared/data" not in text, yaml.name
        for name in re.findall(r"^\s*selflen_benchmark:\s*(\S+)", text, re.MULTILINE):
            assert name in data.BENCHMARKS, (yaml.name, name)
    spec = importlib.util.spec_from_file_location("selflen_lm_eval_utils", tasks / "utils.py")
    assert spec is not None and spec.loader is not None
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    (tmp_path / "longen").mkdir()
    row = {"query": "Write a poem.", "type": "about", "constraint": "around 100 words"}
    (tmp_path / "longen" / "LonGen.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    monkeypatch.setenv("SELFLEN_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path / "longen")  # the working directory no longer matters
    loaded = utils.load_benchmark_docs(selflen_benchmark="longen", version=1.0, pretrained="x")
    assert list(loaded["test"]) == [row]
    monkeypatch.setenv("SELFLEN_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="SELFLEN_DATA_DIR"):
        utils.load_benchmark_docs(selflen_benchmark="longen")


# ---------------------------------------------------------------- offline only when forced

_OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}


def test_forcing_offline_sets_only_unset_variables() -> None:
    environ = {"WANDB_MODE": "disabled"}
    assert env.apply_offline_defaults(online=False, environ=environ)
    assert environ == {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}


@pytest.mark.parametrize("environ", [{}, {"SELFLEN_ONLINE": "1"}, {"HF_HUB_OFFLINE": "0"}])
def test_nothing_is_forced_offline_by_default(environ: dict[str, str]) -> None:
    before = dict(environ)
    assert not env.apply_offline_defaults(environ=environ)  # like the hub tools: online unless told otherwise
    assert environ == before


@pytest.mark.parametrize("environ", [{"HF_HUB_OFFLINE": "1"}, {"TRANSFORMERS_OFFLINE": "1"},
                                     {"SELFLEN_ONLINE": "0"}, {"SELFLEN_ONLINE": "no"}])
def test_the_hub_switch_or_the_old_spelling_forces_everything_offline(environ: dict[str, str]) -> None:
    assert env.hub_forced_offline(environ) and env.apply_offline_defaults(environ=environ)
    assert all(environ[k] for k in _OFFLINE)


@pytest.mark.parametrize(("value", "meaning"), [("1", "changes nothing"), ("0", "forces offline")])
def test_the_old_switch_gets_one_deprecation_line(value: str, meaning: str) -> None:
    note = env.legacy_online_note({"SELFLEN_ONLINE": value})
    assert note.startswith("SELFLEN_ONLINE is deprecated") and meaning in note and "\n" not in note
    assert env.legacy_online_note({}) is None


def test_forced_offline_on_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in _OFFLINE:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("SELFLEN_ONLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not env.apply_offline_defaults()
    assert all(key not in os.environ for key in _OFFLINE)
    assert env.apply_offline_defaults(online=False)  # what tests/conftest.py does
    assert {k: os.environ[k] for k in _OFFLINE} == _OFFLINE


# ---------------------------------------------------------------- option lists owned by their modules


def test_option_lists_match_the_config() -> None:
    from selflen.config import CHOICES

    assert CHOICES["language.counter"] == counting.COUNTERS
    assert CHOICES["split.strategy"] == split.SPLIT_STRATEGIES
    assert CHOICES["language.ngram_tokenizer"] == filters.NGRAM_TOKENIZERS
    assert set(CHOICES["evaluate.benchmark"]) <= set(data.BENCHMARKS)
