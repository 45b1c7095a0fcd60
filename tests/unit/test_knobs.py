"""A knob's meaning, range and choices sit beside its type (``groups.knob``); the checks and the listing read them."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from selflen.cli import knob_listing
from selflen.config import CHOICES, NULLABLE, RANGES, ConfigError, TrainConfig, load
from selflen.groups import identity, interval, knob, knobs, numeric

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
ALL = list(knobs(TrainConfig))


def test_every_knob_says_what_it_means_and_every_numeric_knob_its_range() -> None:
    no_help = [key for key, _, f in ALL if not f.metadata.get("help") or "\n" in f.metadata["help"]]
    no_range = [key for key, kind, f in ALL if numeric(kind) and not f.metadata.get("range")]
    assert not no_help, f"knobs without one line of help: {no_help}"
    assert not no_range, f"numeric knobs without a range (knob(help, '[1, inf)')): {no_range}"
    assert {k for k in RANGES if k.startswith("length.")} == {k for k, _, _ in ALL if k.startswith("length.")}


def test_ranges_and_choices_are_read_from_the_fields() -> None:
    fields = {key: f for key, _, f in ALL}
    assert {k: f.metadata["range"] for k, f in fields.items() if f.metadata["range"]} == RANGES
    assert {k: f.metadata["choices"] for k, f in fields.items() if f.metadata["choices"]} == CHOICES
    assert RANGES["length.generate_tokens"] == (1, None, False, True) and RANGES["split.ratio"] == (0, 1, True, True)
    assert {"backend.dtype", "model.chat_format", "instruct.dedup_threshold"} <= NULLABLE


@pytest.mark.parametrize(("override", "message"), [
    ("length.generate_tokens=0", "length.generate_tokens=0 is out of range; allowed [1, inf)"),
    ("sft_data.max_examples=0", "sft_data.max_examples=0 is out of range; allowed [1, inf)"),
    ("regression.limit=-1", "regression.limit=-1 is out of range; allowed [1, inf)"),
    ("evaluate.top_p=0", "evaluate.top_p=0.0 is out of range; allowed (0, 1]"),
    ("instruct.pool=sideways", "instruct.pool='sideways' is not allowed; choose one of growing, seeds"),
    ("backend.dtype=fp8", "backend.dtype='fp8' is not allowed; choose one of float32, bfloat16, float16, auto, "
                          "bf16_if_supported or null"),
])
def test_a_value_outside_its_knob_is_refused_in_one_line(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(override)
    assert str(err.value) == message


def test_null_passes_where_the_type_allows_it() -> None:
    cfg = load("regression.limit=null", "sft_data.max_examples=null", "backend.dtype=null", "model.chat_format=null")
    assert cfg.regression.limit is None and cfg.backend.dtype is None
    with pytest.raises(ConfigError, match=r"^length.evaluate_tokens=None"):
        load("length.evaluate_tokens=null")


def test_a_made_up_group_is_checked_by_its_own_metadata() -> None:
    @dataclasses.dataclass(frozen=True)
    class Toy:
        n: int = knob("how many", "(0, 10]")
        mode: str = knob("which way", choices=("up", "down"))
        every: int = knob("not hashed", hashed=False)

    by_key = {key: f.metadata for key, _, f in knobs(Toy)}
    assert by_key["n"]["range"] == (0, 10, True, False) and by_key["mode"]["choices"] == ("up", "down")
    assert identity(Toy(n=1, mode="up", every=5)) == {"n": 1, "mode": "up"}
    with pytest.raises(ValueError, match="is not an interval"):
        interval("1..10")


def test_the_unhashed_knobs_are_the_ones_they_were() -> None:
    """Stage hashes read ``identity``; these are the fields it leaves out (a change here changes stage hashes)."""
    unhashed = {key for key, _, f in ALL if f.metadata.get("hash", True) is False}
    assert unhashed == {"select.length_biased_responses", "select.length_biased_extensions", "finetune.save_steps",
                        "finetune.logging_steps", "finetune.last_extender", "length_control.enabled",
                        "length_control.final_sft", "length_control.epochs", "evaluate.enabled", "evaluate.base"}


def test_the_listing_prints_every_knob_with_its_value_range_and_help() -> None:
    text = knob_listing([])
    heads = [line for line in text.splitlines() if not line.startswith(" ")]
    assert [h.split(":")[0] for h in heads] == [key for key, _, _ in ALL]
    assert "length.generate_tokens: int = 640, in [1, inf)\n    new tokens of the Generator's answer" in text
    assert 'instruct.pool: str = "growing", one of growing | seeds\n' in text
    only = knob_listing(["length=paper", "length"]).splitlines()
    assert len(only) == 14 and only[2] == "length.generate_tokens: int = 16384, in [1, inf)"


def test_the_listing_names_a_bad_group_option_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"iterations='3' is not a known option; choose one of one, three, two"):
        knob_listing(["iterations=3"])


def test_train_py_knobs_lists_and_writes_nothing(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, str(ROOT / "train.py"), "--knobs", "finetune.lora"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("finetune.lora.r: int = 8, in [1, inf)\n    LoRA rank\n")
    assert list(tmp_path.iterdir()) == []
    bad = subprocess.run([sys.executable, str(ROOT / "train.py"), "--knobs", "length.generate_tokens=0"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().endswith("generate_tokens=0 is out of range; allowed [1, inf)")
