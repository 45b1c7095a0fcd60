"""The sft_data stage: the Generator learns instruction -> extended answer, the Extender learns the extend prompt
over its answer with lines removed -> extended answer; both files are chat ``messages`` rows keyed by the record's
id, drawn from the record's own seed (a resumed or repeated stage writes the same lines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from selflen.stages import sft_data
from selflen.stages.common import Chat
from selflen.stages.extend import extend_prompt
from selflen.store import Stage, read_jsonl
from tests.defaults import config, with_changes

pytestmark = pytest.mark.unit
ANSWER = "\n".join(f"Line {i} of the answer." for i in range(12))


def _kept(n: int = 3) -> list[dict]:
    return [{"id": f"r{i}", "instruction": f"Write about topic {i}.", "response": ANSWER,
             "extended": f"{ANSWER}\nAnd a much longer ending {i}.", "status": "ok"} for i in range(n)]


def _run(tmp_path: Path, name: str, kept: list[dict], s: sft_data.SftDataSettings) -> tuple[list, list, dict]:
    stage = Stage(tmp_path / name, "iter_1/sft_data", "h")
    result = sft_data.run(stage, kept, s)
    gen, ext = sft_data.paths(stage.dir)
    return read_jsonl(gen), read_jsonl(ext), result.counts


def test_generator_pairs_are_instruction_to_extension(tmp_path: Path) -> None:
    s = sft_data.settings(config())
    gen, _, counts = _run(tmp_path, "a", _kept(), s)
    assert counts == {"gen_examples": 3, "ext_examples": 3}
    assert [r["id"] for r in gen] == ["r0", "r1", "r2"]
    for row, rec in zip(gen, _kept(), strict=True):
        assert row["messages"][-2:] == [{"role": "user", "content": rec["instruction"]},
                                        {"role": "assistant", "content": rec["extended"]}]


def test_extender_pairs_ask_to_extend_the_answer_with_lines_removed(tmp_path: Path) -> None:
    s = sft_data.settings(config())
    _, ext, _ = _run(tmp_path, "a", _kept(), s)
    for row, rec in zip(ext, _kept(), strict=True):
        user, answer = row["messages"][-2]["content"], row["messages"][-1]
        assert answer == {"role": "assistant", "content": rec["extended"]}
        assert rec["instruction"] in user and user != extend_prompt(rec["instruction"], ANSWER, s.language)
        kept_lines = [line for line in ANSWER.split("\n") if line in user]
        assert 0 < len(kept_lines) < 12  # p_keep_line 0.8 drops some of the 12 lines, never all
    everything = with_changes(s, "sft_data", p_keep_line=1.0)
    _, ext, _ = _run(tmp_path, "b", _kept(1), everything)
    assert ext[0]["messages"][-2]["content"] == extend_prompt("Write about topic 0.", ANSWER, s.language)


def test_the_same_record_draws_the_same_lines_and_another_seed_others(tmp_path: Path) -> None:
    s = sft_data.settings(config())
    first = _run(tmp_path, "a", _kept(), s)
    assert _run(tmp_path, "b", _kept(), s) == first
    reseeded = _run(tmp_path, "c", _kept(), with_changes(s, "sft_data", seed=s.seed + 1))
    assert reseeded[0] == first[0] and reseeded[1] != first[1]  # only the Extender's outlines are drawn


def test_max_examples_caps_both_files_and_the_system_prompt_leads_every_pair(tmp_path: Path) -> None:
    s = with_changes(sft_data.settings(config()), "sft_data", max_examples=2, chat=Chat("Be thorough."))
    gen, ext, counts = _run(tmp_path, "a", _kept(5), s)
    assert counts == {"gen_examples": 2, "ext_examples": 2} and len(gen) == len(ext) == 2
    assert all(r["messages"][0] == {"role": "system", "content": "Be thorough."} for r in gen + ext)
