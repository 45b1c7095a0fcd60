"""Helpers shared by the stages: seeded randomness per record, word statistics, request building."""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from selflen.engines.base import Request, SamplingParams
from selflen.store import stable_id


def seed_for(*parts: object) -> int:
    """A 48-bit seed derived from a record's identity, so a resumed stage redraws the same numbers."""
    return int(stable_id(*parts), 16) % (2**48)


def rng_for(*parts: object) -> random.Random:
    return random.Random(seed_for(*parts))


def word_stats(words: Sequence[int], prefix: str) -> dict[str, float]:
    """Mean, median and p90 of a list of word counts, keyed ``<prefix>/mean_words`` etc.

    >>> word_stats([10, 20, 30], "gen")["gen/median_words"]
    20
    """
    if not words:
        return {f"{prefix}/mean_words": 0.0, f"{prefix}/median_words": 0.0, f"{prefix}/p90_words": 0.0}
    ordered = sorted(words)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {
        f"{prefix}/mean_words": round(statistics.fmean(ordered), 2),
        f"{prefix}/median_words": statistics.median(ordered),
        f"{prefix}/p90_words": p90,
    }


@dataclass(frozen=True)
class Chat:
    """Builds chat requests with the model's optional system prompt."""

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
        adapter: str | None = None,
        prefix: str | None = None,
        n: int = 1,
    ) -> Request:
        return Request(self.messages(user), params.with_(seed=seed, n=n), prefix=prefix or None, adapter=adapter)


def chunks(items: Sequence, size: int) -> list[Sequence]:
    """Consecutive slices of ``items`` of at most ``size``.

    >>> chunks([1, 2, 3], 2)
    [[1, 2], [3]]
    """
    return [items[i : i + size] for i in range(0, len(items), max(1, size))]
