"""Selection, run twice per iteration: on the Generator's answers before they are extended (``select_responses``)
and on the extensions (``select``), as the reference applies ``drop_short`` after both steps. Near duplicates are
removed, then length-biased sampling keeps each item with probability ``1 - 2r^3`` by its length rank ``r``
(measured in characters, as the reference, or in words), so the next iteration trains on the longer texts.

Config group ``select`` (its ``length_biased_responses`` / ``length_biased_extensions``: each run's own switch);
no prompt; rules in ``selflen.text``
(``dedup_mask``, ``length_biased_keep``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from selflen.config import TrainConfig
from selflen.groups import SelectConfig
from selflen.stages.common import StageResult, seed_for, summarize
from selflen.stages.records import Drop, Record
from selflen.store import Stage
from selflen.text import dedup_mask, length_biased_keep


@dataclass(frozen=True)
class SelectSettings:
    select: SelectConfig
    text_key: str  # "response" (answers) | "extended" (extensions)
    length_biased: bool  # this run's switch: select.length_biased_responses or select.length_biased_extensions
    seed: int
    iteration: int


def settings(cfg: TrainConfig, k: int, text_key: str) -> SelectSettings:
    c = cfg.select
    biased = c.length_biased_responses if text_key == "response" else c.length_biased_extensions
    return SelectSettings(select=c, text_key=text_key, length_biased=biased, seed=cfg.seed, iteration=k)


def lengths(items: Sequence[Record], s: SelectSettings) -> list[int]:
    """The lengths the rank rule sorts by: characters of the text (the reference's ``len(str)``) or words.

    >>> from dataclasses import replace
    >>> from selflen.config import load
    >>> s = settings(load(), 1, "response")
    >>> lengths([{"response": "abc", "words": 1}], s), lengths([{"response": "abc", "words": 1}],
    ...     replace(s, select=replace(s.select, length_unit="words")))
    ([3], [1])
    """
    return [len(r[s.text_key]) if s.select.length_unit == "chars" else r["words"] for r in items]


def run(stage: Stage, items: Sequence[Record], s: SelectSettings, engine: None = None) -> StageResult:
    """One record per input id (the input record plus ``status``/``reason``); deterministic for a seed.

    The rank rule needs a population: it always drops the shortest ~21 %, so with one item it drops that item.
    Below ``min_items`` survivors it is skipped (``rank_rule: false`` in ``done.json``).
    """
    # decided over all items, so a resumed stage keeps exactly the records an uninterrupted one keeps
    texts = [r[s.text_key] for r in items]
    threshold = s.select.dedup_threshold
    unique = [True] * len(texts) if threshold is None else dedup_mask(texts, threshold=threshold)
    survivors = [r for r, u in zip(items, unique, strict=True) if u]
    rng = random.Random(seed_for(s.seed, s.iteration, "select", s.text_key))
    use_rule = s.length_biased and len(survivors) >= s.select.min_items
    keep = length_biased_keep(lengths(survivors, s), rng) if use_rule else [True] * len(survivors)
    kept_ids = {r["id"] for r, k in zip(survivors, keep, strict=True) if k}
    for r, u in zip(items, unique, strict=True):
        if stage.has(r["id"]):
            continue
        reason = None if r["id"] in kept_ids else (Drop.DUPLICATE if not u else Drop.LENGTH_BIAS)
        rec = {k: v for k, v in r.items() if k not in ("status", "reason", "drops")}
        stage.append({**rec, "status": "dropped" if reason else "ok", "reason": reason,
                      "drops": {reason: 1} if reason else {}})
    result = summarize(stage.records(), stage.name.rsplit("/", 1)[-1])
    result.extra["rank_rule"] = use_rule
    return result
