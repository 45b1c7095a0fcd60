"""JSON lines, the project's one reader and writer of them: a run's own records (appended one by one, so a torn
last line is a crash, cut off on resume) and input files (benchmarks, rows to score: every bad line is named by
FILE:LINE); and the atomic write every file of a run goes through."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from selflen.errors import StoreError
from selflen.integrity import redo_fix

log = logging.getLogger(__name__)


class RowError(ValueError):
    """A malformed row of an input file (a benchmark, rows to score); the message names the file and the 1-based
    line."""

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{path}:{line}: {reason}")


MAX_LINE_BYTES = 64 * 1024 * 1024  # one row of an input file; longer is not a benchmark row
BadRow = tuple[int, str]
"""A skipped row of an input file: (1-based line number, reason)."""


def read_jsonl(path: Path | str, repair: bool = False, *, strict: bool = False,
               bad: list[BadRow] | None = None) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, one per line: the one JSONL reader of the project.

    A run's own records (the default): a missing file is ``[]``; a torn last line (a crash mid-append: no newline,
    or unparsable) is skipped (and cut off if ``repair``); a bad line followed by good ones is corruption, not a
    crash: ``StoreError`` naming FILE:LINE.

    An input file (``strict``: a benchmark, rows to score): a missing file raises ``FileNotFoundError``, blank lines
    are skipped, each row gets ``_line`` (its 1-based line number), and a line that is not a JSON object, not UTF-8
    or longer than ``MAX_LINE_BYTES`` raises ``RowError`` naming FILE:LINE, or, given a ``bad`` list, is added to
    it as (line, reason) and skipped.
    """
    path = Path(path)
    if not strict and not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    terminated = lines.pop() == b""  # the last line ends with a newline (or the file is empty)
    if not terminated:
        lines.append(data[data.rfind(b"\n") + 1:])
    rows: list[dict[str, Any]] = []
    offset = 0  # where the current line starts
    for number, raw in enumerate(lines, start=1):
        try:
            if not strict and number == len(lines) and not terminated:
                raise ValueError("no newline")
            row = _parse_line(raw, strict)
        except ValueError as err:
            if strict:
                if bad is None:
                    raise RowError(path, number, str(err)) from None
                bad.append((number, str(err)))
                offset += len(raw) + 1
                continue
            if b"".join(lines[number:]).strip():
                raise StoreError(f"{path}:{number}: corrupt record ({str(err).splitlines()[0][:120]}) followed by "
                                 f"more records; {redo_fix(path.parent)} (or delete the stage folder {path.parent})"
                                 ) from None
            log.warning("%s: dropping a torn last line (%d bytes)", path, len(data) - offset)
            if repair:
                with open(path, "r+b") as f:
                    f.truncate(offset)
            break
        offset += len(raw) + 1
        if row is None:
            continue
        if strict:
            row["_line"] = number
        rows.append(row)
    return rows


def _parse_line(raw: bytes, strict: bool) -> dict[str, Any] | None:
    """One line as a JSON object (None: a blank line of an input file); ``ValueError`` saying what is wrong."""
    if strict and len(raw) > MAX_LINE_BYTES:
        raise ValueError(f"line of {len(raw)} bytes is longer than the limit of {MAX_LINE_BYTES}")
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {raw[exc.start]:#x} at column {exc.start + 1})") from None
    if strict and not line.strip():
        return None
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"bad JSON ({exc})") from None
    if not isinstance(row, dict):
        raise ValueError(f"bad JSON (expected a JSON object, got {type(row).__name__})")
    return row


def write_jsonl(path: Path | str, rows: Iterable[dict[str, Any]], *, private: bool = True) -> int:
    """Write a whole file atomically (temp file + rename); ``private=False`` leaves out the fields whose name starts
    with ``_`` (what ``read_jsonl(strict=True)`` adds, such as ``_line``)."""
    lines = [json.dumps(row if private else {k: v for k, v in row.items() if not k.startswith("_")},
                        ensure_ascii=False) + "\n" for row in rows]
    write_atomic(Path(path), "".join(lines))
    return len(lines)


def write_atomic(path: Path, text: str) -> None:
    """``text`` into ``path`` through a synced temp file and a rename, so a crash or a full disk leaves the old file
    (or none) and never a half-written one; a failure is one ``StoreError`` naming the file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        what = "the disk is full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else err.strerror or str(err)
        raise StoreError(f"{path}: cannot write it: {what}; nothing half-written is kept, free space (or fix the "
                         "permissions) and re-run the same command to resume") from None
