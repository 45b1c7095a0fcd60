"""The generation journal: a stage stopped in the middle of an engine call keeps the results finished before the
stop, and the same command then sends the engine only the requests it had not answered."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from selflen.engines.base import Completion, Request, Result, SamplingParams, in_order
from selflen.engines.journal import JOURNAL_NAME, Journal, JournaledEngine, request_key
from selflen.errors import Interrupted, check_stop, clear_stop, request_stop
from tests.scripted import ScriptedEngine

pytestmark = pytest.mark.unit


def _req(text: str, seed: int | None = 1, **params: object) -> Request:
    return Request([{"role": "user", "content": text}], SamplingParams(seed=seed, **params))  # type: ignore[arg-type]


def _reply(req: Request) -> str | None:
    text = req.messages[-1]["content"]
    return None if text.startswith("fail") else f"answer to {text} with seed {req.params.seed}"


class StreamingEngine(ScriptedEngine):
    """A scripted engine that finishes its requests one at a time, in reverse order (as a batch finishes out of
    order), and asks for a stop after ``stop_after`` of them in its first call."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__(_reply)
        self.stop_after = stop_after

    def stream(self, requests: Sequence[Request], desc: str | None = None) -> Iterator[tuple[int, Result]]:
        results = super().generate(requests, desc)
        for done, i in enumerate(reversed(range(len(requests))), start=1):
            yield i, results[i]
            if len(self.calls) == 1 and done == self.stop_after:
                request_stop(signal.SIGTERM)
            check_stop()

    def generate(self, requests: Sequence[Request], desc: str | None = None) -> list[Result]:
        return in_order(self.stream(requests, desc), len(requests))


@pytest.fixture(autouse=True)
def _no_stop_left() -> Iterator[None]:
    yield
    clear_stop()


def test_the_key_is_the_whole_request_and_the_model_serving_it() -> None:
    base = _req("Write about tea.")
    key = request_key(base, "base")
    assert key == request_key(_req("Write about tea."), "base")
    others = [
        request_key(base, "run-gen1"),  # another model
        request_key(_req("Write about oak."), "base"),
        request_key(_req("Write about tea.", seed=2), "base"),
        request_key(_req("Write about tea.", temperature=0.9), "base"),
        request_key(_req("Write about tea.", max_new_tokens=9), "base"),
        request_key(Request(base.messages, base.params, prefix="Tea"), "base"),
        request_key(Request(base.messages, base.params, adapter="gen1"), "base"),
    ]
    assert len({key, *others}) == len(others) + 1


def test_an_unseeded_sampled_request_has_no_fixed_answer_to_keep_but_a_greedy_one_does() -> None:
    assert request_key(_req("tea", seed=None), "base") is None
    assert request_key(_req("tea", seed=None, temperature=0.0), "base") is not None


def test_a_stop_mid_call_keeps_the_finished_results_and_the_rerun_asks_only_for_the_rest(tmp_path: Path) -> None:
    requests = [_req(f"topic {i}", seed=i) for i in range(6)]
    journal = Journal(tmp_path / JOURNAL_NAME)
    with pytest.raises(Interrupted):
        JournaledEngine(StreamingEngine(stop_after=2), journal, "base").generate(requests)
    journal.close()
    clear_stop()
    kept = [json.loads(line)["key"] for line in (tmp_path / JOURNAL_NAME).read_text().splitlines()]
    assert kept == [request_key(r, "base") for r in requests[:-3:-1]]  # the two finished first

    engine = StreamingEngine()
    again = Journal(tmp_path / JOURNAL_NAME)
    results = JournaledEngine(engine, again, "base").generate(requests)
    assert [r.messages[-1]["content"] for r in engine.requests] == [f"topic {i}" for i in range(4)]
    assert again.reused == 2
    assert [r.text for r in results] == [f"answer to topic {i} with seed {i}" for i in range(6)]
    assert [r.text for r in results] == [r.text for r in ScriptedEngine(_reply).generate(requests)]


def test_another_model_or_seed_is_never_answered_from_the_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / JOURNAL_NAME)
    JournaledEngine(StreamingEngine(), journal, "base").generate([_req("tea", seed=1)])
    engine = StreamingEngine()
    JournaledEngine(engine, journal, "run-gen1").generate([_req("tea", seed=1)])
    JournaledEngine(engine, journal, "base").generate([_req("tea", seed=2), _req("tea", seed=None)])
    JournaledEngine(engine, journal, "base").generate([_req("tea", seed=1)])
    assert [(r.params.seed) for r in engine.requests] == [1, 2, None]  # the last call came from the journal


def test_engine_errors_are_not_kept_so_the_rerun_retries_them(tmp_path: Path) -> None:
    journal = Journal(tmp_path / JOURNAL_NAME)
    results = JournaledEngine(StreamingEngine(), journal, "base").generate([_req("fail once"), _req("tea")])
    assert [r.ok for r in results] == [False, True]
    journal.close()
    engine = StreamingEngine()
    JournaledEngine(engine, Journal(tmp_path / JOURNAL_NAME), "base").generate([_req("fail once"), _req("tea")])
    assert [r.messages[-1]["content"] for r in engine.requests] == ["fail once"]


