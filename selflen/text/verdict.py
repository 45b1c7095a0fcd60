"""Reading an LLM judge's yes/no verdict."""

from __future__ import annotations

import re

from selflen.text.rules import is_reference

__all__ = ["parse_yes_no"]
"""Each rule below that differs from the reference keeps the reference's exact behaviour as ``rule="reference"``."""


_JUNK_RE = re.compile(r"[\W_]*")
_LABEL_RE = re.compile(
    r"(?:final answer|answer|judgement|judgment|verdict|decision|output|回答|答案|判断|结论|结果)\s*[:：]"
)
_NO_RE = re.compile(r"(?:no(?![a-z])|not(?![a-z])|不是|不适合|不合适|不可以|不能|不行|否)")
_YES_RE = re.compile(r"(?:yes(?![a-z])|是的|是|适合|合适|可以)")
_CONNECTOR_RE = re.compile(r"\s*(?:/|\||or(?![a-z])|and(?![a-z])|或者|或|还是|和|与)?\s*")


def parse_yes_no(text: str, rule: str = "selflen") -> bool | None:
    """Read a judge's yes/no verdict robustly (the reference accepted only an exact "是" / "yes").

    The first meaningful token decides, after stripping whitespace, markdown, quotes and punctuation and
    an optional label ("Answer:", "答案：" ...). Yes: ``yes``, 是, 是的, 适合, 合适, 可以; no: ``no``,
    ``not``, 不是, 不适合, 不合适, 不可以, 不能, 不行, 否 (any case; "yesterday"/"nothing" are not verdicts,
    and a bare 不 is not one either since 不错 means "good"). ``None`` when it cannot
    tell: the text starts with something else ("I think yes") or offers both ("yes/no", "是否").

    >>> [parse_yes_no(t) for t in ["Yes.", "**No**", "yes, because it is long", "是的，适合", "不适合"]]
    [True, False, True, True, False]
    >>> [parse_yes_no(t) for t in ["Yes/No", "是否", "Maybe", "", "Answer: NO"]]
    [None, None, None, None, False]

    ``rule="reference"``: yes only for exactly "是" or "yes" (any case) after stripping, no for anything else.

    >>> [parse_yes_no(t, "reference") for t in [" YES ", "Yes.", "是", "是的"]]
    [True, False, True, False]
    """
    if is_reference(rule, "judge rule"):
        return text.strip() == "是" or text.strip().lower() == "yes"
    s = text.strip().lower()
    pos = _JUNK_RE.match(s).end()  # type: ignore[union-attr]
    label = _LABEL_RE.match(s, pos)
    if label:
        pos = _JUNK_RE.match(s, label.end()).end()  # type: ignore[union-attr]
    verdict: bool | None = None
    m = _NO_RE.match(s, pos)
    if m:
        verdict = False
    else:
        m = _YES_RE.match(s, pos)
        if m:
            verdict = True
    if m is None:
        return None
    after = _CONNECTOR_RE.match(s, m.end()).end()  # type: ignore[union-attr]
    opposite = _YES_RE if verdict is False else _NO_RE
    if opposite.match(s, after):
        return None
    return verdict
