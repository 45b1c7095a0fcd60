"""A loopback stand-in for the Hugging Face hub (and a plain port that answers) in tests: no test reaches a public
address. ``HubStandIn`` serves model repositories from local folders over the few routes the hub client uses to
download a snapshot (repo info, the file tree, ``resolve``) and to upload one (create a repo, preupload, commit),
and records every request, so a test can also assert that nothing was asked at all.

    with HubStandIn({"selflen-test/tiny": folder}) as hub:      # hub.url -> http://127.0.0.1:PORT
        env = {"HF_ENDPOINT": hub.url}; ...; assert hub.requests == []
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubStandIn:
    """Repositories ``{repo_id: folder}`` served at ``self.url``; uploads land in ``self.uploads[key]``, the key
    ``models/<repo_id>`` or ``datasets/<repo_id>``."""

    def __init__(self, repos: dict[str, Path] | None = None) -> None:
        self.repos = {k: Path(v) for k, v in (repos or {}).items()}
        self.requests: list[tuple[str, str]] = []
        self.created: list[dict[str, Any]] = []
        self.uploads: dict[str, dict[str, bytes]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def files(self, repo: str) -> dict[str, bytes]:
        root = self.repos[repo]
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None,
                      ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, obj: Any, code: int = 200) -> None:
                self._send(code, json.dumps(obj).encode(), {"X-Error-Code": "RepoNotFound"} if code == 404 else None)

            def _route(self) -> None:
                path = unquote(urlsplit(self.path).path)
                hub.requests.append((self.command, path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.command == "POST":
                    return self._post(path, body)
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 6:
                    repo, kind = "/".join(parts[2:4]), parts[4]
                    if repo not in hub.repos:
                        return self._json({"error": "Repository not found"}, 404)
                    files = hub.files(repo)
                    if kind == "revision":
                        return self._json({"id": repo, "sha": COMMIT, "siblings": [{"rfilename": f} for f in files]})
                    if kind == "tree":
                        return self._json([{"type": "file", "path": f, "size": len(d), "oid": _blob_id(d)}
                                           for f, d in files.items()])
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo, name = "/".join(parts[:2]), "/".join(parts[4:])
                    data = hub.files(repo).get(name) if repo in hub.repos else None
                    if data is None:
                        return self._json({"error": "Entry not found"}, 404)
                    return self._send(200, data, {"X-Repo-Commit": COMMIT, "ETag": f'"{_blob_id(data)}"'},
                                      "application/octet-stream")
                return self._json({"error": f"no route {path}"}, 404)

            def _post(self, path: str, body: bytes) -> None:
                parts = path.strip("/").split("/")
                if path == "/api/repos/create":
                    spec = json.loads(body or b"{}")
                    hub.created.append(spec)
                    repo = f"{spec.get('organization') or 'user'}/{spec['name']}"
                    return self._json({"url": f"{hub.url}/{repo}", "name": repo})
                if path == "/api/validate-yaml":
                    return self._json({"errors": [], "warnings": []})
                if len(parts) >= 6 and parts[4] == "preupload":
                    files = json.loads(body or b"{}").get("files", [])
                    return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                 for f in files]})
                if len(parts) >= 6 and parts[4] == "commit":
                    repo = "/".join(parts[1:4])  # models/org/name, datasets/org/name
                    got = hub.uploads.setdefault(repo, {})
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item.get("key") == "file":
                            got[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    return self._json({"commitUrl": f"{hub.url}/{repo}/commit/{COMMIT}", "commitOid": COMMIT,
                                       "success": True})
                return self._json({"error": f"no route {path}"}, 404)

            do_GET = do_HEAD = do_POST = _route

        return Handler