def test_a_result_reads_back_as_it_was_written(tmp_path: Path) -> None:
    result = Result([Completion("a", 3, "length"), Completion("b é", 2, "loop")], prompt_tokens=17)
    journal = Journal(tmp_path / JOURNAL_NAME)
    journal.put("k", result)
    journal.close()
    assert Journal(tmp_path / JOURNAL_NAME).get("k") == result


def test_a_torn_last_line_is_cut_and_a_corrupt_journal_is_started_over(tmp_path: Path, caplog) -> None:
    path = tmp_path / JOURNAL_NAME
    journal = Journal(path)
    journal.put("k", Result([Completion("a", 1, "stop")]))
    journal.close()
    with path.open("a") as f:
        f.write('{"key": "half')  # killed mid-append
    assert Journal(path).get("k") is not None
    assert path.read_text().count("\n") == 1 and path.read_text().endswith("\n")

    path.write_text('not json\n{"key": "k", "outputs": [], "prompt_tokens": 0}\n')
    assert Journal(path).results == {}
    assert "unreadable" in caplog.text and not path.exists()


def test_a_runner_stage_resumes_from_its_journal_and_removes_it_when_done(tmp_path: Path) -> None:
    from selflen.stage_runner import Runner
    from selflen.stages import generate
    from selflen.store import RunLayout
    from selflen.tracking import NullLogger
    from tests.defaults import config
    from tests.unit.test_stage_generate import INSTRUCTIONS
    from tests.unit.test_stage_generate import _settings as settings

    def run(engine: StreamingEngine) -> Runner:
        runner = Runner(config(), RunLayout(tmp_path / "run"), tmp_path, NullLogger())
        runner.engines._engines[str(tmp_path)] = engine
        s = settings(attempts=0)
        runner.run(1, "generate", s, ["root"],
                   lambda st: generate.run(st, INSTRUCTIONS, s, runner.engines.for_folder(None, "base")))
        return runner

    long_answer = StreamingEngine(stop_after=3)
    long_answer.reply = lambda req: f"A full answer about {req.messages[-1]['content']}"
    with pytest.raises(Interrupted):
        run(long_answer)
    clear_stop()
    stage_dir = tmp_path / "run" / "iter_1" / "generate"
    assert not (stage_dir / "records.jsonl").exists() or not (stage_dir / "records.jsonl").read_text()
    assert len((stage_dir / JOURNAL_NAME).read_text().splitlines()) == 3

    again = StreamingEngine()
    again.reply = long_answer.reply
    runner = run(again)
    assert len(again.requests) == 1  # 2 instructions x 2 samples, 3 of them kept from the stopped run
    manifest = runner.manifests["iter_1/generate"]
    assert manifest["counts"]["records"] == 4 and manifest["journal_reused"] == 3
    assert not (stage_dir / JOURNAL_NAME).exists() and JOURNAL_NAME not in manifest["data_files"]


def test_the_hf_engine_stopped_mid_stage_resumes_to_the_records_of_a_run_never_stopped(tiny_model: Path,
                                                                                      tmp_path: Path,
                                                                                      monkeypatch) -> None:
    from selflen.engines import build_engine
    from selflen.stages import generate
    from selflen.store import Stage
    from tests.unit.test_stage_generate import INSTRUCTIONS
    from tests.unit.test_stage_generate import _settings as settings

    s = replace(settings(samples=3, attempts=0), sampling=SamplingParams(max_new_tokens=12))
    with build_engine("hf", str(tiny_model), batch_size=2) as hf:
        generate.run(Stage(tmp_path / "whole", "iter_1/generate", "h"), INSTRUCTIONS, s, hf)
        whole = [(r["id"], r["response"]) for r in Stage(tmp_path / "whole", "iter_1/generate", "h").records()]

        put = Journal.put
        monkeypatch.setattr(Journal, "put", lambda self, key, res: (put(self, key, res), request_stop(15)))
        journal = Journal(tmp_path / "cut" / JOURNAL_NAME)
        with pytest.raises(Interrupted):  # SIGTERM after the first result: the engine stops after its batch
            generate.run(Stage(tmp_path / "cut", "iter_1/generate", "h"), INSTRUCTIONS, s,
                         JournaledEngine(hf, journal, "base"))
        journal.close()
        clear_stop()
        monkeypatch.setattr(Journal, "put", put)
        kept = len(Journal(tmp_path / "cut" / JOURNAL_NAME).results)
        assert kept == 2  # one batch

        sent: list[int] = []
        stream = hf.stream
        monkeypatch.setattr(hf, "stream", lambda reqs, desc=None: (sent.append(len(reqs)), stream(reqs, desc))[1])
        journal = Journal(tmp_path / "cut" / JOURNAL_NAME)
        generate.run(Stage(tmp_path / "cut", "iter_1/generate", "h"), INSTRUCTIONS, s,
                     JournaledEngine(hf, journal, "base"))
    assert sent == [6 - kept] and journal.reused == kept
    assert [(r["id"], r["response"]) for r in Stage(tmp_path / "cut", "iter_1/generate", "h").records()] == whole
