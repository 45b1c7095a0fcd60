"""An OpenAI-compatible server on loopback that misbehaves on demand (never a public address).

``mode`` picks what every chat request gets: ``ok`` (a deterministic answer), ``500``, ``400``, ``notjson`` (200 with
an HTML page), ``nochoices`` (200 with JSON that is no completion), ``stall`` (no answer for ``stall_s``); ``fail_if``
fails (HTTP 400) only the prompts containing it; ``die_at`` stops the server on that request, for ``down_s`` seconds
(None: it stays down).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *_args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_error(404)

    def do_POST(self) -> None:
        owner: FaultyServer = self.server.owner  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        with owner.lock:
            owner.hits += 1
            crash = owner.hits == owner.die_at
        if crash:
            self.close_connection = True
            threading.Thread(target=owner.crash, daemon=True).start()
            return
        if owner.mode == "stall":
            time.sleep(owner.stall_s)
            return
        prompt = (body.get("messages") or [{}])[-1].get("content", "")
        if owner.mode in ("500", "400") or (owner.fail_if and owner.fail_if in prompt):
            self._send(int(owner.mode) if owner.mode in ("500", "400") else 400, b'{"error": "refused"}')
            return
        if owner.mode == "notjson":
            self._send(200, b"<html><body>Welcome to our proxy</body></html>", "text/html")
            return
        if owner.mode == "nochoices":
            self._send(200, json.dumps({"object": "list", "data": []}).encode())
            return
        text = f"An answer to: {prompt[:60]}. It ends well."
        choices = [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                   for i in range(int(body.get("n", 1)))]
        usage = {"prompt_tokens": 3, "completion_tokens": 9}
        self._send(200, json.dumps({"choices": choices, "usage": usage}).encode())

    def _send(self, code: int, data: bytes, kind: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FaultyServer:
    def __init__(self, mode: str = "ok") -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.mode, self.fail_if, self.stall_s = mode, "", 30.0
        self.die_at, self.down_s = 0, None
        self.hits = 0
        self.lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FaultyServer:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def crash(self) -> None:
        self.stop()
        if self.down_s is not None:
            time.sleep(self.down_s)
            self.start()
