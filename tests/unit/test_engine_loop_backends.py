"""What the whole loop needs from the openai and vllm backends, against a fake server that behaves like vLLM's:
adapters reloaded by later engines of the same run (after training, after a restart), adapter names unique per run
on a shared server, at most four stop strings per request, and manifests that say which adapter generated a stage.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from selflen.engines import EnginePool
from selflen.engines.base import Request, SamplingParams
from selflen.engines.openai import MAX_STOP, OpenAIEngine
from selflen.errors import EngineUnavailable, SelflenError
from selflen.launch import free_port
from tests.scripted import ScriptedEngine

pytestmark = pytest.mark.unit
STOPS = ("\n\n---", "\n\n\n", "\n---", "---", "\nInstruction")  # the reference's four plus instruct's own


class _VLLMLike(BaseHTTPRequestHandler):
    """vLLM's answers: 400 on a second load of a loaded name, 404 on unloading an unknown one, 400 on more than
    four stop strings; a chat answer that runs past a stop string the client did not send."""

    def log_message(self, *_args: object) -> None:
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        srv = self.server.fake  # type: ignore[attr-defined]
        if self.path != "/v1/models":
            return self._send(404, {"detail": "Not Found"})
        return self._send(200, {"object": "list", "data": [{"id": m} for m in [srv.model, *srv.adapters]]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv = self.server.fake  # type: ignore[attr-defined]
        srv.bodies.append((self.path, body))
        if self.path == "/v1/load_lora_adapter" and srv.runtime_lora:
            if body["lora_name"] in srv.adapters:
                return self._send(
                    400, {"error": {"message": f"The lora adapter '{body['lora_name']}' has already been loaded."}}
                )
            srv.adapters[body["lora_name"]] = body["lora_path"]
            return self._send(200, "Success")
        if self.path == "/v1/unload_lora_adapter" and srv.runtime_lora:
            if srv.adapters.pop(body["lora_name"], None) is None:
                return self._send(404, {"error": {"message": "cannot be found"}})
            return self._send(200, "Success")
        if self.path == "/v1/chat/completions":
            if isinstance(body.get("stop"), list) and len(body["stop"]) > MAX_STOP:
                return self._send(400, {"error": {"message": "body.stop: too_long"}})
            text = srv.answer + ("\n\n---" if body.get("include_stop_str_in_output") else "")
            return self._send(
                200,
                {
                    "choices": [{"index": 0, "message": {"content": text}, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 9},
                },
            )
        return self._send(404, {"detail": "Not Found"})


class FakeVLLM:
    def __init__(self, runtime_lora: bool = True) -> None:
        self.adapters: dict[str, str] = {}
        self.bodies: list[tuple[str, dict]] = []
        self.runtime_lora = runtime_lora
        self.model = "base"
        self.answer = "A short essay.\nInstruction 5: another one"
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _VLLMLike)
        self.httpd.fake = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake():
    srv = FakeVLLM()
    yield srv
    srv.close()


def _engine(url: str) -> OpenAIEngine:
    return OpenAIEngine(
        "base", base_url=url, concurrency=2, timeout_s=5, max_retries=1, backoff_s=0.01, load_adapters=True
    )


def _adapter(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name / "adapter"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"")
    return folder


def test_a_later_engine_of_the_same_run_reloads_an_adapter_the_server_already_has(
    fake: FakeVLLM, tmp_path: Path
) -> None:
    """The pool's engines are closed before each training and on a restart, the server keeps its adapters: the
    next engine loading ``<tag>-gen1`` again used to get vLLM's 400 "already been loaded" and stop the run."""
    gen1 = _adapter(tmp_path, "gen1")
    first = _engine(fake.url)
    first.add_adapter("t-gen1", str(gen1))
    first.close()
    again = _engine(fake.url)  # iteration 2 after training, or the same run resumed
    again.add_adapter("t-gen1", str(gen1))
    assert fake.adapters == {"t-gen1": str(gen1)}
    loads = [b for path, b in fake.bodies if path == "/v1/load_lora_adapter"]
    assert len(loads) == 2  # loaded afresh: the folder may hold a redone fine-tune
    again.add_adapter("t-gen1", str(gen1))  # known to this engine: nothing sent
    assert len([p for p, _ in fake.bodies if p == "/v1/load_lora_adapter"]) == 2
    again.close()


