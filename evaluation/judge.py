"""LLM-as-judge quality scoring through any ``selflen`` engine.

Two rubrics, both in the project's own words (``evaluation/prompts/``):

* ``longen``: seven dimensions scored 1–10; the row's ``quality`` is their plain mean (the reference gives no
  aggregation, so we state ours).
* ``longbench_write``: six dimensions scored 1–5; ``quality`` is ``S_q`` = mean over dimensions of
  ``25·(score − 1)`` in [0, 100].

Honest accounting: an answer the judge cannot be parsed from after ``max_attempts`` tries keeps its row, gets
``quality = None`` and a ``judge_error`` message, and is counted in :func:`judge_summary`; nothing is dropped
and no dimension is ever filled with a default. The first attempt uses the given sampling parameters
(temperature 0 by default); retries use ``retry_temperature`` with a fresh seed, since a greedy retry would
repeat the same output. Outcomes are cached on disk, keyed by ``sha256(judge model id + "\\n" + prompt)``, in a
JSONL file, so re-scoring the same rows costs no engine call. Parse failures are cached too (they are
properties of the model and prompt); engine errors (timeouts, crashes) are not.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation import scorers
from selflen.engines.base import Engine, Request, SamplingParams
from selflen.jsonl import BadRow, read_jsonl

__all__ = [
    "RUBRICS",
    "Judge",
    "JudgeCache",
    "JudgeParseError",
    "Rubric",
    "cache_key",
    "extract_json",
    "judge_summary",
    "parse_scores",
    "render_prompt",
    "rubric_for",
]

log = logging.getLogger(__name__)
PROMPT_DIR = Path(__file__).resolve().parent / "prompts"


class JudgeParseError(ValueError):
    """The judge's output did not contain a complete, in-range set of scores."""


@dataclass(frozen=True)
class Rubric:
    """A judge rubric: prompt file, dimensions, score range and how the dimensions combine."""

    name: str
    prompt_file: str
    dimensions: tuple[str, ...]
    low: int
    high: int
    aggregate: Callable[[Mapping[str, float]], float]
    aggregation: str

    def template(self) -> str:
        return (PROMPT_DIR / self.prompt_file).read_text(encoding="utf-8")


RUBRICS: dict[str, Rubric] = {
    "longen": Rubric(
        "longen", "longen_quality.md", scorers.LONGEN_DIMENSIONS, 1, 10, scorers.longen_quality_score,
        "mean of the 7 dimensions (each 1-10)",
    ),
    "longbench_write": Rubric(
        "longbench_write", "longbench_write_quality.md", scorers.LBW_DIMENSIONS, 1, 5, scorers.lbw_quality_score,
        "S_q = mean over the 6 dimensions of 25*(score-1), 0-100",
    ),
}  # fmt: skip


def rubric_for(benchmark: str) -> Rubric:
    """The rubric of a benchmark (LongBench-Write files use theirs; LonGen and LIFEBench-style use LonGen's).

    >>> rubric_for("longbench_write_en").name, rubric_for("lifebench").name
    ('longbench_write', 'longen')
    """
    if benchmark in RUBRICS:
        return RUBRICS[benchmark]
    lbw = benchmark.startswith("longbench_write") or benchmark == "longwrite_ruler"
    return RUBRICS["longbench_write" if lbw else "longen"]


_PLACEHOLDER = re.compile(r"\{\{(query|response)\}\}")


def render_prompt(template: str, query: str, response: str) -> str:
    """Fill ``{{query}}`` and ``{{response}}`` in one pass (so braces inside the texts are never re-expanded).

    >>> render_prompt("Q: {{query}} A: {{response}}", "say {{response}}", "ok")
    'Q: say {{response}} A: ok'
    """
    values = {"query": query, "response": response}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def cache_key(model_id: str, prompt: str) -> str:
    """sha256 of the judge model id and the full prompt.

    >>> cache_key("m", "p")[:12]
    'de175578803a'
    """
    return hashlib.sha256(f"{model_id}\n{prompt}".encode()).hexdigest()


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


def _balanced_objects(text: str) -> list[str]:
    """Every top-level ``{...}`` span of ``text``, honouring quoted strings."""
    spans, depth, start, quote, escaped = [], 0, -1, "", False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'" and depth > 0:
            quote = ch
        elif ch == "{":
            depth, start = depth + 1, (i if depth == 0 else start)
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    return spans


def _loads(candidate: str) -> dict[str, Any] | None:
    for attempt in (json.loads, _literal):
        try:
            value = attempt(candidate)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    return None


def _literal(candidate: str) -> Any:
    fixed = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", candidate)))
    return ast.literal_eval(fixed)


def extract_json(text: str) -> dict[str, Any] | None:
    """The last JSON-like object in a judge's output: code fences, surrounding prose and single quotes are
    tolerated; ``None`` when nothing parses.

    >>> extract_json('Sure!\\n```json\\n{"a": 1}\\n```\\nHope this helps.')
    {'a': 1}
    >>> extract_json("{'a': 2, 'b': 'x'} trailing")
    {'a': 2, 'b': 'x'}
    >>> extract_json("no object here") is None
    True
    """
    candidates = [m.strip() for m in _FENCE.findall(text)] + _balanced_objects(text)
    parsed = None
    for candidate in candidates:
        for span in [candidate, *_balanced_objects(candidate)]:
            value = _loads(span)
            if value is not None:
                parsed = value
    return parsed


