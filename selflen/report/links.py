"""The three links from training data to a longer Generator, per iteration, from plain data.

A run that does not lengthen breaks at one of them:

- **target gain** — are the Generator's training targets longer? Mean words of the targets (iteration k's kept
  extensions) over the answers they were extended from, and over the base model's words on the held-out benchmark
  slice (its mean words, and the mean words of the answers it ended itself: the length it chooses).
- **fit** — did the fine-tune learn that length where it was trained? Iteration k's Generator's mean words on the
  held-out self-instructed split (instructions of the training distribution, never trained on) over the targets'.
- **transfer** — does it carry over to the benchmark? Growth on the benchmark slice over growth on the
  self-instructed split (both the paired effective-words ratio to the base model).

``weakest_link`` names the first link, in that order, below its bar (``BARS``), with one sentence saying so.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from selflen.report.plots import is_number

BARS = {"target_over_base_ended": 1.2, "fit": 0.85, "transfer": 0.8}
"""Below these the link is called broken: targets under 1.2x what the base already ends with cannot show the
method's gain; a fit under 0.85 leaves most of the shown shift unlearnt; a transfer under 0.8 loses most of it."""
LINKS = (("target_over_base_ended", "target gain"), ("fit", "fit"), ("transfer", "transfer"))


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _div(top: Any, bottom: Any) -> float | None:
    return round(top / bottom, 3) if is_number(top) and is_number(bottom) and bottom > 0 else None


def iteration_links(targets: Sequence[Mapping[str, Any]], base_eval: Mapping[str, Any] | None,
                    self_words: Sequence[float], self_growth: Mapping[str, Any] | None,
                    bench_growth: Mapping[str, Any] | None, self_effective: Sequence[float] = ()) -> dict[str, Any]:
    """The links of one iteration.

    ``targets``: the Generator's training records (``words`` of the target, ``words_before`` of its source answer);
    ``base_eval``: the base model's benchmark row (``mean_words``, ``ended_mean_words``); ``self_words``: the
    iteration's Generator's word counts on the self-instructed split; ``self_growth`` / ``bench_growth``: the paired
    effective-words intervals (:func:`selflen.report.paired.paired_bootstrap`) on the split and on the benchmark;
    ``self_effective``: the same answers' effective words (repeated n-grams counted once), for ``fit_effective``,
    the fit that loops cannot inflate, and ``target_over_base_effective``: the targets over the base's effective
    words on the benchmark, the most the headline measure could grow if the Generator wrote its targets there.

    >>> row = iteration_links([{"words": 600, "words_before": 400}, {"words": 400, "words_before": 200}],
    ...                       {"mean_words": 400.0, "ended_mean_words": 250.0, "effective_words": 320.0},
    ...                       [350, 450], {"ratio": 1.6}, {"ratio": 1.2}, self_effective=[200, 300])
    >>> row["target_gain"], row["target_over_base"], row["target_over_base_ended"], row["fit"], row["transfer"]
    (1.667, 1.25, 2.0, 0.8, 0.75)
    >>> row["fit_effective"], row["target_over_base_effective"]
    (0.5, 1.562)
    """
    target = _mean([float(t["words"]) for t in targets if is_number(t.get("words"))])
    source = _mean([float(t["words_before"]) for t in targets if is_number(t.get("words_before"))])
    base = base_eval or {}
    on_split = _mean([float(w) for w in self_words])
    effective = _mean([float(w) for w in self_effective])
    self_ratio = (self_growth or {}).get("ratio")
    bench_ratio = (bench_growth or {}).get("ratio")
    return {
        "targets": len(targets),
        "target_words": None if target is None else round(target, 1),
        "source_words": None if source is None else round(source, 1),
        "target_gain": _div(target, source),
        "target_over_base": _div(target, base.get("mean_words")),
        "target_over_base_ended": _div(target, base.get("ended_mean_words")),
        "target_over_base_effective": _div(target, base.get("effective_words")),
        "self_words": None if on_split is None else round(on_split, 1),
        "fit": _div(on_split, target),
        "fit_effective": _div(effective, target),
        "self_growth": self_ratio if is_number(self_ratio) else None,
        "bench_growth": bench_ratio if is_number(bench_ratio) else None,
        "transfer": _div(bench_ratio, self_ratio),
    }


def weakest_link(row: Mapping[str, Any]) -> tuple[str | None, str]:
    """The first link below its bar and a sentence about it; (None, sentence) when every measured link holds.

    >>> weakest_link({"target_over_base_ended": 1.1, "fit": 0.9, "transfer": 1.0})[0]
    'target gain'
    >>> name, sentence = weakest_link({"target_over_base_ended": 2.0, "fit": 0.3, "transfer": 1.0})
    >>> name, sentence[:51], sentence[-10:]
    ('fit', 'fit broke: the Generator wrote 0.30x its targets on', '(bar 0.85)')
    >>> weakest_link({"target_over_base_ended": 2.0, "fit": None, "transfer": None})[0] is None
    True
    """
    what = {"target gain": "the targets average {v:.2f}x the base model's ended answers on the benchmark",
            "fit": "the Generator wrote {v:.2f}x its targets on held-out instructions of its training distribution",
            "transfer": "the benchmark gained {v:.2f}x what the self-instructed split gained"}
    for key, name in LINKS:
        value = row.get(key)
        if is_number(value) and value < BARS[key]:
            return name, f"{name} broke: {what[name].format(v=value)} (bar {BARS[key]:g})"
    measured = [name for key, name in LINKS if is_number(row.get(key))]
    if not measured:
        return None, "no link measured (the self-instructed split or the base evaluation is off)"
    return None, "every measured link holds (" + ", ".join(measured) + ")"
