"""Selection: near-duplicate removal, then length-biased sampling (keep with probability 1 - 2r^3 by length
rank, measured in words) so the next iteration trains on the longer extensions.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from selflen.stages.common import seed_for, word_stats
from selflen.store import Stage
from selflen.text import dedup_mask, length_biased_keep


def run(
    stage: Stage,
    extended: Sequence[dict],
    *,
    length_biased: bool,
    dedup_threshold: float,
    seed: int,
    iteration: int,
    min_items: int = 10,
) -> dict:
    """One record per input id with ``status`` ok/dropped; deterministic for a seed.

    The rank rule needs a population: it always drops the shortest ~21 %, so with one item it drops that item.
    Below ``min_items`` survivors it is skipped (recorded in ``done.json``).
    """
    items = [r for r in extended if not stage.has(r["id"])]
    if items:
        unique = dedup_mask([r["extended"] for r in items], threshold=dedup_threshold)
        survivors = [r for r, u in zip(items, unique, strict=True) if u]
        rng = random.Random(seed_for(seed, iteration, "select"))
        use_rule = length_biased and len(survivors) >= min_items
        keep = length_biased_keep([r["words"] for r in survivors], rng) if use_rule else [True] * len(survivors)
        kept_ids = {r["id"] for r, k in zip(survivors, keep, strict=True) if k}
        for r, u in zip(items, unique, strict=True):
            reason = None if r["id"] in kept_ids else ("duplicate" if not u else "length_bias")
            stage.append(
                {
                    **{k: r[k] for k in ("id", "instruction", "response", "extended", "words", "words_before")},
                    "status": "dropped" if reason else "ok",
                    "reason": reason,
                }
            )
    return summarize(stage.records())


def summarize(records: list[dict]) -> dict:
    drops = Counter(r["reason"] for r in records if r["reason"])
    ok = [r for r in records if r["status"] == "ok"]
    return {
        "counts": {"inputs": len(records), "kept": len(ok)},
        "drops": dict(drops),
        "metrics": word_stats([r["words"] for r in ok], "select"),
    }
