"""What the side-by-side stage benches share (``loop_guard.py``, ``extend_hold.py``): the header every result
carries and how it is written."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from selflen.config import TrainConfig
from selflen.store import RunLayout


def header(layout: RunLayout, cfg: TrainConfig) -> dict[str, Any]:
    """The run measured, the machine, the date and the engine: the first keys of a result."""
    return {
        "run_dir": str(layout.root),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "backend": cfg.backend.name,
    }


def write(result: dict[str, Any], out: Path) -> None:
    """``result`` as JSON at ``out``; everything but the per-side detail printed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "sides"}, indent=2))
    print("written:", out)