def _norm(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower().replace("&", "and"))


_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*\d+(?:\.\d+)?)?\s*(?:points?)?\s*$")


def _score_value(dimension: str, value: Any, low: int, high: int) -> float:
    if isinstance(value, bool):
        raise JudgeParseError(f"{dimension}: boolean is not a score")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str) and (m := _NUMBER.match(value)):
        number = float(m.group(1))
    elif isinstance(value, dict) and any(_norm(k) == "score" for k in value):
        return _score_value(dimension, next(v for k, v in value.items() if _norm(k) == "score"), low, high)
    else:
        raise JudgeParseError(f"{dimension}: unreadable score {value!r}")
    if not low <= number <= high:
        raise JudgeParseError(f"{dimension}: score {number:g} outside {low}-{high}")
    return int(number) if number.is_integer() else number


def _loose_scores(text: str, dimensions: Sequence[str]) -> dict[str, str]:
    found = {}
    for dim in dimensions:
        words = r"[\s_&-]*(?:and)?[\s_&-]*".join(re.escape(w) for w in dim.replace(" and ", " ").split())
        m = re.search(rf"{words}\W{{0,4}}\s*[:：=]\s*[\"']?(\d+(?:\.\d+)?(?:\s*/\s*\d+)?)", text, re.I)
        if m:
            found[dim] = m.group(1)
    return found


def parse_scores(text: str, rubric: Rubric) -> dict[str, float]:
    """Read all of a rubric's dimension scores from a judge's output, or raise ``JudgeParseError``.

    Accepts JSON (fenced or not, single-quoted, with prose around it), keys in any case/spacing, values as
    numbers or strings like ``"8"`` or ``"8/10"``; as a last resort ``Name: 8`` lines. Every dimension must be
    present and inside the rubric's range — nothing is defaulted.

    >>> r = RUBRICS["longbench_write"]
    >>> parse_scores('{"relevance": "4/5", "Accuracy": 3, "coherence": 5, "Clarity": 4, '
    ...              '"breadth_and_depth": 2, "Reading Experience": 4.0}', r)["Breadth and Depth"]
    2
    >>> try:
    ...     parse_scores('{"Relevance": 4} and the rest later', r)
    ... except JudgeParseError as exc:
    ...     print(exc)
    missing dimensions: Accuracy, Coherence, Clarity, Breadth and Depth, Reading Experience
    """
    obj = extract_json(text) or {}
    by_norm = {_norm(str(k)): v for k, v in obj.items()}
    loose = _loose_scores(text, rubric.dimensions)
    scores, missing = {}, []
    for dim in rubric.dimensions:
        value = by_norm.get(_norm(dim), loose.get(dim))
        if value is None:
            missing.append(dim)
        else:
            scores[dim] = _score_value(dim, value, rubric.low, rubric.high)
    if missing:
        raise JudgeParseError(f"missing dimensions: {', '.join(missing)}")
    return scores


