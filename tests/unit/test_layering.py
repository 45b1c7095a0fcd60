"""The shape docs/architecture.md draws: imports go down the layers (never up), no module over 450 lines and no
function over 80. Read from the source (AST), so a back-up import fails here before anyone runs it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
LAYERS = [  # lowest first; a module may import its own layer and those below (docs/architecture.md "Layers")
    ["selflen", "selflen.errors", "selflen.integrity", "selflen.jsonl", "selflen.env", "selflen.benchmark_files",
     "selflen.addresses", "selflen.groups", "selflen.schema", "selflen.dtypes", "selflen.text", "selflen.prompts",
     "selflen.seeds", "selflen.chat_templates", "selflen.embedded"],
    ["selflen.store", "selflen.locks", "selflen.models", "selflen.decontam", "selflen.length_constraints",
     "selflen.tracking", "selflen.launch", "selflen.engines.base", "selflen.engines.journal",
     "selflen.engines.vllm_cpu"],
    ["selflen.config", "selflen.trainer", "selflen.engines.hf", "selflen.engines.openai", "selflen.engines.vllm",
     "selflen.engines.vllm_dp"],
    ["selflen.engines"],  # the package: engines built from the config groups, the pool
    ["evaluation"],
    ["selflen.stages"],
    ["selflen.report"],
    ["selflen.run_inputs", "selflen.stage_runner", "selflen.pipeline", "selflen.cli", "selflen.export"],
]
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 450, 80


def _modules() -> dict[str, Path]:
    out = {}
    for path in [*ROOT.glob("selflen/**/*.py"), *ROOT.glob("evaluation/**/*.py")]:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        out[name] = path
    return out


def layer_of(module: str) -> int:
    """The layer of ``module``: the longest prefix named in ``LAYERS``.

    >>> layer_of("selflen.stages.extend"), layer_of("selflen.engines"), layer_of("selflen.engines.hf")
    (5, 3, 2)
    """
    best, depth = None, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and name.count(".") > depth:
                best, depth = i, name.count(".")
    if best is None:
        raise KeyError(f"{module} is in no layer: add it to LAYERS and to docs/architecture.md")
    return best


def _imports(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (module level and inside functions; TYPE_CHECKING blocks too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in known:
                found.add(name)
    return found


def test_imports_go_down_the_layers() -> None:
    modules = _modules()
    known = set(modules)
    upward = []
    for name, path in sorted(modules.items()):
        if "lm_eval_tasks" in name:  # lm-eval's task folder, loaded by lm-eval itself
            continue
        mine = layer_of(name)
        upward += [f"{name} (layer {mine}) imports {dep} (layer {layer_of(dep)})"
                   for dep in sorted(_imports(path, known)) if layer_of(dep) > mine]
    assert not upward, "\n".join(upward)


def test_no_module_over_450_lines_and_no_function_over_80() -> None:
    too_long = []
    for name, path in sorted(_modules().items()):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {lines} lines")
    assert not too_long, "\n".join(too_long)


def test_the_layer_table_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("from selflen.pipeline import run\n")
    known = set(_modules())
    assert _imports(bad, known) == {"selflen.pipeline"} and layer_of("selflen.pipeline") > layer_of("selflen.store")
