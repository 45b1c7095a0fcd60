"""Engine for any OpenAI-compatible server (``vllm serve``, a hosted judge, a cluster behind a balancer).

Bounded concurrency, a timeout per request, retries with exponential backoff on timeouts, 429 and 5xx. A request
that still fails comes back as an ``error`` result and is counted in ``stats`` (``errors``, ``retries``,
``transport_errors``) — never dropped. When every request of a ``generate`` call failed to reach the server
(connection refused, timeouts, 5xx) even after the retries, the server is down: ``EngineUnavailable`` is raised so
the stage stops with one line instead of writing a stage full of errors; re-running resumes.
An assistant prefix is continued with ``continue_final_message`` (vLLM's chat API); adapters are served model
names (``--lora-modules gen=DIR``) or, with ``load_adapters=True``, loaded at run time through
``/v1/load_lora_adapter`` (vLLM with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx
from tqdm.auto import tqdm

from selflen.engines.base import Completion, Engine, Request, Result, error_result, truncate_at_stop
from selflen.errors import EngineUnavailable, check_stop

log = logging.getLogger(__name__)
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


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
    ) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        key = os.environ.get(api_key_env, "EMPTY")
        self.client = httpx.Client(timeout=timeout_s, headers={"Authorization": f"Bearer {key}"})
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.load_adapters = load_adapters
        self._adapters: dict[str, str] = {}
        self.stats: Counter[str] = Counter()

    def add_adapter(self, name: str, path: str) -> None:
        if self.load_adapters and self._adapters.get(name) != str(path):
            if name in self._adapters:
                self.client.post(f"{self.base_url}/unload_lora_adapter", json={"lora_name": name})
            resp = self.client.post(f"{self.base_url}/load_lora_adapter", json={"lora_name": name, "lora_path": path})
            resp.raise_for_status()
        self._adapters[name] = str(path)

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
        if p.stop:
            body["stop"] = list(p.stop)
        if p.seed is not None:
            body["seed"] = p.seed
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
                last, transport = f"HTTP {resp.status_code}: {resp.text[:200]}", resp.status_code >= 500
                continue
            if resp.status_code != 200:
                last, transport = f"HTTP {resp.status_code}: {resp.text[:200]}", False
                break
            try:
                return self._parse(resp.json(), req), False
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                last, transport = f"malformed answer ({type(err).__name__}: {err})", False
                break
        self.stats["errors"] += 1
        self.stats["transport_errors"] += int(transport)
        log.warning("request failed after %d attempts: %s", attempt + 1, last)
        self._last_error = last
        return error_result(last, req.params.n), transport

    @staticmethod
    def _parse(data: dict, req: Request) -> Result:
        completions = []
        for choice in sorted(data.get("choices", []), key=lambda c: c.get("index", 0)):
            text, _ = truncate_at_stop(choice["message"].get("content") or "", req.params.stop)
            reason = "length" if choice.get("finish_reason") == "length" else "stop"
            completions.append(Completion(text=text, tokens=0, finish_reason=reason))
        usage = data.get("usage") or {}
        if completions and usage.get("completion_tokens") is not None:
            per = usage["completion_tokens"] // len(completions)
            for c in completions:
                c.tokens = per
        return Result(completions, prompt_tokens=usage.get("prompt_tokens", 0))

    def generate(self, requests: Sequence[Request], desc: str | None = None) -> list[Result]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = [pool.submit(self._call, r) for r in requests]
            done = [f.result() for f in tqdm(futures, desc=desc or "generate", disable=desc is None)]
        if done and all(down for _, down in done):
            raise EngineUnavailable(
                f"the server at {self.base_url} answered none of {len(done)} requests after {self.max_retries} "
                f"retries ({getattr(self, '_last_error', '?')[:160]}); start it (or fix backend.base_url) and "
                "re-run the same command to resume"
            )
        return [res for res, _ in done]

    def close(self) -> None:
        self.client.close()
