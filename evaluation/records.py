"""JSONL reading and writing with errors that name the file and the 1-based line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["BadRow", "RowError", "read_jsonl", "write_jsonl"]


class RowError(ValueError):
    """A malformed input row; the message names the file and the 1-based line number."""

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{path}:{line}: {reason}")


MAX_LINE_BYTES = 64 * 1024 * 1024  # one row; longer is not a benchmark row
BadRow = tuple[int, str]
"""A skipped row: (1-based line number, reason)."""


def read_jsonl(path: str | Path, skip_bad: bool = False) -> tuple[list[dict[str, Any]], list[BadRow]]:
    """Read JSON objects, one per line; blank lines are ignored.

    Each row gets ``_line`` (its 1-based line number). A line that is not a JSON object, not UTF-8, or longer
    than ``MAX_LINE_BYTES`` raises ``RowError`` unless ``skip_bad``, in which case it is returned in the second
    list.
    """
    rows: list[dict[str, Any]] = []
    bad: list[BadRow] = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                if len(raw) > MAX_LINE_BYTES:
                    raise ValueError(f"line of {len(raw)} bytes is longer than the limit of {MAX_LINE_BYTES}")
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise ValueError(f"not UTF-8 text (byte {raw[exc.start]:#x} at column {exc.start + 1})") from None
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise ValueError(f"bad JSON ({exc})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"bad JSON (expected a JSON object, got {type(row).__name__})")
            except ValueError as exc:
                if not skip_bad:
                    raise RowError(path, number, str(exc)) from None
                bad.append((number, str(exc)))
                continue
            row["_line"] = number
            rows.append(row)
    return rows, bad


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as UTF-8 JSONL atomically (non-ASCII kept readable); fields starting with ``_`` are left out."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                kept = {k: v for k, v in row.items() if not k.startswith("_")}
                fh.write(json.dumps(kept, ensure_ascii=False) + "\n")
                count += 1
        os.replace(tmp, path)  # all or nothing: a full disk leaves no half-written output
    finally:
        tmp.unlink(missing_ok=True)
    return count
