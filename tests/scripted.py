"""A deterministic engine for stage tests: it implements the engine interface, answers each request with a
scripted function of the request, and records every call, so a test drives the real stage code and asserts on
what the stage asked for and what it kept."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from selflen.engines.base import Completion, Engine, Request, Result, error_result

Reply = str | tuple[str, str] | None  # text (finish "stop"), (text, finish reason), or None for an engine error


class ScriptedEngine(Engine):
    name = "scripted"

    def __init__(self, reply: Callable[[Request], Reply]) -> None:
        self.reply = reply
        self.calls: list[list[Request]] = []
        self._adapters: dict[str, str] = {}

    def generate(self, requests: Sequence[Request], desc: str | None = None) -> list[Result]:
        self.calls.append(list(requests))
        out = []
        for req in requests:
            got = self.reply(req)
            if got is None:
                out.append(error_result("scripted failure"))
                continue
            text, finish = (got, "stop") if isinstance(got, str) else got
            out.append(Result([Completion(text, len(text.split()), finish)]))  # type: ignore[arg-type]
        return out

    def add_adapter(self, name: str, path: str) -> None:
        self._adapters[name] = path

    @property
    def requests(self) -> list[Request]:
        return [r for call in self.calls for r in call]


def user_text(req: Request) -> str:
    return req.messages[-1]["content"]
