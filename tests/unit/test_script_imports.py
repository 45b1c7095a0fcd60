"""Scripts outside the package (``bench/``, ``scripts/``, ``experiments/``, ``train.py``) import names from selflen
that still exist: a refactor that renames one (``TrainSettings`` became the ``finetune`` group) fails here, not in
the benchmark someone runs a month later. Read from the source (AST), so nothing heavy is imported but selflen."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def selflen_imports(source: str) -> list[tuple[int, str, str | None]]:
    """``(line, module, name)`` for every import of selflen in ``source`` (name None for ``import selflen.x``).

    >>> selflen_imports("import os\\nfrom selflen.store import Stage, read_jsonl\\nimport selflen.text")
    [(2, 'selflen.store', 'Stage'), (2, 'selflen.store', 'read_jsonl'), (3, 'selflen.text', None)]
    """
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "selflen":
            out += [(node.lineno, node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "selflen"]
    return sorted(out)


def outside_its_package(mod: object) -> bool:
    """A submodule found outside its package's folders: an editable install of another checkout serves names this
    tree no longer has (``selflen.finetune`` from an older clone), which a fresh checkout would not find."""
    parent = sys.modules.get(getattr(mod, "__name__", "").rpartition(".")[0])
    file = getattr(mod, "__file__", None)
    if parent is None or file is None:
        return False
    return not any(Path(file).resolve().is_relative_to(Path(p).resolve()) for p in getattr(parent, "__path__", []))


def missing(module: str, name: str | None) -> bool:
    """Whether ``from module import name`` (or ``import module``) would fail in a checkout of this tree alone."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError:
        return True
    if outside_its_package(mod):
        return True
    if name is None:
        return False
    if hasattr(mod, name):  # a submodule imported earlier is an attribute of its package too
        return outside_its_package(getattr(mod, name))
    try:
        sub = importlib.import_module(f"{module}.{name}")
    except ModuleNotFoundError:
        return True
    return outside_its_package(sub)


def test_the_check_sees_a_renamed_name() -> None:
    assert missing("selflen.trainer", "TrainSettings") and missing("selflen.nowhere", None)
    assert missing("selflen", "finetune") and missing("selflen.finetune", "train")  # renamed to selflen.trainer
    assert not missing("selflen.trainer", "train") and not missing("selflen", "stages")


def test_every_script_imports_names_selflen_has() -> None:
    folders = ("bench", "scripts", "experiments")
    scripts = [ROOT / "train.py", *sorted(p for d in folders for p in (ROOT / d).rglob("*.py"))]
    assert len(scripts) > 10
    bad = [f"{path.relative_to(ROOT)}:{line}: {module}{'.' + name if name else ''}"
           for path in scripts for line, module, name in selflen_imports(path.read_text()) if missing(module, name)]
    assert not bad, "imports of names selflen no longer has:\n" + "\n".join(bad)
