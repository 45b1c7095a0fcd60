"""JSONL reading and writing with errors that name the file and the 1-based line."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["BadRow", "RowError", "read_jsonl", "write_jsonl"]


class RowError(ValueError):
    """A malformed input row; the message names the file and the 1-based line number."""

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{path}:{line}: {reason}")


BadRow = tuple[int, str]
"""A skipped row: (1-based line number, reason)."""


def read_jsonl(path: str | Path, skip_bad: bool = False) -> tuple[list[dict[str, Any]], list[BadRow]]:
    """Read JSON objects, one per line; blank lines are ignored.

    Each row gets ``_line`` (its 1-based line number). A line that is not a JSON object raises ``RowError``
    unless ``skip_bad``, in which case it is returned in the second list.
    """
    rows: list[dict[str, Any]] = []
    bad: list[BadRow] = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"expected a JSON object, got {type(row).__name__}")
            except ValueError as exc:
                if not skip_bad:
                    raise RowError(path, number, f"bad JSON ({exc})") from None
                bad.append((number, f"bad JSON ({exc})"))
                continue
            row["_line"] = number
            rows.append(row)
    return rows, bad


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as UTF-8 JSONL (non-ASCII kept readable); fields starting with ``_`` are left out."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}, ensure_ascii=False) + "\n")
            count += 1
    return count
