"""Read an offline W&B run's transaction log (``run-*.wandb``) in tests, without W&B's servers.

The file is a LevelDB-style log: a 7-byte header (``:W&B``, magic, version), then 32 KiB blocks of records, each
``crc32c (4) | length (2, little-endian) | kind (1) | payload``; a payload split across blocks comes as FIRST,
MIDDLE..., LAST pieces. Each whole payload is one ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK, HEADER, RECORD_HEADER = 32768, 7, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def payloads(path: Path) -> Iterator[bytes]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, pending = HEADER, b""
    while pos + RECORD_HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < RECORD_HEADER:  # block padding
            pos += left_in_block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += RECORD_HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""
        else:  # zero padding at the end of the file
            break


def read(path: Path) -> list[Any]:
    """The records of one transaction log."""
    from wandb.proto import wandb_internal_pb2 as pb

    out = []
    for raw in payloads(path):
        rec = pb.Record()
        rec.ParseFromString(raw)
        out.append(rec)
    return out


def records(run_dir: Path, timeout: float = 60.0) -> list[Any]:
    """Every record of the offline runs under ``run_dir/wandb``, oldest first. W&B's service writes the log after
    ``run.finish()`` returns, so this waits until each log holds its ``exit`` record."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        files = sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
        logs = [read(f) for f in files]
        if files and all(any(r.WhichOneof("record_type") == "exit" for r in recs) for recs in logs):
            return [r for recs in logs for r in recs]
        if time.monotonic() > deadline:
            raise AssertionError(f"no finished offline W&B run under {run_dir} after {timeout} s")
        time.sleep(0.2)


def of_type(recs: list[Any], kind: str) -> list[Any]:
    return [getattr(r, kind) for r in recs if r.WhichOneof("record_type") == kind]


def history(recs: list[Any]) -> list[dict[str, Any]]:
    """Each logged row as ``{key: value}`` (values JSON-decoded)."""
    rows = []
    for h in of_type(recs, "history"):
        rows.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in h.item})
    return rows


def artifacts(recs: list[Any]) -> list[dict[str, Any]]:
    """Logged artifacts: name, type, metadata (decoded), file paths."""
    return [{"name": a.name, "type": a.type, "metadata": json.loads(a.metadata or "{}"),
             "files": [e.path for e in a.manifest.contents]} for a in of_type(recs, "artifact")]


def metrics(recs: list[Any]) -> dict[str, str]:
    """``define_metric``: name or glob -> step metric."""
    out = {}
    for m in of_type(recs, "metric"):
        out[m.name or m.glob_name] = m.step_metric
    return out
