"""Class 2 of issue 33: a fault is never a success.

Each server fault of ``cases.SERVER_FAULTS`` is tried on the real generate stage through the ``Runner`` with
``backend=openai`` and a loopback server (``faulty_server``): a dead server stops with one line and resumes; an
engine error (malformed answers, 4xx, a server that died and stayed down) leaves the stage undone with one line
naming backend and cause, and once the server is fixed the same stage ends with the records of a run that never saw
the fault. Then what is not a stage of records: evaluation, fine-tune, summary, ``evaluation score``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from selflen.errors import EngineFailed, EngineUnavailable, SelflenError
from tests.reliability.cases import DOWN, NOT_DONE, SERVER_FAULTS
from tests.reliability.faulty_server import FaultyServer

pytestmark = pytest.mark.unit
INSTRUCTIONS = [{"id": f"i{k}", "instruction": f"Write about topic {k}."} for k in range(6)]


def _runner(tmp_path: Path, url: str, name: str = "run", retries: int = 1, timeout_s: float = 5.0):
    from hydra import compose, initialize_config_dir

    from selflen.cli import register_resolvers
    from selflen.config import CONF_DIR, to_config
    from selflen.stage_runner import Runner
    from selflen.store import RunLayout
    from selflen.tracking import NullLogger

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        raw = compose("train", overrides=["debug=smoke", "logger=none", "backend=openai", f"backend.base_url={url}",
                                          "backend.concurrency=2", f"backend.max_retries={retries}",
                                          f"backend.timeout_s={timeout_s}"])
    raw.paths.root = str(tmp_path)
    raw.paths.run_dir = str(tmp_path / name)
    cfg = to_config(raw)
    return Runner(cfg, RunLayout(tmp_path / name), tmp_path, NullLogger())


def _generate(runner):
    from selflen.stages import generate

    s = generate.settings(runner.cfg)
    try:
        return runner.run(1, "generate", s, ["root"],
                          lambda st: generate.run(st, INSTRUCTIONS, s, runner.engines.for_folder(None, "base")))
    finally:
        runner.engines.close()


def _records(runner) -> list[dict]:
    return sorted(runner.stages["iter_1/generate"].records(), key=lambda r: r["id"])


@pytest.fixture(scope="module")
def clean_records(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The generate stage's records on a server that never fails: what every fixed run must end with."""
    srv = FaultyServer().start()
    try:
        runner = _runner(tmp_path_factory.mktemp("clean"), srv.url)
        _generate(runner)
        return _records(runner)
    finally:
        srv.stop()


MODES = {"HTTP 500 on every request": "500", "HTTP 400 on every request": "400",
         "stalls past backend.timeout_s": "stall", "200 with a body that is not JSON": "notjson",
         "200 with JSON that is no completion": "nochoices"}


def _arrange(srv: FaultyServer, fault: str) -> FaultyServer | None:
    """Set ``srv`` up for ``fault`` and start it; None: nothing listens."""
    if fault.startswith("refused"):
        return None
    srv.mode, srv.stall_s = MODES.get(fault, "ok"), 3.0
    if fault.startswith("dies mid-stage"):
        srv.die_at, srv.down_s = 5, (0.3 if "comes back" in fault else None)
    if fault.startswith("fails some"):
        srv.fail_if = "topic 3"
    return srv.start()


@pytest.mark.parametrize("fault", list(SERVER_FAULTS))
def test_server_fault(tmp_path: Path, fault: str, clean_records: list[dict]) -> None:
    outcome = SERVER_FAULTS[fault]
    srv = FaultyServer()
    started = _arrange(srv, fault)
    runner = _runner(tmp_path, srv.url, retries=1 if "comes back" not in fault else 4, timeout_s=1.0)
    done = runner.layout.stage(1, "generate") / "done.json"
    try:
        if outcome in (DOWN, NOT_DONE):
            with pytest.raises(EngineUnavailable if outcome == DOWN else EngineFailed) as info:
                _generate(runner)
            msg = str(info.value)
            assert "\n" not in msg and "re-run the same command" in msg, msg
            assert srv.url in msg or "backend openai" in msg, msg
            assert not done.exists()  # never a finished stage
            kept = [r for r in runner.stages["iter_1/generate"].records() if r["status"] == "ok"]
            assert all(r in clean_records for r in kept)  # what was answered is kept as it is
        else:
            _generate(runner)
            assert done.exists() and _records(runner) == clean_records
    finally:
        if started is not None:
            srv.stop()
    if outcome in (NOT_DONE, DOWN):  # the server is fixed: the same command ends as a clean run
        fixed = FaultyServer()
        fixed.port = srv.port
        fixed.start()
        try:
            again = _runner(tmp_path, fixed.url)
            _generate(again)
            assert done.exists() and _records(again) == clean_records
        finally:
            fixed.stop()


