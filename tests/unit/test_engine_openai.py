"""OpenAI engine against a fake OpenAI-compatible server on loopback: it dies mid-stage and comes back (the
requests are retried, nothing lost or duplicated), or it stays down (one clear error after bounded retries)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from selflen.engines.base import Request, SamplingParams
from selflen.engines.openai import OpenAIEngine
from selflen.errors import EngineFailed, EngineUnavailable
from selflen.store import Stage

pytestmark = pytest.mark.unit


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *_args: object) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/v1/chat/completions":
            prompt = body["messages"][-1]["content"]
            choice = {"index": 0, "message": {"role": "assistant", "content": f"echo: {prompt}"},
                      "finish_reason": "stop"}
        elif self.path == "/v1/completions":
            choice = {"index": 0, "text": f"echo: {body['prompt']}", "finish_reason": "stop"}
        else:
            self.send_error(404)
            return
        owner = self.server.owner  # type: ignore[attr-defined]
        with owner.lock:
            owner.hits += 1
            crash = owner.hits == owner.die_at
        if crash:  # die mid-request: no answer on this connection, then down for a while, then back
            self.close_connection = True
            threading.Thread(target=owner.crash_and_restart, daemon=True).start()
            return
        data = json.dumps({"choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeServer:
    """A deterministic OpenAI-compatible server on 127.0.0.1 that can be stopped and started on the same port."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.httpd: ThreadingHTTPServer | None = None
        self.hits = 0
        self.die_at = 0  # the request number on which the server dies (0: never)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


    def crash_and_restart(self, down_s: float = 0.5) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


@pytest.fixture
def server():
    srv = FakeServer()
    srv.start()
    yield srv
    srv.stop()


def _requests(names: list[str]) -> list[Request]:
    params = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=8)
    return [Request(messages=[{"role": "user", "content": n}], params=params) for n in names]


def _engine(srv: FakeServer, retries: int = 6) -> OpenAIEngine:
    return OpenAIEngine("m", base_url=srv.url, concurrency=2, timeout_s=2.0, max_retries=retries, backoff_s=0.05)


def _stage_pass(stage: Stage, engine: OpenAIEngine, names: list[str]) -> None:
    todo = [n for n in names if not stage.has(n)]
    for name, res in zip(todo, engine.generate(_requests(todo)), strict=True):
        assert res.ok, res
        stage.append({"id": name, "text": res.outputs[0].text})


def test_server_killed_mid_stage_and_restarted_loses_and_duplicates_nothing(server: FakeServer,
                                                                           tmp_path: Path) -> None:
    stage = Stage(tmp_path / "generate", "generate", "h")
    engine = _engine(server)
    names = [f"q{i}" for i in range(8)]
    _stage_pass(stage, engine, names[:4])  # the first half of the stage
    server.stop()  # the server dies mid-stage ...
    threading.Timer(0.4, server.start).start()  # ... and comes back while the engine retries
    _stage_pass(stage, engine, names)
    recs = stage.records()
    assert [r["id"] for r in recs] == names  # nothing lost, nothing duplicated, in order
    assert all(r["text"] == f"echo: {r['id']}" for r in recs)
    assert engine.stats["retries"] > 0 and engine.stats["errors"] == 0
    engine.close()


def test_server_that_stays_down_stops_with_one_line_after_bounded_retries(server: FakeServer,
                                                                         tmp_path: Path) -> None:
    stage = Stage(tmp_path / "generate", "generate", "h")
    engine = _engine(server, retries=2)
    _stage_pass(stage, engine, ["a", "b"])
    server.stop()
    t0 = time.time()
    with pytest.raises(EngineUnavailable, match=rf"{server.url} answered none of 2 requests after 2 retries") as info:
        _stage_pass(stage, engine, ["a", "b", "c", "d"])
    assert time.time() - t0 < 10  # bounded
    assert "\n" not in str(info.value) and "re-run the same command" in str(info.value)
    assert engine.stats["transport_errors"] == 2
    assert [r["id"] for r in stage.records()] == ["a", "b"]  # nothing half-written
    server.start()  # later: the same stage resumes where it stopped
    _stage_pass(Stage(tmp_path / "generate", "generate", "h"), engine, ["a", "b", "c", "d"])
    assert [r["id"] for r in stage.records()] == ["a", "b", "c", "d"]
    engine.close()


