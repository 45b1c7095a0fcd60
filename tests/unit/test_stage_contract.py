"""The stage contract (``selflen/stages/common.py``, docs/architecture.md "The stage contract"), read from the source:
every stage module has the same ``settings``/``run`` shape and a test of its own, and the files a reader opens to
know one stage are the numbers docs/architecture.md states ("What to open to know one stage"), computed here with
the import reader of ``test_layering.py``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.unit.test_layering import _imports, _modules, layer_of

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
STAGES_DIR = ROOT / "selflen" / "stages"
HELPERS = {"__init__", "common", "records", "evaluate_self"}  # shared by the stages (evaluate_self: evaluate's split)


def stage_modules() -> list[str]:
    return sorted(p.stem for p in STAGES_DIR.glob("*.py") if p.stem not in HELPERS)


def _functions(name: str) -> dict[str, ast.FunctionDef]:
    tree = ast.parse((STAGES_DIR / f"{name}.py").read_text(encoding="utf-8"))
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def _classes(name: str) -> dict[str, ast.ClassDef]:
    tree = ast.parse((STAGES_DIR / f"{name}.py").read_text(encoding="utf-8"))
    return {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}


def files_to_open(stage: str) -> list[str]:
    """The stage module and every project module it imports, directly or through others, leaving out layer 0 (the
    pure helpers and types: text rules, errors, addresses, groups, ..., each readable on its own)."""
    modules = _modules()
    known = set(modules)
    seen, todo = set(), [f"selflen.stages.{stage}"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += sorted(_imports(modules[name], known))
    return sorted(m for m in seen if layer_of(m) > 0)


@pytest.mark.parametrize("name", stage_modules())
def test_every_stage_has_the_settings_and_run_shape(name: str) -> None:
    fns, classes = _functions(name), _classes(name)
    settings, run = fns.get("settings"), fns.get("run")
    assert settings is not None and run is not None, f"stages/{name}.py needs settings(cfg, ...) and run(...)"
    first = settings.args.args[0]
    assert (first.arg, ast.unparse(first.annotation or ast.Constant(None))) == ("cfg", "TrainConfig"), name
    returned = ast.unparse(settings.returns or ast.Constant(None))
    assert returned.endswith("Settings") and returned in classes, f"{name}.settings returns its own XSettings"
    frozen = [d for d in classes[returned].decorator_list if "frozen=True" in ast.unparse(d)]
    assert frozen, f"{name}.{returned} is a frozen dataclass (its fields are the stage's identity)"
    args = run.args.args
    assert [a.arg for a in args][:1] + [a.arg for a in args][2:] == ["stage", "s", "engine"] and len(args) == 4, name
    assert [ast.unparse(a.annotation) for a in (args[0], args[2])] == ["Stage", returned], name
    assert ast.unparse(run.returns) == "StageResult", name


@pytest.mark.parametrize("name", stage_modules())
def test_every_stage_has_a_test_of_its_own(name: str) -> None:
    test = ROOT / "tests" / "unit" / f"test_stage_{name}.py"
    assert test.is_file(), f"stages/{name}.py has no {test.relative_to(ROOT)}"
    text = test.read_text(encoding="utf-8")
    assert re.search(rf"from selflen\.stages import .*\b{name}\b", text) and f"{name}.run(" in text, test.name


def test_the_architecture_doc_states_the_files_per_stage_this_tree_has() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = doc.split("## What to open to know one stage", 1)[1].split("\n## ", 1)[0]
    stated = {m[1]: (int(m[2]), m[3]) for m in re.finditer(r"^\| (\w+) \| (\d+) \| (.*?) \|", section, re.M)}
    assert set(stated) == set(stage_modules()), "one row per stage module"
    wrong = []
    for name, (count, listed) in stated.items():
        files = files_to_open(name)
        names = [f"`{m.removeprefix('selflen.').replace('.', '/')}`" for m in files]
        if count != len(files) or listed != ", ".join(names):
            wrong.append(f"| {name} | {len(files)} | {', '.join(names)} |")
    assert not wrong, "docs/architecture.md should say:\n" + "\n".join(wrong)
