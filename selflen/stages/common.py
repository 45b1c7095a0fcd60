"""What every stage shares: the result type, one ``summarize``, chat request building and per-record seeds.

The stage contract (every module in ``selflen/stages``)::

    @dataclass(frozen=True)
    class XSettings: ...            # everything that shapes the stage's output; paths relative to the run dir
    def settings(cfg: TrainConfig, ...) -> XSettings  # from the stage's config group (and the groups it reads)
    def run(stage: Stage, inputs, s: XSettings, engine) -> StageResult  # engine=None: a stage that generates nothing

``tests/unit/test_stage_contract.py`` holds every stage module to this shape and to a test of its own.

``run`` appends typed records (``selflen.stages.records``) one by one to ``stage`` and skips ids it already has,
so a killed stage resumes; the stage's identity (its hash) is the hash of its settings and of its inputs' stages.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from selflen.config import TrainConfig
from selflen.engines.base import Request, Result, SamplingParams
from selflen.errors import EngineFailed
from selflen.store import stable_id
from selflen.text import FilterRules
from selflen.text.filters import LLAMA_END_PUNCT, META_WORDS, QWEN_END_PUNCT


@dataclass(frozen=True)
class Table:
    """Rows a stage reports for the logger to show (a W&B table), one list of values per row, in ``columns``' order."""

    columns: tuple[str, ...]
    rows: list[list[Any]]


@dataclass
class StageResult:
    """What a stage reports: counts, drops by reason, scalar metrics, extra JSON for ``done.json``, images, and
    tables (logged as ``<key>/iter_<step>`` with the iteration as their first column, like every metric)."""

    counts: dict[str, int]
    drops: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)  # logger key -> file path
    tables: dict[str, Table] = field(default_factory=dict)  # logger key (without the step) -> rows


def summarize(records: Sequence[dict], name: str, words_key: str = "words", **metrics: float) -> StageResult:
    """Counts (records, ok, dropped), drops summed over the records' per-try ``drops``, and word statistics
    of the accepted records under ``<name>/...``.

    >>> r = summarize([{"status": "ok", "words": 10, "drops": {"truncated": 1}}, {"status": "dropped",
    ...     "words": 3, "drops": {"truncated": 2}}], "generate")
    >>> r.counts, r.drops, r.metrics["generate/mean_words"]
    ({'records': 2, 'ok': 1, 'dropped': 1}, {'truncated': 3}, 10.0)
    """
    drops: Counter = Counter()
    for r in records:
        drops.update(r.get("drops") or {})
    ok = [r for r in records if r["status"] == "ok"]
    stats = word_stats([r[words_key] for r in ok if words_key in r], name)
    return StageResult(
        counts={"records": len(records), "ok": len(ok), "dropped": len(records) - len(ok)},
        drops=dict(drops),
        metrics={**stats, **metrics},
    )


def engine_failure(stage: str, backend: str, failed: int, total: int, cause: str | None) -> EngineFailed:
    """The one-line error of a stage with ``failed`` of ``total`` records (or answers) the engine failed: the stage
    is not done, the next run of the same command retries exactly those.

    >>> str(engine_failure("iter_1/generate", "openai", 2, 2, "HTTP 500: boom"))[:70]
    'iter_1/generate: backend openai failed every one of its 2 requests (HT'
    """
    what = f"every one of its {total} requests" if failed == total else f"{failed} of its {total} requests"
    return EngineFailed(
        f"{stage}: backend {backend} failed {what} ({(cause or 'see the log')[:160]}); the stage is not done: "
        "fix the engine (a server up at backend.base_url, backend.timeout_s) and re-run the same command to retry "
        "the failed requests"
    )


def failed_answers(results: Sequence[Result]) -> tuple[int, str | None]:
    """How many results are engine errors, and the first one's message."""
    errors = [o.error or "engine error" for r in results if not r.ok for o in r.outputs[:1]]
    return len(errors), errors[0] if errors else None


def seed_for(*parts: object) -> int:
    """A 48-bit seed derived from a record's identity, so a resumed stage redraws the same numbers."""
    return int(stable_id(*parts), 16) % (2**48)


def rng_for(*parts: object) -> random.Random:
    return random.Random(seed_for(*parts))


def word_stats(words: Sequence[int], prefix: str) -> dict[str, float]:
    """Mean, median and p90 of a list of word counts, keyed ``<prefix>/mean_words`` etc.; empty when no words
    (a stage that accepted nothing has no length, not a length of 0).

    >>> word_stats([10, 20, 30], "gen")["gen/median_words"]
    20
    >>> word_stats([], "gen")
    {}
    """
    if not words:
        return {}
    ordered = sorted(words)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {
        f"{prefix}/mean_words": round(statistics.fmean(ordered), 2),
        f"{prefix}/median_words": statistics.median(ordered),
        f"{prefix}/p90_words": p90,
    }


@dataclass(frozen=True)
class Chat:
    """Builds chat requests with the model's optional system prompt (it shapes every prompt, so it is part of
    every generating stage's settings)."""

    system_prompt: str | None = None

    def messages(self, user: str) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*head, {"role": "user", "content": user}]

    def request(
        self,
        user: str,
        params: SamplingParams,
        *,
        seed: int,
        prefix: str | None = None,
        n: int = 1,
    ) -> Request:
        return Request(self.messages(user), params.with_(seed=seed, n=n), prefix=prefix or None)


def sampling_params(cfg: TrainConfig, max_new_tokens: int, stop: Sequence[str] | None = None) -> SamplingParams:
    """The shared decoding (the ``sampling`` group) with one stage's token budget."""
    s = cfg.sampling
    return SamplingParams(
        temperature=s.temperature,
        top_p=s.top_p,
        top_k=s.top_k,
        repetition_penalty=s.repetition_penalty,
        max_new_tokens=max_new_tokens,
        stop=tuple(s.stop if stop is None else stop),
    )


def filter_rules(cfg: TrainConfig) -> FilterRules:
    """The language group's response filters; ``language.rules=reference`` swaps in the reference's own end
    punctuation (Qwen's set for Chinese, LLaMA's for the rest), meta words (none for Chinese, as Qwen) and its
    case-sensitive substring match."""
    lang = cfg.language
    reference = lang.rules == "reference"
    zh = lang.name == "zh"
    return FilterRules(
        end_punct=(QWEN_END_PUNCT if zh else LLAMA_END_PUNCT) if reference else lang.end_punct,
        ngram_n=lang.ngram_n,
        ngram_tokenizer=lang.ngram_tokenizer,
        meta_words=(() if zh else META_WORDS) if reference else tuple(lang.meta_words),
        counter=lang.counter,
        meta_match="substring" if reference else "words",
    )
