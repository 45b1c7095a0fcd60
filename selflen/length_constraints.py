"""Length constraints for the final length-following SFT (section 5 of the spec, with its bugs fixed).

Each long response gets a query stating a length constraint that the response itself satisfies, so the
model learns to follow length instructions. Compared with the reference ``add_length_control.py``:

- every constraint is checked against LonGen's own evaluation window (section 6.1), so "about" targets are
  within ±20% and "above"/"below" within their 1.5×/0.5× windows;
- ranges are never degenerate ("3000-3000 words");
- Chinese "above"/"below" point the right way (the reference swapped them);
- numbers are always Arabic digits, so LonGen's ``\\d+`` parsing reads them back;
- rounding units scale down with the length, so tiny-model runs (tens of words) get sensible targets;
- the rewriting prompt (``prompts/length_rewrite_<lang>.md``) and a template fallback (wording in
  ``prompts/length_constraints.json``) are both part of selflen, not left to an external harness.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from selflen import prompts

__all__ = [
    "DEFAULT_MIX",
    "KINDS",
    "LANGS",
    "Constraint",
    "accept_rewrite",
    "apply_template",
    "make_constraint",
    "parse_constraint_numbers",
    "pick_kind",
    "rewrite_prompt",
]

KINDS: tuple[str, ...] = ("about", "range", "above", "below")
LANGS: tuple[str, ...] = ("en", "zh")
# The reference's share of each kind (r in [0, .40) about, [.40, .65) range, [.65, .75) above, else below).
DEFAULT_MIX: Mapping[str, float] = {"about": 0.40, "range": 0.25, "above": 0.10, "below": 0.25}

# Finer rounding units tried, in order, when the drawn unit cannot express a valid constraint.
_LADDER: tuple[int, ...] = (10000, 5000, 2000, 1000, 500, 200, 100, 50, 20, 10, 5, 2, 1)

# Phrasings and query templates: the wording lives in selflen/prompts/length_constraints.json, loaded once.
_WORDING = json.loads((prompts.HERE / "length_constraints.json").read_text(encoding="utf-8"))
# (lang, kind) -> ((template, strict), ...). A strict phrasing ("more than N") is only used when words != N.
_PHRASES: dict[tuple[str, str], tuple[tuple[str, bool], ...]] = {
    (lang, kind): tuple((p["text"], bool(p["strict"])) for p in phrases)
    for lang, kinds in _WORDING["phrases"].items()
    for kind, phrases in kinds.items()
}

# Direction cues, used to reject a rewrite that flipped an above/below constraint.
_CUES: dict[tuple[str, str], re.Pattern[str]] = {
    ("en", "above"): re.compile(
        r"at least|(?<!no )more than|or more|minimum|no (?:less|fewer) than|exceed|over \d", re.IGNORECASE
    ),
    ("en", "below"): re.compile(
        r"at most|no more than|fewer than|(?<!no )less than|or (?:fewer|less)|maximum|under \d|not exceed",
        re.IGNORECASE,
    ),
    ("zh", "above"): re.compile(r"不少于|不低于|(?<!不)超过|至少|以上|多于"),
    ("zh", "below"): re.compile(r"不超过|不多于|(?<!不)少于|至多|最多|以内|以下"),
}

_NUMBER_RE = re.compile(r"\d+")
_ONE_WORDS_RE = re.compile(r"(?<!\d)1 words")


@dataclass(frozen=True)
class Constraint:
    """A stated length constraint: its kind, its numbers, its wording (``text``) and language."""

    kind: str
    numbers: tuple[int, ...]
    text: str
    lang: str

    def window(self) -> tuple[float, float]:
        """LonGen's target window [a, b] for this constraint (a response inside it scores 1).

        >>> Constraint("about", (100,), "around 100 words", "en").window()
        (80.0, 120.0)
        >>> Constraint("below", (100,), "at most 100 words", "en").window()
        (50.0, 100.0)
        """
        if self.kind == "about":
            n = self.numbers[0]
            return 0.8 * n, 1.2 * n
        if self.kind == "range":
            return float(self.numbers[0]), float(self.numbers[1])
        if self.kind == "above":
            n = self.numbers[0]
            return float(n), 1.5 * n
        if self.kind == "below":
            n = self.numbers[0]
            return 0.5 * n, float(n)
        raise ValueError(f"unknown constraint kind {self.kind!r}; allowed: {', '.join(KINDS)}")

    def contains(self, words: int) -> bool:
        """Whether a response of ``words`` words lies inside :meth:`window`."""
        lo, hi = self.window()
        return lo <= words <= hi


def _scaled_units(words: int, units: Sequence[int]) -> list[int]:
    """Scale the configured units down by powers of ten until they suit ``words`` (smallest unit ≤ words/2).

    The reference units (1000, 2000) are meant for 2000–8000-word answers; a 37-word answer gets (10, 20).

    >>> _scaled_units(37, (1000, 2000)), _scaled_units(5000, (1000, 2000)), _scaled_units(1, (1000, 2000))
    ([10, 20], [1000, 2000], [1, 2])
    """
    scaled = list(units)
    while 2 * min(scaled) > words and all(u % 10 == 0 for u in scaled):
        scaled = [u // 10 for u in scaled]
    return scaled


def _numbers_for(words: int, kind: str, unit: int, rng: random.Random) -> tuple[int, ...] | None:
    """The constraint's numbers at rounding ``unit``, or None if that unit cannot contain ``words``."""
    if kind == "about":
        n = math.floor(words / unit + 0.5) * unit  # round half up, not banker's rounding
        ok = n > 0 and 0.8 * n <= words <= 1.2 * n
        return (n,) if ok else None
    if kind == "range":
        lo, hi = (words // unit) * unit, -(-words // unit) * unit
        if lo == hi:  # words is a multiple of unit: widen to one side instead of "3000-3000"
            options = [(lo, lo + unit)] + ([(lo - unit, lo)] if lo - unit >= 1 else [])
            lo, hi = options[rng.randrange(len(options))]
        return (lo, hi) if lo >= 1 else None
    if kind == "above":
        n = (words // unit) * unit
        return (n,) if n >= 1 and words <= 1.5 * n else None
    if kind == "below":
        n = -(-words // unit) * unit
        return (n,) if 0.5 * n <= words else None
    raise ValueError(f"unknown constraint kind {kind!r}; allowed: {', '.join(KINDS)}")


def make_constraint(
    words: int,
    kind: str,
    lang: str,
    rng: random.Random,
    units: Sequence[int] = (1000, 2000),
    unit_weights: Sequence[float] = (0.8, 0.2),
) -> Constraint:
    """A constraint of ``kind`` that an answer of ``words`` words satisfies under LonGen's windows.

    The rounding unit is drawn from ``units`` (scaled down by powers of ten for short answers); when it
    cannot express a valid constraint (e.g. 2999 words rounded to 2000 is outside ±20%), finer units
    (…, 1000, 500, 200, 100, …, 1) are tried in turn. The wording is drawn from a few phrasings per
    kind and language; strict ones ("more than N") are used only when ``words != N``.

    >>> c = make_constraint(2999, "about", "en", random.Random(0))
    >>> c.numbers, c.contains(2999)
    ((3000,), True)
    >>> make_constraint(37, "above", "zh", random.Random(1)).numbers
    (30,)
    """
    if kind not in KINDS:
        raise ValueError(f"unknown constraint kind {kind!r}; allowed: {', '.join(KINDS)}")
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}; allowed: {', '.join(LANGS)}")
    if words < 1:
        raise ValueError(f"words must be >= 1, got {words}")
    if not units or any(u < 1 for u in units) or len(units) != len(unit_weights):
        raise ValueError("units must be positive and match unit_weights in length")
    scaled = _scaled_units(words, units)
    unit = rng.choices(scaled, weights=unit_weights)[0]
    numbers = None
    for u in [unit, *(x for x in _LADDER if x < unit)]:
        numbers = _numbers_for(words, kind, u, rng)
        if numbers is not None:
            break
    assert numbers is not None  # unit 1 always works
    strict_ok = kind == "above" and words > numbers[0] or kind == "below" and words < numbers[0]
    phrases = [p for p, strict in _PHRASES[(lang, kind)] if strict_ok or not strict]
    text = phrases[rng.randrange(len(phrases))].format(*numbers)
    if lang == "en":
        text = _ONE_WORDS_RE.sub("1 word", text)  # "at least 1 word", not "1 words"
    return Constraint(kind=kind, numbers=numbers, text=text, lang=lang)


def pick_kind(rng: random.Random, mix: Mapping[str, float] = DEFAULT_MIX) -> str:
    """Draw a constraint kind with the given shares (one ``rng.random()`` per call).

    >>> pick_kind(random.Random(0), {"range": 1.0})
    'range'
    """
    unknown = [k for k in mix if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown constraint kinds {unknown}; allowed: {', '.join(KINDS)}")
    if any(w < 0 for w in mix.values()):
        raise ValueError("kind weights must be non-negative")
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("kind weights must not all be zero")
    r = rng.random() * total
    acc = 0.0
    last = ""
    for kind, weight in mix.items():
        if weight <= 0:
            continue
        acc += weight
        last = kind
        if r < acc:
            return kind
    return last  # only reachable through float rounding at the top end


_TEMPLATES: dict[str, tuple[str, ...]] = {lang: tuple(ts) for lang, ts in _WORDING["templates"].items()}


def _stable_index(key: str, n: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little") % n


def apply_template(query: str, constraint: Constraint) -> str:
    """Add the constraint to the query with a fixed template: the fallback when no LLM rewrite is accepted.

    The template is picked deterministically from the query and the constraint, so reruns agree. An
    existing length demand in the query is left in place (only the LLM rewrite can replace it).

    >>> c = Constraint("above", (300,), "at least 300 words", "en")
    >>> "at least 300 words" in apply_template("Describe the sea.", c)
    True
    """
    templates = _TEMPLATES[constraint.lang]
    t = templates[_stable_index(f"{query}\x00{constraint.text}", len(templates))]
    return t.format(q=query.strip(), c=constraint.text)


def rewrite_prompt(query: str, constraint: Constraint) -> list[dict[str, str]]:
    """Chat messages asking an LLM to weave the constraint into the query in the query's own style.

    The instruction is the prompt ``selflen/prompts/length_rewrite_<lang>.md``.

    >>> msgs = rewrite_prompt("写一篇关于春天的散文。", Constraint("about", (800,), "大约800字", "zh"))
    >>> msgs[0]["role"], "大约800字" in msgs[0]["content"]
    ('user', True)
    """
    sep = "、" if constraint.lang == "zh" else ", "
    content = prompts.render(
        "length_rewrite",
        constraint.lang,
        constraint=constraint.text,
        numbers=sep.join(str(x) for x in constraint.numbers),
        query=query.strip(),
    )
    return [{"role": "user", "content": content}]


def parse_constraint_numbers(text: str) -> list[int]:
    """All integers written in digits, in order (what LonGen's ``\\d+`` parsing sees).

    >>> parse_constraint_numbers("between 2000 and 3000 words"), parse_constraint_numbers("三千字")
    ([2000, 3000], [])
    """
    return [int(m) for m in _NUMBER_RE.findall(text)]


def accept_rewrite(
    rewritten: str, constraint: Constraint, query: str | None = None, max_ratio: float = 3.0, slack: int = 200
) -> bool:
    """Whether an LLM rewrite of the query can be used instead of the template fallback.

    Accepted iff it is non-empty, contains every number of the constraint as a whole number, does not
    state only the opposite direction of an above/below constraint, and (when ``query`` is given) is at
    most ``max_ratio`` × the query's length plus ``slack`` characters — longer means the model answered.

    >>> c = Constraint("below", (500,), "at most 500 words", "en")
    >>> accept_rewrite("Describe the sea in at most 500 words.", c), accept_rewrite("Describe the sea.", c)
    (True, False)
    >>> accept_rewrite("Describe the sea in more than 500 words.", c)
    False
    """
    text = rewritten.strip()
    if not text:
        return False
    found = set(parse_constraint_numbers(text))
    if any(n not in found for n in constraint.numbers):
        return False
    if constraint.kind in ("above", "below"):
        other = "below" if constraint.kind == "above" else "above"
        own_cue = _CUES[(constraint.lang, constraint.kind)].search(text)
        other_cue = _CUES[(constraint.lang, other)].search(text)
        if other_cue and not own_cue:
            return False
    return not (query is not None and len(text) > max_ratio * len(query.strip()) + slack)
