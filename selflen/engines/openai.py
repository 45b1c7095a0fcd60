"""Engine for any OpenAI-compatible server (``vllm serve``, a hosted judge, a cluster behind a balancer).

Bounded concurrency, a timeout per request, retries with exponential backoff on timeouts, 429 and 5xx. A request
that still fails comes back as an ``error`` result and is counted in ``stats`` (``errors``, ``retries``,
``transport_errors``) — never dropped. When every request of a ``generate`` call failed to reach the server
(connection refused, timeouts, 5xx) even after the retries, the server is down: ``EngineUnavailable`` is raised so
the stage stops with one line instead of writing a stage full of errors; re-running resumes. When every request
of a call failed although the server answered (4xx, a 200 that is no completion), ``EngineFailed`` says so.
Requests run on daemon threads waited on in short polls (``run_each``), so SIGTERM/SIGINT end a call at once even
while the threads sit in a read of a stalled server.
An assistant prefix is continued with ``continue_final_message`` (vLLM's chat API); adapters are served model
names (``--lora-modules gen=DIR``) or, with ``load_adapters=True``, loaded at run time through
``/v1/load_lora_adapter`` (vLLM with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``).

The API takes at most ``MAX_STOP`` stop strings: the server gets a reduced set that stops generation at the same
token (``server_stops``), returns the stop string (``include_stop_str_in_output``), and the client cuts the text at
the earliest of all of them, so the text is the one the ``vllm`` and ``hf`` engines return.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
from tqdm.auto import tqdm

from selflen.engines.base import (
    LOOP,
    Completion,
    Engine,
    Request,
    Result,
    error_result,
    in_order,
    truncate_at_stop,
)
from selflen.errors import EngineFailed, EngineUnavailable, SelflenError, check_stop, stop_requested

log = logging.getLogger(__name__)
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_STOP = 4  # stop strings per request the OpenAI API accepts (vLLM: VLLM_MAX_STOP_STRINGS, default 4)


def server_stops(stop: Sequence[str], limit: int = MAX_STOP) -> list[str]:
    """The stop strings sent to the server: a string containing another one is dropped (the shorter one has always
    ended the text by then, so generation stops at the same token), then at most ``limit`` are kept; any left out
    is still cut client-side.

    >>> server_stops(["\\n\\n---", "\\n\\n\\n", "\\n---", "---", "\\nInstruction"])
    ['\\n\\n\\n', '---', '\\nInstruction']
    >>> server_stops(["a", "b", "c", "d", "e"])
    ['a', 'b', 'c', 'd']
    """
    unique = [s for i, s in enumerate(stop) if s and s not in stop[:i]]
    needed = [s for s in unique if not any(t != s and t in s for t in unique)]
    if len(needed) > limit:
        log.warning("%d stop strings: the server gets %d, the others are cut client-side", len(needed), limit)
    return needed[:limit]


class OpenAIEngine(Engine):
    name = "openai"

    def __init__(
        self,
        model: str,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout_s: float = 600.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        load_adapters: bool = False,
        max_stop: int = MAX_STOP,
    ) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        key = os.environ.get(api_key_env, "EMPTY")
        self.client = httpx.Client(timeout=timeout_s, headers={"Authorization": f"Bearer {key}"})
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.load_adapters = load_adapters
        self.max_stop = max_stop
        self._adapters: dict[str, str] = {}
        self.stats: Counter[str] = Counter()
        self.last_error: str | None = None  # the cause of the last failed request, for the stage's one-line error
        self._model_checked = not load_adapters  # the loop's engine checks its server once (``_check_model``)

    def _check_model(self) -> None:
        """Stop with one line if the server does not serve ``self.model``.

        Every request would otherwise fail with a 404 that is counted, not raised: each stage would finish "done"
        with nothing kept, and a re-run would skip it. Only the loop's engine checks (``load_adapters``: a vLLM
        server, whose ``/v1/models`` lists what it serves); a server without a usable listing is not checked.
        """
        if self._model_checked:
            return
        try:
            resp = self.client.get(f"{self.base_url}/models", timeout=10)
        except httpx.HTTPError:  # unreachable now: the requests say so (EngineUnavailable); checked next time
            return
        self._model_checked = True
        try:
            served = [m["id"] for m in resp.json()["data"]] if resp.status_code == 200 else None
        except (ValueError, KeyError, TypeError):
            served = None
        if served is not None and self.model not in served:
            raise SelflenError(
                f"the server at {self.base_url} serves {served[:4]}, not {self.model!r}: start it with --model "
                f"{self.model} (a local or embedded model is asked for by its folder, a hub model by model.name) "
                "or fix backend.base_url"
            )

    def add_adapter(self, name: str, path: str) -> None:
        if self.load_adapters and self._adapters.get(name) != str(path):
            interruptible(lambda: self._load_adapter(name, str(path)))
        self._adapters[name] = str(path)

    def _load_adapter(self, name: str, path: str) -> None:
        """Load ``path`` on the server under ``name``, unloading that name first.

        The server outlives this engine: an engine of the same run closed before training, or a run resumed after a
        crash, may have loaded the name already (vLLM then refuses a second load), and the folder may hold new
        weights (a redone fine-tune). A fresh load also gets a fresh adapter id, so no prefix-cache entry computed
        with the old weights is reused. Not-loaded answers of the unload are expected and ignored. Only transport
        errors are retried: vLLM answers 500 for an adapter it cannot take (a rank above ``--max-lora-rank``).
        """
        self._check_model()
        resp, last = None, "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                self.client.post(f"{self.base_url}/unload_lora_adapter", json={"lora_name": name})
                resp = self.client.post(
                    f"{self.base_url}/load_lora_adapter", json={"lora_name": name, "lora_path": path}
                )
                break
            except httpx.HTTPError as err:
                last = f"{type(err).__name__}: {err}"
        if resp is None:
            raise EngineUnavailable(
                f"could not reach {self.base_url} to load adapter {name} after {self.max_retries} retries "
                f"({last[:160]}); start the server (or fix backend.base_url) and re-run the same command to resume"
            )
        if resp.status_code != 200:
            raise SelflenError(
                f"the server at {self.base_url} refused to load adapter {name} from {path} (HTTP {resp.status_code}: "
                f"{' '.join(resp.text[:300].split())}); a vLLM server needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, "
                "--enable-lora, --max-lora-rank >= finetune.lora.r and this folder readable"
            )

    def _payload(self, req: Request) -> dict:
        p = req.params
        messages = list(req.messages)
        body: dict = {
            "model": req.adapter or self.model,
            "messages": messages,
            "n": p.n,
            "max_tokens": p.max_new_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p if not p.greedy else 1.0,
            "repetition_penalty": p.repetition_penalty,
        }
        if p.top_k > 0 and not p.greedy:
            body["top_k"] = p.top_k
        if p.stop:  # the client cuts at the earliest of all of them (``_parse``)
            body["stop"] = server_stops(list(p.stop), self.max_stop)
            body["include_stop_str_in_output"] = True
        if p.seed is not None:
            body["seed"] = p.seed
        if p.min_new_tokens:  # vLLM's server field; another server may ignore it or refuse the request
            body["min_tokens"] = min(p.min_new_tokens, p.max_new_tokens)
        if p.stop_loops:  # vLLM's server field; another server may ignore it or refuse it (then: stop_loops=false)
            body["repetition_detection"] = {"max_pattern_size": LOOP.max_pattern, "min_pattern_size": LOOP.min_pattern,
                                            "min_count": LOOP.count}
        if req.prefix:
            body["messages"] = [*messages, {"role": "assistant", "content": req.prefix}]
            body.update(continue_final_message=True, add_generation_prompt=False)
        return body

    def _call(self, req: Request) -> tuple[Result, bool]:
        """The result, and whether it failed for want of a server (transport error or 5xx on every attempt)."""
        body = self._payload(req)
        last, transport = "no attempt", True
        for attempt in range(self.max_retries + 1):
            check_stop()
            if attempt:
                self.stats["retries"] += 1
                time.sleep(self.backoff_s * 2 ** (attempt - 1) * (1 + random.random()))
            try:
                resp = self.client.post(f"{self.base_url}/chat/completions", json=body)
            except httpx.HTTPError as err:
                last, transport = f"{type(err).__name__}: {err}", True
                continue
            if resp.status_code in RETRY_STATUS:
                last, transport = f"HTTP {resp.status_code}: {one_line(resp.text)}", resp.status_code >= 500
                continue
            if resp.status_code != 200:
                last, transport = f"HTTP {resp.status_code}: {one_line(resp.text)}", False
                break
            try:
                return self._parse(resp.json(), req), False
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                last, transport = f"malformed answer ({type(err).__name__}: {err})", False
                break
        self.stats["errors"] += 1
        self.stats["transport_errors"] += int(transport)
        log.warning("request failed after %d attempts: %s", attempt + 1, last)
        self.last_error = last
        return error_result(last, req.params.n), transport

    @staticmethod
    def _parse(data: dict, req: Request) -> Result:
        completions = []
        for choice in sorted(data.get("choices", []), key=lambda c: c.get("index", 0)):
            text, cut = truncate_at_stop(choice["message"].get("content") or "", req.params.stop)
            finish = choice.get("finish_reason")
            reason = "stop" if cut else {"length": "length", "repetition": "loop"}.get(finish, "stop")
            completions.append(Completion(text=text, tokens=0, finish_reason=reason))
        if len(completions) != req.params.n:  # a 200 that is no completion (a proxy's page, another API's JSON)
            raise ValueError(f"{len(completions)} choices for n={req.params.n}")
        usage = data.get("usage") or {}
        if completions and usage.get("completion_tokens") is not None:
            per = usage["completion_tokens"] // len(completions)
            for c in completions:
                c.tokens = per
        return Result(completions, prompt_tokens=usage.get("prompt_tokens", 0))

    def generate(self, requests: Sequence[Request], desc: str | None = None) -> list[Result]:
        return in_order(self.stream(requests, desc), len(requests))

    def stream(self, requests: Sequence[Request], desc: str | None = None) -> Iterator[tuple[int, Result]]:
        interruptible(self._check_model)
        done = down = usable = 0
        for i, (res, unreachable) in run_each(self._call, requests, self.concurrency, desc):
            done, down, usable = done + 1, down + unreachable, usable + res.ok
            yield i, res
        if done and down == done:
            raise EngineUnavailable(
                f"the server at {self.base_url} answered none of {done} requests after {self.max_retries} "
                f"retries ({(self.last_error or '?')[:160]}); start it (or fix backend.base_url) and "
                "re-run the same command to resume"
            )
        if done and not usable:  # reachable, but no usable answer: a fault, not a result
            raise EngineFailed(
                f"backend openai: the server at {self.base_url} failed all {done} requests "
                f"({(self.last_error or '?')[:160]}); check that it is an OpenAI-compatible server serving "
                f"{self.model!r} (backend.base_url), then re-run the same command to resume"
            )

    def close(self) -> None:
        self.client.close()


def one_line(text: str, limit: int = 200) -> str:
    """A server's answer body as one short line (an HTML error page spans many).

    >>> one_line("<h1>Error</h1>\\n  <p>404</p>")
    '<h1>Error</h1> <p>404</p>'
    """
    return " ".join(text[: limit * 2].split())[:limit]


POLL_S = 0.2  # how often a thread waiting on requests looks for a stop request


def run_each(call: Callable[[Request], Any], requests: Sequence[Request], concurrency: int,
             desc: str | None = None) -> Iterator[tuple[int, Any]]:
    """``(index, call(request))`` for every request, as the ``concurrency`` worker threads finish them.

    The workers are daemon threads and the caller waits in short polls, so a stop request (SIGTERM/SIGINT) ends the
    wait within ``POLL_S`` even while workers sit in a read of a stalled server (an exiting process does not wait
    for daemon threads); a worker's exception is raised here, after the results finished before it. Workers take no
    new request once the caller stops iterating."""
    finished: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
    errors: list[BaseException] = []
    order = iter(range(len(requests)))
    lock = threading.Lock()
    quit_ = threading.Event()

    def work() -> None:
        while not stop_requested() and not errors and not quit_.is_set():
            with lock:
                i = next(order, None)
            if i is None:
                return
            try:
                finished.put((i, call(requests[i])))
            except BaseException as err:  # handed to the waiting thread
                errors.append(err)

    workers = [threading.Thread(target=work, daemon=True, name=f"openai-{n}")
               for n in range(max(1, min(concurrency, len(requests))))]
    try:
        with tqdm(total=len(requests), desc=desc or "generate", disable=desc is None) as bar:
            for w in workers:
                w.start()
            while True:
                alive = any(w.is_alive() for w in workers)
                try:
                    item = finished.get(timeout=POLL_S) if alive else finished.get_nowait()
                except queue.Empty:
                    if not alive:
                        break
                    check_stop()
                    continue
                bar.update(1)
                yield item
                check_stop()
    finally:
        quit_.set()
    if errors:
        raise errors[0]
    check_stop()


def interruptible(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a daemon thread, waited for in short polls: a stop request ends the wait (see ``run_each``)."""
    out: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            out.append(fn())
        except BaseException as err:  # handed to the waiting thread
            errors.append(err)

    t = threading.Thread(target=work, daemon=True, name="openai-call")
    t.start()
    while t.is_alive():
        t.join(POLL_S)
        check_stop()
    if errors:
        raise errors[0]
    return out[0] if out else None
