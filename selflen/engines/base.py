"""The one seam everything generates through: requests in, results out, in order.

A request is a chat (a list of ``{"role", "content"}`` messages), optionally with an assistant ``prefix``
that the model must *continue* (the Extender's second stage), the name of a LoRA adapter (``None`` means
the base model) and sampling parameters. Chat formatting always comes from the tokenizer's own template.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

FinishReason = Literal["stop", "length", "loop", "error"]  # loop: stopped early by ``SamplingParams.stop_loops``


@dataclass(frozen=True)
class LoopRule:
    """``stop_loops``: a generation ends once its last tokens are ``count`` back-to-back copies of one pattern of
    ``min_pattern..max_pattern`` tokens (vLLM's ``repetition_detection`` rule). Three copies of 8+ tokens (in English
    prose 5+ words each) hold a repeated 10-word window, which the repeated-n-gram filter drops whatever follows."""

    min_pattern: int = 8
    max_pattern: int = 128
    count: int = 3


LOOP = LoopRule()


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings shared by every engine (temperature 0 means greedy)."""

    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    repetition_penalty: float = 1.1
    max_new_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    stop_loops: bool = False  # end a generation caught in a verbatim loop (finish reason "loop")
    min_new_tokens: int = 0  # EOS held back until this many new tokens (vLLM's min_tokens, which also holds stop
    # strings; the hf engine holds EOS only); capped at the budget

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def with_(self, **changes: object) -> SamplingParams:
        """A copy with some fields changed (``params.with_(seed=3)``)."""
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Request:
    """One generation request; ``prefix`` is an assistant message start to continue verbatim."""

    messages: tuple[dict[str, str], ...] | list[dict[str, str]]
    params: SamplingParams = field(default_factory=SamplingParams)
    prefix: str | None = None
    adapter: str | None = None


@dataclass
class Completion:
    """One sampled continuation. ``text`` excludes the prefix and any stop string."""

    text: str
    tokens: int
    finish_reason: FinishReason
    error: str | None = None


@dataclass
class Result:
    """All ``n`` completions of one request, plus its prompt size in tokens."""

    outputs: list[Completion]
    prompt_tokens: int = 0

    @property
    def text(self) -> str:
        return self.outputs[0].text

    @property
    def ok(self) -> bool:
        return all(o.finish_reason != "error" for o in self.outputs)


def error_result(message: str, n: int = 1) -> Result:
    """A result that records a failure instead of raising, so callers can count it."""
    return Result(outputs=[Completion(text="", tokens=0, finish_reason="error", error=message) for _ in range(n)])


def in_order(pairs: Iterator[tuple[int, Result]], count: int) -> list[Result]:
    """The results of a ``stream`` of ``count`` requests, in request order (``generate`` from ``stream``)."""
    results: list[Result | None] = [None] * count
    for i, res in pairs:
        results[i] = res
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        raise RuntimeError(f"the engine's stream ended without results for requests {missing[:5]}")
    return results  # type: ignore[return-value]


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string; return the kept text and whether a stop was hit.

    >>> truncate_at_stop("one\\n---two", ["---"])
    ('one\\n', True)
    >>> truncate_at_stop("plain", ["###"])
    ('plain', False)
    """
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def ends_in_loop(tokens: Sequence[int], rule: LoopRule = LOOP) -> bool:
    """Whether ``tokens`` end in ``rule.count`` back-to-back copies of one pattern of ``rule.min_pattern..
    rule.max_pattern`` tokens: the test ``stop_loops`` applies after every new token.

    >>> short = LoopRule(min_pattern=3)
    >>> ends_in_loop([1, 2, 3] * 3, short)
    True
    >>> ends_in_loop([9] + [1, 2, 3] * 2 + [1, 2, 4], short)
    False
    >>> ends_in_loop([7] * 9, short)  # a run of one token is a loop of any pattern size
    True
    """
    n, count = len(tokens), rule.count
    for size in range(rule.min_pattern, rule.max_pattern + 1):
        if size * count > n:
            return False
        if tokens[n - 1] != tokens[n - 1 - size]:  # the common case, rejected in one comparison
            continue
        tail = list(tokens[n - size :])
        if all(list(tokens[n - size * (m + 1) : n - size * m]) == tail for m in range(1, count)):
            return True
    return False


class Engine(abc.ABC):
    """Generation backend. Use as a context manager so resources are always released."""

    name: str = "engine"

    @abc.abstractmethod
    def generate(self, requests: Sequence[Request], desc: str | None = None) -> list[Result]:
        """Run all requests; results come back in the same order. Failures are ``error`` results."""

    def stream(self, requests: Sequence[Request], desc: str | None = None) -> Iterator[tuple[int, Result]]:
        """``(index, result)`` for every request, each as soon as it is finished (so a caller can keep it before
        the rest are done: ``selflen.engines.journal``). This default yields them all at the end of ``generate``;
        the engines that finish requests one by one (hf per batch, vLLM per step, OpenAI per call) override it."""
        yield from enumerate(self.generate(requests, desc=desc))

    @abc.abstractmethod
    def add_adapter(self, name: str, path: str) -> None:
        """Make a LoRA adapter folder available under ``name`` for later requests."""

    def has_adapter(self, name: str) -> bool:
        return name in getattr(self, "_adapters", {})

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release memory, processes and connections. Idempotent."""

    def bind(self, adapter: str | None) -> Engine:
        """This engine playing one role: every request goes to ``adapter`` (None = the base model)."""
        return BoundEngine(self, adapter)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BoundEngine(Engine):
    """An engine with its adapter fixed, so a stage never handles adapter names. It owns nothing: ``close`` is a
    no-op, the engine it wraps is closed by whoever built it."""

    def __init__(self, engine: Engine, adapter: str | None) -> None:
        self.engine = engine
        self.adapter = adapter
        self.name = engine.name

    def generate(self, requests: Sequence[Request], desc: str | None = None) -> list[Result]:
        return self.engine.generate([replace(r, adapter=self.adapter) for r in requests], desc=desc)

    def stream(self, requests: Sequence[Request], desc: str | None = None) -> Iterator[tuple[int, Result]]:
        return self.engine.stream([replace(r, adapter=self.adapter) for r in requests], desc=desc)

    def add_adapter(self, name: str, path: str) -> None:
        self.engine.add_adapter(name, path)

    def has_adapter(self, name: str) -> bool:
        return self.engine.has_adapter(name)

    def bind(self, adapter: str | None) -> Engine:
        return BoundEngine(self.engine, adapter)