def test_an_evaluation_with_an_engine_error_is_not_done(tmp_path: Path) -> None:
    from selflen.stages import evaluate
    from selflen.store import Stage
    from tests.scripted import ScriptedEngine
    from tests.unit.test_stage_evaluate import _rows, _settings

    replies = iter(["One.", "Two.", None, "Four."])
    stage = Stage(tmp_path / "iter_1" / "evaluate", "iter_1/evaluate", "h")
    with pytest.raises(EngineFailed, match="1 of its 4 requests [(]scripted failure[)]"):
        evaluate.run(stage, evaluate.EvaluateInputs(_rows()), _settings(), ScriptedEngine(lambda req: next(replies)))
    assert not stage.done and not (stage.dir / "summary.json").exists()


def test_a_finetune_on_zero_examples_is_an_error(tmp_path: Path) -> None:
    from selflen.stages import finetune
    from selflen.store import RunLayout, Stage
    from tests.defaults import config

    data = tmp_path / "iter_1" / "sft_data" / "gen.jsonl"
    data.parent.mkdir(parents=True)
    data.write_text("\n")
    stage = Stage(tmp_path / "iter_1" / "finetune_gen", "iter_1/finetune_gen", "h")
    inputs = finetune.FinetuneInputs(data, tmp_path / "no-model", RunLayout(tmp_path))
    with pytest.raises(SelflenError, match=rf"iter_1/finetune_gen: no training example in {data}") as info:
        finetune.run(stage, inputs, finetune.settings(config(), "gen"))
    assert "\n" not in str(info.value) and not stage.done
    data.unlink()
    with pytest.raises(SelflenError, match=r"training data .* is missing; .*redo=\[iter_1/sft_data\]"):
        finetune.run(stage, inputs, finetune.settings(config(), "gen"))


def test_the_summary_says_which_stages_rest_on_engine_errors() -> None:
    from selflen.report.summary import engine_errors

    manifests = {"iter_1/generate": {"engine": {"retries": 3, "errors": 2}},
                 "iter_1/extend": {"engine": {"retries": 1}}, "iter_1/select": {}}
    assert engine_errors(manifests) == {"iter_1/generate": 2}
    assert engine_errors({"iter_1/select": {}}) == {}


@pytest.mark.parametrize("content", [b"", b"\n\n", b"{oops\n"])
def test_evaluation_score_refuses_an_input_with_no_rows(tmp_path: Path, content: bytes,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from evaluation.__main__ import main

    src = tmp_path / "in.jsonl"
    src.write_bytes(content)
    out = tmp_path / "scored.jsonl"
    code = main(["score", "--benchmark", "longbench_write", "--input", str(src), "--output", str(out),
                 "--summary", str(tmp_path / "summary.json"), "--skip-bad"])
    err = capsys.readouterr().err
    assert code == 2 and f"error: {src}: no" in err and err.count("\n") == 1
    assert not out.exists() and not (tmp_path / "summary.json").exists()


def test_a_length_control_rewrite_the_engine_failed_is_not_replaced_by_the_template(tmp_path: Path) -> None:
    from selflen.stages import length_control
    from selflen.store import Stage
    from tests.scripted import ScriptedEngine
    from tests.unit.test_stage_length_control import POOLED, _rewriter, _settings

    stage = Stage(tmp_path / "final" / "length_control", "final/length_control", "h")
    failing = ScriptedEngine(lambda req: None if "subject 2" in req.messages[-1]["content"] else _rewriter(req))
    with pytest.raises(EngineFailed, match="final/length_control: backend scripted failed 1 of its 6 requests"):
        length_control.run(stage, POOLED, _settings(), failing)
    assert stage.records() == [] and not stage.done
    result = length_control.run(stage, POOLED, _settings(), ScriptedEngine(_rewriter))  # fixed: the same command
    assert result.counts["examples"] == len(POOLED)
