"""The two rule sets a text rule can follow: selflen's own, or the reference implementation's exact behaviour."""

from __future__ import annotations

RULES: tuple[str, ...] = ("selflen", "reference")


def is_reference(rule: str, what: str) -> bool:
    """True for ``"reference"``, False for ``"selflen"``; any other name is an error that names ``what``.

    >>> is_reference("reference", "keep rule"), is_reference("selflen", "keep rule")
    (True, False)
    """
    if rule not in RULES:
        raise ValueError(f"unknown {what} {rule!r}; allowed: {', '.join(RULES)}")
    return rule == "reference"
