"""The project's own prompt templates, one file per prompt and language (``$name`` placeholders)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent


@cache
def load(name: str, language: str) -> Template:
    """The template ``<name>_<language>.md``; English when no translation exists."""
    path = HERE / f"{name}_{language}.md"
    if not path.exists():
        path = HERE / f"{name}_en.md"
    if not path.exists():
        raise FileNotFoundError(f"no prompt template {name!r} in {HERE}")
    return Template(path.read_text(encoding="utf-8").strip())


def render(name: str, language: str, **fields: str) -> str:
    """Fill a template; a missing field raises ``KeyError`` naming it."""
    return load(name, language).substitute(**fields)
