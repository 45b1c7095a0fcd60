"""Do two run folders hold the same records? Every JSONL file of one run against the other's, ignoring timing
fields (a refactor's check: the same command before and after should write the same records, apart from the
stage hashes, which live in done.json, not in the records).

    python scripts/same_records.py /tmp/smoke_old /tmp/smoke_new
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TIMING = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "seconds", "wall_s"}


def rows(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def compare(old: Path, new: Path) -> list[str]:
    """The files that differ (or exist on one side only), as lines to print; empty when the runs agree."""
    files = {p.relative_to(old) for p in old.rglob("*.jsonl") if "wandb" not in p.parts}
    files |= {p.relative_to(new) for p in new.rglob("*.jsonl") if "wandb" not in p.parts}
    out = []
    for f in sorted(files):
        if not (old / f).exists() or not (new / f).exists():
            out.append(f"{f}: only in {'new' if (new / f).exists() else 'old'}")
        elif rows(old / f) != rows(new / f):
            out.append(f"{f}: records differ")
    return out


if __name__ == "__main__":
    differ = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    print("\n".join(differ) or "same records")
    raise SystemExit(1 if differ else 0)
