"""A stage's generations kept on disk as each one finishes, so a stage stopped or killed mid-call loses none of them.

A stage hands the engine all its requests at once and writes its records when the call returns; before this
journal, a run cut 40 minutes into one call started that call over. Now every finished result is appended to
``<stage>/generations.jsonl`` under the hash of its request (the engine that served it, the messages, the
assistant prefix, the adapter and every sampling setting, seed included). When the same command runs again, the
stage asks for the same requests (its seeds come from the record ids), the journal answers the ones it holds and
only the rest go to the engine. The stage's own hash already pins its settings and inputs; the request hash pins
the rest, so a result is only ever reused for a request identical to the one that produced it.

Kept: results without an engine error, of seeded or greedy requests (an unseeded sampled request has no fixed
answer to reuse). The journal is deleted when its stage finishes: the stage's records then hold the results.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from selflen.engines.base import Completion, Engine, Request, Result, in_order
from selflen.errors import StoreError
from selflen.jsonl import read_jsonl

log = logging.getLogger(__name__)
JOURNAL_NAME = "generations.jsonl"
FSYNC_EVERY_S = 1.0  # each result is flushed at once (it survives the process); synced to disk at most this often


def request_key(request: Request, served: str) -> str | None:
    """The hash a result is kept under, or None for a request whose answer is not fixed (sampled, no seed)."""
    p = request.params
    if p.seed is None and not p.greedy:
        return None
    data = {"served": served, "messages": [dict(m) for m in request.messages], "prefix": request.prefix,
            "adapter": request.adapter, "params": asdict(p)}
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


def _to_row(key: str, result: Result) -> dict[str, Any]:
    return {"key": key, "prompt_tokens": result.prompt_tokens, "outputs": [asdict(o) for o in result.outputs]}


def _from_row(row: dict[str, Any]) -> Result:
    return Result([Completion(**o) for o in row["outputs"]], prompt_tokens=row["prompt_tokens"])


class Journal:
    """The results one stage has generated so far (``path``), read once at open and appended to as they come."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.results: dict[str, Result] = {}
        self.reused = 0  # results answered from the journal in this session
        try:
            for row in read_jsonl(self.path, repair=True):
                self.results[row["key"]] = _from_row(row)
        except (StoreError, KeyError, TypeError) as err:  # a cache: an unreadable one is started over, not fatal
            log.warning("generation journal %s is unreadable (%s): starting it over", self.path, err)
            self.results = {}
            self.path.unlink(missing_ok=True)
        if self.results:
            log.info("generation journal %s: %d results kept from an earlier run of this stage", self.path,
                     len(self.results))
        self._file: Any = None
        self._synced = 0.0

    def get(self, key: str | None) -> Result | None:
        return None if key is None else self.results.get(key)

    def put(self, key: str | None, result: Result) -> None:
        if key is None or not result.ok or key in self.results:
            return
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(json.dumps(_to_row(key, result), ensure_ascii=False) + "\n")
        self._file.flush()
        if time.monotonic() - self._synced >= FSYNC_EVERY_S:
            os.fsync(self._file.fileno())
            self._synced = time.monotonic()
        self.results[key] = result

    def close(self) -> None:
        if self._file is not None:
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def remove(self) -> None:
        """Delete the journal (its stage finished: the records hold every result now)."""
        self.close()
        self.path.unlink(missing_ok=True)


class JournaledEngine(Engine):
    """An engine whose results go through a ``Journal``: held results are answered from it, the others are
    generated, each kept as soon as the engine finishes it. ``served`` names the model behind the engine ("base",
    an adapter's run-unique name, a merged or full model folder), part of every request's key."""

    def __init__(self, engine: Engine, journal: Journal, served: str) -> None:
        self.engine, self.journal, self.served = engine, journal, served
        self.name = engine.name

    def generate(self, requests: Sequence[Request], desc: str | None = None) -> list[Result]:
        return in_order(self.stream(requests, desc), len(requests))

    def stream(self, requests: Sequence[Request], desc: str | None = None) -> Iterator[tuple[int, Result]]:
        keys = [request_key(r, self.served) for r in requests]
        todo = []
        for i, key in enumerate(keys):
            held = self.journal.get(key)
            if held is None:
                todo.append(i)
            else:
                self.journal.reused += 1
                yield i, held
        if len(todo) < len(requests):
            log.info("generation journal: %d of %d requests answered from an earlier run", len(requests) - len(todo),
                     len(requests))
        if not todo:
            return
        label = f"{desc} ({len(requests) - len(todo)} from the journal)" if desc and len(todo) < len(requests) \
            else desc
        with contextlib.closing(self.engine.stream([requests[i] for i in todo], desc=label)) as fresh:
            for j, res in fresh:
                i = todo[j]
                self.journal.put(keys[i], res)
                yield i, res

    def add_adapter(self, name: str, path: str) -> None:
        self.engine.add_adapter(name, path)

    def has_adapter(self, name: str) -> bool:
        return self.engine.has_adapter(name)

    def bind(self, adapter: str | None) -> Engine:
        return JournaledEngine(self.engine.bind(adapter), self.journal, self.served)
