"""Stage addresses are values: an unknown stage or point raises where it is made."""

from __future__ import annotations

from pathlib import Path

import pytest

from selflen.addresses import FINAL, STAGES, StageAddress, at
from selflen.store import RunLayout
from selflen.tracking import NullLogger
from tests.defaults import config

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text", ["iter_0/instruct", "iter_3/finetune_ext", "final/length_control"])
def test_an_address_round_trips_through_its_text(text: str) -> None:
    address = StageAddress.parse(text)
    assert str(address) == text and StageAddress.parse(str(address)) == address


@pytest.mark.parametrize(("point", "stage", "message"), [
    (1, "extnd", "unknown stage 'extnd' at point 1"),
    (-1, "extend", "unknown point -1"),
    ("last", "extend", "unknown point 'last'"),
    (True, "extend", "unknown point True"),
])
def test_a_bad_address_raises_naming_what_is_wrong(point: object, stage: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StageAddress(point, stage)  # type: ignore[arg-type]


def test_text_that_is_no_address_is_refused() -> None:
    for text in ("extend", "iter_x/extend", "iteration_2/extend", "final/nope"):
        with pytest.raises(ValueError):
            StageAddress.parse(text)


def test_layout_and_runner_refuse_an_unknown_stage(tmp_path: Path) -> None:
    from selflen.stage_runner import Runner

    layout = RunLayout(tmp_path)
    assert layout.stage("2", "extend") == tmp_path / "iter_2" / "extend" == tmp_path / at(2, "extend")
    assert layout.stage(FINAL, "finetune") == tmp_path / "final" / "finetune"
    with pytest.raises(ValueError, match="unknown stage 'generat'"):
        layout.stage(1, "generat")
    runner = Runner(config(), layout, tmp_path, NullLogger())
    with pytest.raises(ValueError, match="unknown stage 'instrct'"):  # a mistyped input: no silent root hash
        runner.open(1, "generate", {"x": 1}, ["iter_1/instrct"])
    base = runner.open(1, "generate", {"x": 1}, ["root", "iter_0/finetune_gen"])  # nothing trained: the base
    assert base.hash == runner.open(2, "generate", {"x": 1}, ["root", "iter_0/finetune_gen"]).hash


def test_every_stage_the_loop_writes_is_known() -> None:
    import re

    source = (Path(__file__).resolve().parents[2] / "selflen" / "pipeline.py").read_text()
    named = set(re.findall(r'r\.run\([^,]+, "(\w+)"', source)) | set(re.findall(r'at\([^,]+, "(\w+)"\)', source))
    assert named and named <= set(STAGES)
