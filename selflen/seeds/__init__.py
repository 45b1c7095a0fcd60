"""Seed instructions for long-form writing, one packaged JSONL file per language."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CATEGORIES", "LANGUAGES", "Seed", "load_seeds"]

CATEGORIES: tuple[str, ...] = (
    "literature_creative",
    "academic_research",
    "business",
    "journalism",
    "professional_misc",
    "personal_expression",
    "technical_documentation",
)
LANGUAGES: tuple[str, ...] = ("en", "zh")

_SEED_DIR = Path(__file__).resolve().parent
_REQUIRED_FIELDS = ("id", "category", "prompt")


@dataclass(frozen=True)
class Seed:
    """One seed instruction: a request for a substantial piece of writing."""

    id: str
    category: str
    prompt: str
    language: str


def _default_path(language: str) -> Path:
    """Path of the packaged seed file for ``language``."""
    return _SEED_DIR / f"{language}.jsonl"


def load_seeds(language: str, path: str | Path | None = None) -> list[Seed]:
    """Load the seeds for ``language`` ("en" or "zh"); ``path`` overrides the packaged file.

    Raises ``ValueError`` (naming file and line) on malformed lines, unknown categories or duplicate ids.
    """
    if language not in LANGUAGES:
        raise ValueError(f"unknown seed language {language!r}; expected one of {LANGUAGES}")
    file = Path(path) if path is not None else _default_path(language)
    seeds: list[Seed] = []
    seen: set[str] = set()
    with file.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            where = f"{file}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: invalid JSON ({exc.msg})") from exc
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            for key in _REQUIRED_FIELDS:
                value = obj.get(key)
                if not isinstance(value, str) or not value.strip():
                    raise ValueError(f"{where}: field {key!r} missing or not a non-empty string")
            if obj["category"] not in CATEGORIES:
                raise ValueError(f"{where}: unknown category {obj['category']!r}; expected one of {CATEGORIES}")
            if obj["id"] in seen:
                raise ValueError(f"{where}: duplicate seed id {obj['id']!r}")
            seen.add(obj["id"])
            seeds.append(Seed(id=obj["id"], category=obj["category"], prompt=obj["prompt"].strip(), language=language))
    return seeds
