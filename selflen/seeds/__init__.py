"""Seed instructions for long-form writing, one packaged JSONL file per language."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selflen.errors import SelflenError
from selflen.jsonl import RowError, read_jsonl

__all__ = ["CATEGORIES", "LANGUAGES", "Seed", "SeedError", "load_seeds"]

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


class SeedError(SelflenError, ValueError):
    """A malformed seed file; the message names FILE:LINE."""


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

    Raises ``SeedError`` (a ``ValueError`` naming FILE:LINE) on malformed lines, bytes that are not UTF-8, unknown
    categories, duplicate ids or a file without any seed.
    """
    if language not in LANGUAGES:
        raise SeedError(f"unknown seed language {language!r}; expected one of {LANGUAGES}")
    file = Path(path) if path is not None else _default_path(language)
    seeds: list[Seed] = []
    seen: set[str] = set()
    try:
        rows = read_jsonl(file, strict=True)
    except FileNotFoundError:
        raise SeedError(f"seed file {file} does not exist") from None
    except RowError as err:  # FILE:LINE: bad JSON, not a JSON object, not UTF-8
        raise SeedError(str(err)) from None
    for obj in rows:
        where = f"{file}:{obj.pop('_line')}"
        for key in _REQUIRED_FIELDS:
            value = obj.get(key)
            if not isinstance(value, str) or not value.strip():
                raise SeedError(f"{where}: field {key!r} missing or not a non-empty string")
        if obj["category"] not in CATEGORIES:
            raise SeedError(f"{where}: unknown category {obj['category']!r}; expected one of {CATEGORIES}")
        if obj["id"] in seen:
            raise SeedError(f"{where}: duplicate seed id {obj['id']!r}")
        seen.add(obj["id"])
        seeds.append(Seed(id=obj["id"], category=obj["category"], prompt=obj["prompt"].strip(), language=language))
    if not seeds:
        raise SeedError(f"{file}: no seed instructions (the file is empty); restore it or give another file")
    return seeds
