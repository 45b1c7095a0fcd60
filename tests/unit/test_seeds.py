"""Seed files and n-gram decontamination against LonGen / LongBench-Write prompts."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from selflen.decontam import Decontaminator, benchmark_prompts, default_data_dir, tokenize
from selflen.seeds import CATEGORIES, Seed, load_seeds

pytestmark = pytest.mark.unit

LANGS = ("en", "zh")
_CJK = re.compile(r"[\u4e00-\u9fff]")

BENCH_EN = (
    "Write a detailed report on the history of the printing press in early modern Europe, covering its inventors, "
    "the spread of workshops across cities, and the effects on literacy and religion."
)
BENCH_ZH = "请写一篇关于城市里的老邮局如何在数字时代转型的文章，讨论它们面临的困境与新的可能。"


@pytest.fixture(scope="module")
def seeds() -> dict[str, list[Seed]]:
    return {lang: load_seeds(lang) for lang in LANGS}


# ---------------------------------------------------------------- seed files


@pytest.mark.parametrize("lang", LANGS)
def test_seed_counts(seeds: dict[str, list[Seed]], lang: str) -> None:
    assert len(seeds[lang]) >= 40
    per_cat = Counter(s.category for s in seeds[lang])
    assert set(per_cat) == set(CATEGORIES)
    assert min(per_cat.values()) >= 5, per_cat


def test_seed_ids_unique_and_languages(seeds: dict[str, list[Seed]]) -> None:
    ids = [s.id for lang in LANGS for s in seeds[lang]]
    assert len(ids) == len(set(ids))
    for lang in LANGS:
        for s in seeds[lang]:
            assert s.language == lang
            assert s.id.startswith(f"{lang}-")
            assert s.category in CATEGORIES


def test_seed_scripts(seeds: dict[str, list[Seed]]) -> None:
    for s in seeds["zh"]:
        letters = [c for c in s.prompt if c.isalpha()]
        cjk = sum(1 for c in letters if _CJK.match(c))
        assert cjk / len(letters) > 0.8, s.id
    for s in seeds["en"]:
        assert not _CJK.search(s.prompt), s.id
        assert 15 <= len(s.prompt.split()) <= 120, s.id


def test_seed_prompts_unique(seeds: dict[str, list[Seed]]) -> None:
    for lang in LANGS:
        prompts = [s.prompt for s in seeds[lang]]
        assert len(prompts) == len(set(prompts))


def test_load_seeds_custom_path(tmp_path: Path) -> None:
    f = tmp_path / "s.jsonl"
    f.write_text(
        json.dumps({"id": "x-1", "category": "business", "prompt": "Write a plan."}) + "\n\n", encoding="utf-8"
    )
    assert load_seeds("en", f) == [Seed(id="x-1", category="business", prompt="Write a plan.", language="en")]


@pytest.mark.parametrize(
    "line",
    [
        "{not json",
        json.dumps({"id": "x-2", "category": "poetry", "prompt": "Write."}),
        json.dumps({"id": "x-2", "category": "business"}),
        json.dumps(["a", "b"]),
    ],
)
def test_load_seeds_bad_line(tmp_path: Path, line: str) -> None:
    f = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "x-1", "category": "business", "prompt": "Write a plan."})
    f.write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        load_seeds("en", f)


def test_load_seeds_duplicate_id_and_bad_language(tmp_path: Path) -> None:
    f = tmp_path / "dup.jsonl"
    line = json.dumps({"id": "x-1", "category": "business", "prompt": "Write a plan."})
    f.write_text(line + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="duplicate"):
        load_seeds("en", f)
    with pytest.raises(ValueError):
        load_seeds("fr")


# ---------------------------------------------------------------- decontaminator


def test_tokenize() -> None:
    assert tokenize("Hello, World! It's 2024.") == ["hello", "world", "it", "s", "2024"]
    assert tokenize("用Python写，教程！") == ["用", "python", "写", "教", "程"]
    assert tokenize("ＡＢＣ　def") == ["abc", "def"]  # NFKC full-width


def test_decontaminator_english() -> None:
    dec = Decontaminator([BENCH_EN, BENCH_ZH])
    assert dec.size > 0
    assert dec.is_contaminated(BENCH_EN)
    assert dec.overlaps(BENCH_EN) == len(tokenize(BENCH_EN)) - 8 + 1
    # a 12-word verbatim span, embedded in otherwise new text, with different case and punctuation
    span = "THE SPREAD OF WORKSHOPS ACROSS CITIES; AND THE EFFECTS ON LITERACY AND"
    assert len(span.split()) == 12
    assert dec.is_contaminated(f"My essay plan: {span} other things I want to explore.")
    assert not dec.is_contaminated(f"My essay plan: {span} other things I want to explore.", min_hits=100)
    unrelated = "Write a guide to fixing a leaking kitchen faucet, with tools, steps, and safety tips for beginners."
    assert dec.overlaps(unrelated) == 0
    assert not dec.is_contaminated(unrelated)
    # seven shared words in a row stay below the default n=8
    assert not dec.is_contaminated("Tell me about the spread of workshops across cities in Asia today, please.")


def test_decontaminator_cjk() -> None:
    dec = Decontaminator([BENCH_EN, BENCH_ZH])
    assert dec.is_contaminated(BENCH_ZH)
    # a 13-character verbatim span inside new Chinese text
    assert dec.is_contaminated("我想请你帮忙：老邮局如何在数字时代转型的文章，另外再补充一些照片说明。")
    # 12 shared characters stay below n_cjk=13
    assert not dec.is_contaminated("我想请你帮忙：谈谈如何在数字时代转型的文章，另外再补充一些照片说明。")
    assert not dec.is_contaminated("写一篇散文，回忆童年时家门口那条小河的四季变化和河边的人们。")
    assert Decontaminator([BENCH_ZH], n_cjk=4).is_contaminated("城市里的老朋友")


def test_decontaminator_short_reference_exact_copy() -> None:
    dec = Decontaminator(["Write a haiku about rain."])
    assert dec.is_contaminated("write a HAIKU about rain!")
    assert not dec.is_contaminated("Write a haiku about snow.")
    assert Decontaminator([]).size == 0
    assert not Decontaminator([]).is_contaminated(BENCH_EN)


def test_benchmark_prompts_and_from_data_dir(tmp_path: Path) -> None:
    assert benchmark_prompts(tmp_path) == []
    (tmp_path / "longen").mkdir()
    (tmp_path / "longen" / "LonGen.jsonl").write_text(
        json.dumps({"query": BENCH_ZH, "language": "zh"}, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (tmp_path / "longbench_write").mkdir()
    (tmp_path / "longbench_write" / "longwrite_ruler.jsonl").write_text(
        json.dumps({"prompt": BENCH_EN, "length": 1000}) + "\n", encoding="utf-8"
    )
    assert benchmark_prompts(tmp_path) == [BENCH_ZH, BENCH_EN]
    dec = Decontaminator.from_data_dir(tmp_path, n=6)
    assert dec.n == 6
    assert dec.is_contaminated(BENCH_EN) and dec.is_contaminated(BENCH_ZH)


def test_default_data_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SELFLEN_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("SELFLEN_DATA_DIR")
    d = default_data_dir()
    assert d is not None and d.name == "benchmarks" and d.parent.name == "selflen"  # the packaged copy


# ---------------------------------------------------------------- the key check


def test_no_seed_overlaps_benchmarks(seeds: dict[str, list[Seed]]) -> None:
    data_dir = default_data_dir()
    prompts = benchmark_prompts(data_dir) if data_dir is not None else []
    assert prompts, "the packaged benchmark files (selflen/benchmarks) are missing"
    dec = Decontaminator(prompts)
    hits = {s.id: dec.overlaps(s.prompt) for lang in LANGS for s in seeds[lang]}
    assert {k: v for k, v in hits.items() if v} == {}
