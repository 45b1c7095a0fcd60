"""Class 3 of issue 33, per kind of stage: a stop (SIGTERM) that arrives during an engine call (or, for a stage
without an engine, before its first record) ends the stage with ``Interrupted`` and no ``done.json``; the same
command then resumes it to the records of a run that was never stopped.

The engine answers as a function of the request only (so a resumed and an uninterrupted run can be compared),
checks for a stop at the end of a call and returns nothing of that call: the worst case, an engine that cannot
stream. The real engines stream, and the stage's generation journal keeps what they finished before the stop
(``tests/unit/test_journal.py``).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from selflen.engines.base import Engine, Request, Result
from selflen.errors import Interrupted, check_stop, clear_stop, request_stop
from selflen.store import Stage
from tests.reliability.cases import STAGE_STOPS
from tests.scripted import ScriptedEngine

pytestmark = pytest.mark.unit


class StoppingEngine(Engine):
    """A scripted engine that asks for a stop during its ``stop_at``-th call (0: never)."""

    name = "scripted"

    def __init__(self, reply: Callable[[Request], str], stop_at: int = 0) -> None:
        self.inner, self.stop_at, self.calls = ScriptedEngine(reply), stop_at, 0

    def generate(self, requests: Sequence[Request], desc: str | None = None) -> list[Result]:
        self.calls += 1
        out = self.inner.generate(requests, desc)
        if self.calls == self.stop_at:
            request_stop(signal.SIGTERM)
        check_stop()
        return out

    def add_adapter(self, name: str, path: str) -> None:
        self.inner.add_adapter(name, path)


def _instruct(stage: Stage, engine: Engine) -> None:
    from selflen.stages import instruct
    from tests.unit.test_stage_instruct import SEEDS
    from tests.unit.test_stage_instruct import _settings as settings

    instruct.run(stage, instruct.InstructInputs(SEEDS), settings(count=4, attempts=2), engine)


def _generate(stage: Stage, engine: Engine) -> None:
    from selflen.stages import generate
    from tests.unit.test_stage_generate import INSTRUCTIONS
    from tests.unit.test_stage_generate import _settings as settings

    generate.run(stage, INSTRUCTIONS, settings(attempts=1), engine)


def _extend(stage: Stage, engine: Engine) -> None:
    from selflen.stages import extend
    from tests.unit.test_stage_extend import RESPONSES
    from tests.unit.test_stage_extend import _settings as settings

    extend.run(stage, [*RESPONSES, {**RESPONSES[0], "id": "k1-i1-s0"}], settings(rounds=3), engine)


def _select(stage: Stage, engine: Engine) -> None:
    from selflen.stages import select
    from tests.unit.test_stage_select import _rows, _select

    select.run(stage, _rows(12), _select("response", True, "chars", 4, 0.8))


def _reply(req: Request) -> str:
    """A deterministic answer: an instruction, a full answer, or (with a prefix) a longer continuation."""
    text = req.messages[-1]["content"]
    if req.prefix is not None and "Instruction" in req.prefix:  # self-instruct: a new instruction per seed
        return f" Write a long report on subject {req.params.seed % 9973} with its history and its outlook."
    if req.prefix is not None:  # the Extender's stage 2
        return " And then the tea trade grew, with ships and roads carrying leaves to every port of the world."
    return f"Part one of {len(text)}.\n\nPart two.\n\nConclusion of a careful answer."


RUNS: dict[str, tuple[Callable[[Stage, Engine], None], int]] = {  # stage kind -> (run, call during which to stop)
    "instruct (in an engine call)": (_instruct, 1), "generate (in an engine call)": (_generate, 1),
    "extend (between its rounds)": (_extend, 3), "select (no engine: before its first record)": (_select, 0),
}


@pytest.mark.parametrize("kind", STAGE_STOPS)
def test_a_stop_during_each_kind_of_stage_resumes_to_the_same_records(tmp_path: Path, kind: str) -> None:
    run, stop_at = RUNS[kind]
    name = kind.split(" ")[0]
    clean = Stage(tmp_path / "clean" / name, f"iter_1/{name}", "h")
    whole = StoppingEngine(_reply)
    run(clean, whole)
    clean.finish({})
    stopped = Stage(tmp_path / "run" / name, f"iter_1/{name}", "h")
    if stop_at == 0:
        request_stop(signal.SIGTERM)  # a stage without an engine stops at its first record boundary
    try:
        with pytest.raises(Interrupted, match="SIGTERM"):
            run(stopped, StoppingEngine(_reply, stop_at))
    finally:
        clear_stop()
    stopped.close()
    assert not stopped.done and len(stopped.records()) < len(clean.records())
    resumed = Stage(stopped.dir, f"iter_1/{name}", "h")  # the same command again
    again = StoppingEngine(_reply)
    run(resumed, again)
    if name == "extend":  # resumed from the round state of the stopped run, not from the start
        assert 0 < again.calls < whole.calls
    assert sorted(resumed.records(), key=lambda r: r["id"]) == sorted(clean.records(), key=lambda r: r["id"])