class JudgeCache:
    """Append-only JSONL cache of judge outcomes keyed by :func:`cache_key`; unreadable lines are skipped."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self.records: dict[str, dict[str, Any]] = {}
        if self.path and self.path.is_file():
            bad: list[BadRow] = []
            for record in read_jsonl(self.path, strict=True, bad=bad):
                record.pop("_line")
                if isinstance(record.get("key"), str):
                    self.records[record["key"]] = record
                else:
                    bad.append((0, "no key"))
            if bad:
                log.warning("judge cache %s: skipping %d unreadable line(s)", self.path, len(bad))

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def put(self, record: dict[str, Any]) -> None:
        self.records[record["key"]] = record
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")


class Judge:
    """Score rows' ``response`` for quality with ``engine`` (identified as ``model_id`` in the cache).

    Rows need the request in ``query`` (LonGen) or ``prompt`` (LongBench-Write) and the answer in ``response``.
    """

    def __init__(
        self,
        engine: Engine,
        model_id: str,
        rubric: str | Rubric = "longen",
        cache_path: str | Path | None = None,
        max_attempts: int = 3,
        params: SamplingParams | None = None,
        retry_temperature: float = 0.7,
        max_response_chars: int | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.engine, self.model_id = engine, model_id
        self.rubric = rubric if isinstance(rubric, Rubric) else rubric_for(rubric)
        self.cache = JudgeCache(cache_path)
        self.max_attempts = max_attempts
        self.params = params or SamplingParams(temperature=0.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=1024)
        self.retry_temperature = retry_temperature
        self.max_response_chars = max_response_chars
        self.requests_sent = 0
        self._template = self.rubric.template()

    def prompt_for(self, row: Mapping[str, Any]) -> str:
        """The full judge prompt for one row."""
        query = row.get("query", row.get("prompt"))
        if query is None or row.get("response") is None:
            raise ValueError("judge rows need 'query' (or 'prompt') and 'response'")
        response = str(row["response"])
        if self.max_response_chars is not None and len(response) > self.max_response_chars:
            response = response[: self.max_response_chars] + "\n[... answer truncated for the judge ...]"
        return render_prompt(self._template, str(query), response)

    def _params_for(self, attempt: int) -> SamplingParams:
        if attempt == 0:
            return self.params
        return self.params.with_(temperature=self.retry_temperature, seed=(self.params.seed or 0) + attempt)

    def _run(self, prompts: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Judge each distinct prompt (by key) with bounded retries; return one outcome record per key."""
        outcomes: dict[str, dict[str, Any]] = {}
        pending = list(prompts)
        last: dict[str, tuple[str, str, str]] = {}  # key -> (error kind, message, raw text)
        for attempt in range(self.max_attempts):
            if not pending:
                break
            params = self._params_for(attempt)
            requests = [Request(messages=[{"role": "user", "content": prompts[k]}], params=params) for k in pending]
            self.requests_sent += len(requests)
            results = self.engine.generate(requests, desc=f"judge ({self.rubric.name}) try {attempt + 1}")
            still = []
            for key, result in zip(pending, results, strict=True):
                out = result.outputs[0]
                if out.finish_reason == "error":
                    last[key] = ("engine", f"engine error: {out.error}", "")
                    still.append(key)
                    continue
                try:
                    scores = parse_scores(out.text, self.rubric)
                except JudgeParseError as exc:
                    last[key] = ("parse", f"unparsable judge output: {exc}", out.text)
                    still.append(key)
                    continue
                quality = self.rubric.aggregate(scores)
                outcomes[key] = _record(key, self, scores, quality, None, None, out.text, attempt + 1)
            pending = still
        for key in pending:
            kind, message, raw = last[key]
            text = f"{message} (after {self.max_attempts} attempts)"
            outcomes[key] = _record(key, self, None, None, text, kind, raw, self.max_attempts)
        return outcomes

    def judge_rows(self, rows: Sequence[Mapping[str, Any]], refresh: bool = False) -> list[dict[str, Any]]:
        """Return copies of ``rows`` with ``judge_scores``, ``quality``, ``judge_error`` (None when scored),
        ``judge_attempts``, ``judge_cached`` and ``judge_raw`` (the judge's last output) added."""
        prompts = [self.prompt_for(r) for r in rows]
        keys = [cache_key(self.model_id, p) for p in prompts]
        cached = {k: self.cache.get(k) for k in set(keys)} if not refresh else {}
        todo = {k: p for k, p in zip(keys, prompts, strict=True) if cached.get(k) is None}
        fresh = self._run(todo) if todo else {}
        for record in fresh.values():
            if record["error_kind"] != "engine":
                self.cache.put(record)
        out = []
        for row, key in zip(rows, keys, strict=True):
            record = fresh.get(key) or cached[key]
            assert record is not None
            out.append(
                dict(
                    row,
                    judge_scores=record["scores"],
                    quality=record["quality"],
                    judge_error=record["error"],
                    judge_attempts=record["attempts"],
                    judge_cached=key not in fresh,
                    judge_raw=record["raw"],
                )
            )
        return out


def _record(
    key: str,
    judge: Judge,
    scores: dict[str, float] | None,
    quality: float | None,
    error: str | None,
    error_kind: str | None,
    raw: str,
    attempts: int,
) -> dict[str, Any]:
    return {
        "key": key,
        "model": judge.model_id,
        "rubric": judge.rubric.name,
        "scores": scores,
        "quality": quality,
        "error": error,
        "error_kind": error_kind,
        "raw": raw,
        "attempts": attempts,
    }


def judge_summary(rows: Sequence[Mapping[str, Any]], rubric: Rubric, model_id: str = "") -> dict[str, Any]:
    """Counts and means of judged rows: failures are reported, never hidden.

    >>> rows = [{"quality": 7.0, "judge_scores": dict.fromkeys(scorers.LONGEN_DIMENSIONS, 7), "judge_error": None},
    ...         {"quality": None, "judge_scores": None, "judge_error": "unparsable judge output: ..."}]
    >>> s = judge_summary(rows, RUBRICS["longen"])
    >>> s["n"], s["scored"], s["parse_failures"], s["failure_rate"], s["quality"]
    (2, 1, 1, 0.5, 7.0)
    """
    scored = [r for r in rows if r.get("judge_error") is None and r.get("quality") is not None]
    errors = [str(r.get("judge_error")) for r in rows if r.get("judge_error") is not None]
    n = len(rows)
    return {
        "judge_model": model_id,
        "rubric": rubric.name,
        "aggregation": rubric.aggregation,
        "n": n,
        "scored": len(scored),
        "parse_failures": sum(e.startswith("unparsable") for e in errors),
        "engine_failures": sum(e.startswith("engine error") for e in errors),
        "failure_rate": len(errors) / n if n else 0.0,
        "quality": sum(r["quality"] for r in scored) / len(scored) if scored else None,
        "dimensions": {
            d: sum(float(r["judge_scores"][d]) for r in scored) / len(scored) if scored else None
            for d in rubric.dimensions
        },
    }