def test_a_client_error_on_every_request_is_raised_as_one_line(server: FakeServer) -> None:
    engine = _engine(server, retries=0)
    ok = engine.generate(_requests(["x"]))
    assert ok[0].ok and ok[0].outputs[0].text == "echo: x"
    engine.base_url = server.url.replace("/v1", "/nowhere")  # 404: a client error, not a dead server
    with pytest.raises(EngineFailed, match="backend openai: .* failed all 1 requests [(]HTTP 404") as info:
        engine.generate(_requests(["y"]))  # counted, and no longer a "result" of empty answers (issue 33)
    assert "\n" not in str(info.value)
    assert engine.stats["errors"] == 1 and engine.stats["transport_errors"] == 0
    engine.close()


def test_generate_stage_with_backend_openai_survives_a_server_crash(server: FakeServer, tmp_path: Path) -> None:
    """The real generate stage through the Runner with ``backend=openai``: the server dies on the 5th request
    and is back 0.5 s later; the stage completes, every sample id once, and done.json counts the retries."""
    from hydra import compose, initialize_config_dir

    from selflen.cli import register_resolvers
    from selflen.config import CONF_DIR, to_config
    from selflen.stage_runner import Runner
    from selflen.stages import generate
    from selflen.store import RunLayout
    from selflen.tracking import NullLogger

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        raw = compose("train", overrides=["debug=smoke", "logger=none", "backend=openai",
                                          f"backend.base_url={server.url}", "backend.concurrency=2"])
    raw.paths.root = str(tmp_path)
    raw.paths.run_dir = str(tmp_path / "run")
    cfg = to_config(raw)
    runner = Runner(cfg, RunLayout(tmp_path / "run"), tmp_path, NullLogger())
    insts = [{"id": f"i{k}", "instruction": f"Write a long essay about topic {k}."} for k in range(6)]
    s = generate.settings(cfg)
    server.die_at = 5
    st = runner.run(1, "generate", s, ["root"],
                    lambda st: generate.run(st, insts, s, runner.engines.for_folder(None, "base")))
    runner.engines.close()
    ids = [r["id"] for r in st.records()]
    expected = [f"i{k}-s{j}" for k in range(6) for j in range(s.generate.samples)]
    assert sorted(ids) == sorted(expected)  # none lost or twice
    assert not any(r["reason"] == "engine_error" for r in st.records())
    manifest = json.loads((st.dir / "done.json").read_text())
    assert manifest["engine"]["retries"] >= 1 and "errors" not in manifest["engine"]


def test_stop_loops_asks_the_server_for_repetition_detection_and_reads_its_finish_reason() -> None:
    engine = OpenAIEngine("m", base_url="http://127.0.0.1:9", max_retries=0)
    guarded = Request([{"role": "user", "content": "hi"}], SamplingParams(stop_loops=True, stop=("---",)))
    body = engine._payload(guarded)
    assert body["repetition_detection"] == {"max_pattern_size": 128, "min_pattern_size": 8, "min_count": 3}
    assert "repetition_detection" not in engine._payload(Request(guarded.messages, SamplingParams()))

    def parse(text: str, finish: str) -> str:
        data = {"choices": [{"index": 0, "message": {"content": text}, "finish_reason": finish}]}
        return OpenAIEngine._parse(data, guarded).outputs[0].finish_reason

    assert parse("la la la", "repetition") == "loop"
    assert parse("la la la", "length") == "length"
    assert parse("la la\n---la", "repetition") == "stop"  # the client cut it at a stop string first


def test_min_new_tokens_is_sent_as_min_tokens_within_the_budget() -> None:
    engine = OpenAIEngine("m", base_url="http://127.0.0.1:9", max_retries=0)
    chat = [{"role": "user", "content": "hi"}]
    assert engine._payload(Request(chat, SamplingParams(min_new_tokens=40)))["min_tokens"] == 40
    assert engine._payload(Request(chat, SamplingParams(min_new_tokens=900, max_new_tokens=64)))["min_tokens"] == 64
    assert "min_tokens" not in engine._payload(Request(chat, SamplingParams()))


def test_stream_yields_every_answer_once_as_it_arrives(server: FakeServer) -> None:
    engine = _engine(server)
    names = [f"q{i}" for i in range(7)]
    streamed = list(engine.stream(_requests(names)))
    assert sorted(i for i, _ in streamed) == list(range(7))
    assert all(res.outputs[0].text == f"echo: {names[i]}" for i, res in streamed)
    assert [r.text for r in engine.generate(_requests(names))] == [f"echo: {n}" for n in names]
    engine.close()
