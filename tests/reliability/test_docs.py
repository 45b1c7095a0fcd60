"""docs/reliability.md holds the fault table of this suite as rendered from ``cases.py`` (rewrite it with
``python -m tests.reliability.cases``), and every row of the table is a test that is collected."""

from __future__ import annotations

import pytest

from tests.reliability import cases

pytestmark = pytest.mark.unit


def test_the_doc_holds_the_table_of_this_suite() -> None:
    text = cases.DOC.read_text(encoding="utf-8")
    assert cases.BEGIN in text and cases.END in text, "run: python -m tests.reliability.cases"
    section = text[text.index(cases.BEGIN): text.index(cases.END) + len(cases.END)]
    stale = "docs/reliability.md is stale: run python -m tests.reliability.cases"
    assert section == cases.render(cases.all_cases()), stale


def test_every_class_has_cases() -> None:
    counts = {k: sum(c.klass == k for c in cases.all_cases()) for k in cases.CLASSES}
    assert all(n >= 4 for n in counts.values()), counts
    assert len({(c.klass, c.fault) for c in cases.all_cases()}) == len(cases.all_cases())  # no case twice
