"""Length constraints: hand cases plus properties over every length, kind and language."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selflen import length_constraints as L

pytestmark = pytest.mark.unit

EN_ABOVE = re.compile(r"at least|(?<!no )more than|or more")
EN_BELOW = re.compile(r"at most|no more than|fewer|less than")
ZH_ABOVE = re.compile(r"不少于|(?<!不)超过")
ZH_BELOW = re.compile(r"不超过|(?<!不)少于")


def _check(c: L.Constraint, words: int) -> None:
    lo, hi = c.window()
    assert lo <= words <= hi, (c, words)
    assert c.contains(words)
    assert L.parse_constraint_numbers(c.text) == list(c.numbers)
    for n in c.numbers:
        assert str(n) in c.text
    if c.kind == "range":
        assert len(c.numbers) == 2 and 1 <= c.numbers[0] < c.numbers[1]
        # LonGen reads ranges with (\d+)\D+(\d+)
        m = re.search(r"(\d+)\D+(\d+)", c.text)
        assert m and (int(m.group(1)), int(m.group(2))) == c.numbers
    else:
        assert len(c.numbers) == 1 and c.numbers[0] >= 1
    above, below = (EN_ABOVE, EN_BELOW) if c.lang == "en" else (ZH_ABOVE, ZH_BELOW)
    if c.kind == "above":
        assert above.search(c.text) and not below.search(c.text), c.text
    if c.kind == "below":
        assert below.search(c.text) and not above.search(c.text), c.text
    if c.lang == "en":
        assert "word" in c.text
    else:
        assert "字" in c.text


@settings(max_examples=600, deadline=None)
@given(
    words=st.integers(min_value=1, max_value=20000),
    kind=st.sampled_from(L.KINDS),
    lang=st.sampled_from(L.LANGS),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_constraint_properties(words: int, kind: str, lang: str, seed: int) -> None:
    c = L.make_constraint(words, kind, lang, random.Random(seed))
    assert (c.kind, c.lang) == (kind, lang)
    _check(c, words)


@pytest.mark.parametrize("kind", L.KINDS)
@pytest.mark.parametrize("lang", L.LANGS)
def test_constraint_exhaustive_small_and_reference_range(kind: str, lang: str) -> None:
    rng = random.Random(0)
    for words in [*range(1, 400), *range(1990, 8010, 7)]:
        _check(L.make_constraint(words, kind, lang, rng), words)


def test_about_fixes_reference_rounding() -> None:
    # the reference could say "around 2000" for 2999 words (g = 2000); we always stay within ±20%
    for seed in range(50):
        c = L.make_constraint(2999, "about", "en", random.Random(seed))
        assert c.numbers == (3000,)
    # 2500 words: banker's rounding (round(2.5) = 2) would say "around 2000", outside ±20%; half-up gives 3000
    for seed in range(20):
        assert L.make_constraint(2500, "about", "en", random.Random(seed)).numbers == (3000,)


def test_range_never_degenerate() -> None:
    seen = set()
    for seed in range(40):
        c = L.make_constraint(3000, "range", "en", random.Random(seed))
        assert c.numbers[0] < c.numbers[1]
        seen.add(c.numbers)
    assert seen <= {(2000, 3000), (3000, 4000), (2000, 4000)}
    assert (2000, 3000) in seen and (3000, 4000) in seen


def test_small_counts_use_small_units() -> None:
    assert L.make_constraint(37, "about", "en", random.Random(0)).numbers == (40,)
    assert L.make_constraint(37, "below", "en", random.Random(0)).numbers in {(40,), (50,)}
    assert L.make_constraint(1, "range", "zh", random.Random(0)).numbers == (1, 2)
    assert L.make_constraint(1, "above", "en", random.Random(0)).text in {"at least 1 word", "1 word or more"}


def test_chinese_direction_not_swapped() -> None:
    for seed in range(30):
        above = L.make_constraint(4321, "above", "zh", random.Random(seed))
        below = L.make_constraint(4321, "below", "zh", random.Random(seed))
        assert above.numbers[0] <= 4321 <= below.numbers[0]
        assert ZH_ABOVE.search(above.text) and ZH_BELOW.search(below.text)


def test_strict_phrasing_only_when_strict() -> None:
    # 3000 words, above with floor rounding gives N = 3000: "more than 3000" would be false
    for seed in range(60):
        c = L.make_constraint(3000, "above", "en", random.Random(seed))
        if c.numbers == (3000,):
            assert "more than" not in c.text
        z = L.make_constraint(3000, "below", "zh", random.Random(seed))
        if z.numbers == (3000,):
            assert z.text == "不超过3000字"


def test_make_constraint_deterministic_and_validation() -> None:
    a = [L.make_constraint(w, "about", "en", random.Random(5)) for w in (10, 500, 5000)]
    b = [L.make_constraint(w, "about", "en", random.Random(5)) for w in (10, 500, 5000)]
    assert a == b
    with pytest.raises(ValueError, match="about, range, above, below"):
        L.make_constraint(100, "exact", "en", random.Random(0))
    with pytest.raises(ValueError, match="en, zh"):
        L.make_constraint(100, "about", "fr", random.Random(0))
    with pytest.raises(ValueError):
        L.make_constraint(0, "about", "en", random.Random(0))


def test_unit_weights() -> None:
    rng = random.Random(0)
    units = Counter()
    for _ in range(2000):
        c = L.make_constraint(5400, "about", "en", rng)  # 1000 -> 5000, 2000 -> 6000 (both valid)
        units[c.numbers[0]] += 1
    assert abs(units[5000] / 2000 - 0.8) < 0.04 and units[5000] + units[6000] == 2000


def test_window() -> None:
    assert L.Constraint("about", (1000,), "", "en").window() == (800.0, 1200.0)
    assert L.Constraint("range", (2000, 4000), "", "en").window() == (2000.0, 4000.0)
    assert L.Constraint("above", (1000,), "", "en").window() == (1000.0, 1500.0)
    assert L.Constraint("below", (1000,), "", "en").window() == (500.0, 1000.0)
    with pytest.raises(ValueError):
        L.Constraint("exact", (1,), "", "en").window()


def test_pick_kind_mix() -> None:
    rng = random.Random(0)
    counts = Counter(L.pick_kind(rng) for _ in range(20000))
    for kind, share in L.DEFAULT_MIX.items():
        assert abs(counts[kind] / 20000 - share) < 0.015
    assert {L.pick_kind(random.Random(s), {"above": 1.0, "below": 0.0}) for s in range(50)} == {"above"}
    with pytest.raises(ValueError):
        L.pick_kind(random.Random(0), {"bogus": 1.0})
    with pytest.raises(ValueError):
        L.pick_kind(random.Random(0), {"about": 0.0})


def test_apply_template() -> None:
    c = L.Constraint("range", (2000, 3000), "2000-3000 words", "en")
    out = L.apply_template("Write a story about a dragon.", c)
    assert "Write a story about a dragon." in out and "2000-3000 words" in out
    assert L.apply_template("Write a story about a dragon.", c) == out  # deterministic
    z = L.Constraint("above", (500,), "不少于500字", "zh")
    zout = L.apply_template("写一篇关于春天的散文。", z)
    assert "不少于500字" in zout and "写一篇关于春天的散文。" in zout
    # varied: different queries use more than one template
    outs = {L.apply_template(f"Query number {i}.", c).replace(f"Query number {i}.", "Q") for i in range(40)}
    assert len(outs) > 1


def test_rewrite_prompt() -> None:
    c = L.Constraint("below", (800,), "at most 800 words", "en")
    msgs = L.rewrite_prompt("Explain photosynthesis.", c)
    assert len(msgs) == 1 and msgs[0]["role"] == "user"
    assert "at most 800 words" in msgs[0]["content"] and "Explain photosynthesis." in msgs[0]["content"]
    z = L.Constraint("range", (2000, 3000), "2000字至3000字", "zh")
    zmsg = L.rewrite_prompt("介绍一下光合作用。", z)[0]["content"]
    assert "2000字至3000字" in zmsg and "介绍一下光合作用。" in zmsg and "改写" in zmsg


def test_accept_rewrite() -> None:
    c = L.Constraint("range", (2000, 3000), "2000-3000 words", "en")
    q = "Write a story about a dragon."
    assert L.accept_rewrite("Write a 2000-3000 word story about a dragon.", c, q)
    assert not L.accept_rewrite("", c, q)
    assert not L.accept_rewrite("Write a 2000 word story about a dragon.", c, q)  # missing 3000
    assert not L.accept_rewrite("Write a 20000-30000 word story.", c, q)  # numbers must match whole
    assert not L.accept_rewrite("Write 2000-3000 words. " + "Once upon a time " * 50, c, q)  # answered
    above = L.Constraint("above", (500,), "不少于500字", "zh")
    assert L.accept_rewrite("写一篇不少于500字的散文。", above)
    assert not L.accept_rewrite("写一篇不超过500字的散文。", above)  # direction flipped
    assert L.accept_rewrite("写一篇至少500字的散文。", above)


def test_parse_constraint_numbers() -> None:
    assert L.parse_constraint_numbers("between 2000 and 3000 words") == [2000, 3000]
    assert L.parse_constraint_numbers("大约5000字") == [5000]
    assert L.parse_constraint_numbers("no digits") == []