def test_two_runs_on_one_server_register_different_names(fake: FakeVLLM, tmp_path: Path) -> None:
    gen1 = _adapter(tmp_path, "gen1")

    def pool(run: str) -> EnginePool:
        from selflen.store import config_hash

        return EnginePool(tmp_path, lambda _d: _engine(fake.url), tag=config_hash(str(tmp_path / run))[:8])

    a, b = pool("run_a"), pool("run_b")
    name_a = a.for_folder(gen1, "gen1").adapter  # type: ignore[attr-defined]
    name_b = b.for_folder(gen1, "gen1").adapter  # type: ignore[attr-defined]
    assert name_a != name_b and name_a.endswith("-gen1") and name_b.endswith("-gen1")
    assert set(fake.adapters) == {name_a, name_b}
    assert a.served == [name_a] and b.served == [name_b]
    a.close()
    b.close()


def test_a_server_without_runtime_lora_stops_with_one_line_saying_what_to_set(tmp_path: Path) -> None:
    srv = FakeVLLM(runtime_lora=False)
    try:
        eng = _engine(srv.url)
        with pytest.raises(SelflenError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING=True") as info:
            eng.add_adapter("t-gen1", str(_adapter(tmp_path, "gen1")))
        assert "\n" not in str(info.value) and "HTTP 404" in str(info.value)
        eng.close()
    finally:
        srv.close()


def test_a_server_serving_another_model_stops_the_loop_before_any_request(fake: FakeVLLM) -> None:
    """Without the check every request failed with a counted 404: stages finished "done" with nothing kept."""
    fake.model = "/somewhere/else"
    eng = _engine(fake.url)
    with pytest.raises(SelflenError, match="serves \\['/somewhere/else'\\], not 'base': start it with --model base"):
        eng.generate([Request([{"role": "user", "content": "go"}])])
    assert not [p for p, _ in fake.bodies if p == "/v1/chat/completions"]
    eng.close()
    fake.model = "base"
    with _engine(fake.url) as eng:
        assert eng.generate([Request([{"role": "user", "content": "go"}])])[0].ok


def test_a_server_that_is_down_when_an_adapter_is_loaded_is_unavailable(tmp_path: Path) -> None:
    port = free_port()  # a loopback port nobody listens on
    eng = _engine(f"http://127.0.0.1:{port}/v1")
    with pytest.raises(EngineUnavailable, match="re-run the same command"):
        eng.add_adapter("t-gen1", str(_adapter(tmp_path, "gen1")))
    eng.close()


def test_more_than_four_stop_strings_reach_the_server_reduced_and_are_all_cut_client_side(fake: FakeVLLM) -> None:
    """The instruct stage stops on five strings; vLLM (like the OpenAI API) refuses more than four."""
    eng = _engine(fake.url)
    req = Request([{"role": "user", "content": "go"}], SamplingParams(max_new_tokens=9, stop=STOPS))
    res = eng.generate([req])[0]
    assert res.ok, res.outputs[0].error
    sent = fake.bodies[-1][1]
    assert sent["stop"] == ["\n\n\n", "---", "\nInstruction"] and sent["include_stop_str_in_output"] is True
    # cut at the earliest of all five, as the vllm and hf engines cut; the text ended at a stop, not the budget
    assert res.text == "A short essay." and res.outputs[0].finish_reason == "stop"
    eng.close()


def test_a_stage_manifest_names_the_adapter_that_generated_it(tmp_path: Path) -> None:
    """``served_by`` in done.json: how a run (or a test) shows that iteration 2 generated with iteration 1's
    adapters, on any backend."""
    from hydra import compose, initialize_config_dir

    from selflen.cli import register_resolvers
    from selflen.config import CONF_DIR, to_config
    from selflen.stage_runner import Runner
    from selflen.stages import generate
    from selflen.store import RunLayout
    from selflen.tracking import NullLogger

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        raw = compose("train", overrides=["debug=smoke", "logger=none"])
    raw.paths.root, raw.paths.run_dir = str(tmp_path), str(tmp_path / "run")
    cfg = to_config(raw)
    runner = Runner(cfg, RunLayout(tmp_path / "run"), tmp_path, NullLogger())
    engine = ScriptedEngine(lambda req: "one two three")
    runner.engines = EnginePool(tmp_path, lambda _d: engine, tag=runner.engines.tag)
    _adapter(tmp_path / "run", "iter_1/finetune_gen")
    insts = [{"id": "i0", "instruction": "Write a long essay."}]
    s = generate.settings(cfg)
    for k in (1, 2):
        runner.run(k, "generate", s, [], lambda st, k=k: generate.run(st, insts, s, runner.role_engine("gen", k)))
    served = {
        k: json.loads((tmp_path / "run" / f"iter_{k}" / "generate" / "done.json").read_text())["served_by"]
        for k in (1, 2)
    }
    assert served == {1: ["base"], 2: [f"{runner.engines.tag}-gen1"]}
    assert {r.adapter for r in engine.requests} == {None, f"{runner.engines.tag}-gen1"}
