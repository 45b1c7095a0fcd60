"""The three links (target gain, fit, transfer) and the weakest one, on fixed inputs with known answers."""

from __future__ import annotations

import pytest

from selflen.report.links import BARS, iteration_links, weakest_link

pytestmark = pytest.mark.unit


def test_links_of_one_iteration() -> None:
    targets = [{"words": 900, "words_before": 450}, {"words": 700, "words_before": 350}]  # 800 from 400
    row = iteration_links(targets, {"mean_words": 640.0, "ended_mean_words": 400.0}, [600, 760, 680],
                          {"ratio": 1.8, "low": 1.4, "high": 2.2}, {"ratio": 1.35})
    assert row["targets"] == 2 and row["target_words"] == 800.0 and row["source_words"] == 400.0
    assert row["target_gain"] == 2.0 and row["target_over_base"] == 1.25 and row["target_over_base_ended"] == 2.0
    assert row["self_words"] == 680.0 and row["fit"] == 0.85
    assert row["self_growth"] == 1.8 and row["bench_growth"] == 1.35 and row["transfer"] == 0.75
    assert weakest_link(row)[0] == "transfer"  # targets and fit hold; the benchmark gained 0.75x of the split


def test_missing_parts_are_none_never_zero() -> None:
    row = iteration_links([], None, [], None, None)
    assert row["targets"] == 0
    assert all(row[k] is None for k in ("target_words", "target_gain", "target_over_base", "fit", "transfer"))
    assert weakest_link(row) == (None, "no link measured (the self-instructed split or the base evaluation is off)")


@pytest.mark.parametrize(("row", "broken"), [
    ({"target_over_base_ended": 1.19, "fit": 0.1, "transfer": 0.1}, "target gain"),  # the first in the chain
    ({"target_over_base_ended": 1.2, "fit": 0.84, "transfer": 2.0}, "fit"),
    ({"target_over_base_ended": 3.0, "fit": 1.0, "transfer": 0.79}, "transfer"),
    ({"target_over_base_ended": 3.0, "fit": 1.0, "transfer": 0.8}, None),
])  # fmt: skip
def test_weakest_link_is_the_first_below_its_bar(row: dict, broken: str | None) -> None:
    name, sentence = weakest_link(row)
    assert name == broken
    assert sentence.startswith(f"{broken} broke") if broken else sentence.startswith("every measured link holds")
    assert set(BARS) == {"target_over_base_ended", "fit", "transfer"}


def test_a_generator_that_loops_to_its_targets_length_fits_in_words_but_not_in_effective_words() -> None:
    """The proof run's pattern (2026-12-03): mean words on the split reach the targets' because more answers run
    to the budget in loops; effective words, which count a repeat once, show how little was learnt."""
    targets = [{"words": 560, "words_before": 370}] * 4
    base = {"mean_words": 700.0, "ended_mean_words": 400.0, "effective_words": 590.0}
    row = iteration_links(targets, base, [560, 560], {"ratio": 1.03}, {"ratio": 1.03}, self_effective=[400, 420])
    assert row["fit"] == 1.0 and row["fit_effective"] == round(410 / 560, 3)
    assert row["target_over_base_effective"] == round(560 / 590, 3) < 1  # the headline cannot reach 1.5x
    assert iteration_links(targets, base, [560], None, None)["fit_effective"] is None  # not measured: None
