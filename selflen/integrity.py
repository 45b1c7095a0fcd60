"""Whether a run folder's files are the ones its stages wrote: digests recorded at finish, whole trained folders
(config and untruncated weights), records the engine failed (retried, never kept as drops), and the one fix that
recomputes a stage (``redo=[iter_<k>/<stage>]``). Every failure is one ``StoreError`` naming the file and that fix.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from selflen.addresses import FINAL
from selflen.errors import StoreError

__all__ = ["ENGINE_ERROR", "check_trained_folder", "declared_output", "engine_failed", "file_digest", "redo_fix",
           "safetensors_problem", "stage_label"]
DONE_NAME = "done.json"


ENGINE_ERROR = "engine_error"  # the drop reason of a try the engine failed (``records.Drop.ENGINE_ERROR``)


def engine_failed(record: dict[str, Any]) -> bool:
    """Whether a record was dropped while the engine failed some of its tries (transport errors, malformed answers,
    timeouts): not a content drop, so its stage is not done and the next run retries it.

    >>> engine_failed({"status": "dropped", "drops": {"engine_error": 1, "truncated": 2}})
    True
    >>> engine_failed({"status": "ok", "drops": {"engine_error": 1}}), engine_failed({"status": "dropped"})
    (False, False)
    """
    return record.get("status") != "ok" and bool((record.get("drops") or {}).get(ENGINE_ERROR))


def stage_label(folder: Path) -> str:
    """What ``redo=[...]`` names for a stage folder: ``iter_<k>/<stage>`` or ``final/<stage>`` (else its name).

    >>> stage_label(Path("/runs/a/iter_2/extend")), stage_label(Path("/x/final/finetune")), stage_label(Path("/x/y"))
    ('iter_2/extend', 'final/finetune', 'y')
    """
    parent = folder.parent.name
    point = parent == FINAL or (parent.startswith("iter_") and parent[5:].isdigit())
    return f"{parent}/{folder.name}" if point else folder.name


def redo_fix(folder: Path) -> str:
    """The fix that recomputes a stage whose files are broken (``redo`` clears a finished or unreadable stage)."""
    return f"re-run the same command with redo=[{stage_label(folder)}] to recompute that stage"


def file_digest(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of a file (``{"bytes": 0, "sha256": None}`` when it does not exist)."""
    if not path.exists():
        return {"bytes": 0, "sha256": None}
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def declared_output(manifest: Any) -> str | None:
    """The folder a finished finetune stage's ``done.json`` declares (``adapter`` or ``model``); None when it
    trained nothing (an old run's empty iteration) or the stage is not finished."""
    if not isinstance(manifest, dict) or (manifest.get("train") or {}).get("trained") is False:
        return None
    method = ((manifest.get("settings") or {}).get("finetune") or {}).get("method")
    return None if method is None else "adapter" if method == "lora" else "model"


def check_trained_folder(folder: Path, stage: Path) -> None:
    """A trained folder must hold its config and whole weights (an adapter: ``adapter_config.json`` and
    ``adapter_model.*``; a model: ``config.json`` and ``*.safetensors``/``*.bin``), else one ``StoreError``."""
    adapter = folder.name == "adapter"
    config = folder / ("adapter_config.json" if adapter else "config.json")
    weights = sorted(folder.glob("adapter_model.*" if adapter else "*.safetensors")) or sorted(
        [] if adapter else folder.glob("*.bin"))
    problem = None
    if not folder.is_dir():
        problem = "is missing"
    elif not config.exists():
        problem = f"has no {config.name}"
    elif not weights:
        problem = "has no weights"
    else:
        try:
            if not isinstance(json.loads(config.read_text(encoding="utf-8")), dict):
                problem = f"has a corrupt {config.name} (not a JSON object)"
        except (ValueError, UnicodeDecodeError, OSError) as err:
            problem = f"has a corrupt {config.name} ({str(err).splitlines()[0][:80]})"
        problem = problem or next(filter(None, (safetensors_problem(w) for w in weights)), None)
    if problem:
        raise StoreError(f"{stage_label(stage)} is finished, but its trained folder {folder} {problem} (deleted or "
                         f"damaged after training); {redo_fix(stage)}")


def safetensors_problem(path: Path) -> str | None:
    """Why a ``.safetensors`` file is not whole (a truncated file or a garbled header), None when it looks whole
    or is another format."""
    if path.suffix != ".safetensors":
        return None
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 0 or n > size - 8:
            return f"has a truncated weights file {path.name} ({size} bytes)"
        try:
            header = json.loads(f.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, UnicodeDecodeError, KeyError, TypeError, IndexError, AttributeError):
            return f"has a corrupt weights file {path.name} (unreadable header)"
    if size != 8 + n + end:  # a loader refuses both: data cut short, or bytes past what the header declares
        what = "truncated" if size < 8 + n + end else "damaged"
        return f"has a {what} weights file {path.name} ({size} bytes, its header declares {8 + n + end})"
    return None
