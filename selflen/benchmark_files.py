"""Where benchmark data lives: the benchmark file table and the one data-directory rule.

Both ``selflen`` (decontamination against benchmark prompts) and ``evaluation`` (loading and scoring) read
these facts from here, so a benchmark file is described once.

Data directory (:func:`resolve_data_dir`), first match wins:

1. the ``explicit`` argument (a config value, ``--data-dir``), if given;
2. ``$SELFLEN_DATA_DIR``, if set and non-empty;
3. the copy shipped inside the package, ``selflen/benchmarks/`` (:data:`PACKAGE_DATA_DIR`: LonGen and
   LongBench-Write, unchanged, with their licences and a NOTICE), found from a clone and from an installed wheel
   alike, with no path, no variable and no network;
4. ``None`` only for an installation that lost that folder.

An explicit or environment path is returned as given (with ``~`` expanded) even if it does not exist, so that a
wrong setting is reported instead of silently replaced by the default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BENCHMARKS",
    "BENCHMARK_SPECS",
    "DATA_DIR_ENV",
    "PACKAGE_DATA_DIR",
    "BenchmarkSpec",
    "resolve_data_dir",
]

DATA_DIR_ENV = "SELFLEN_DATA_DIR"
PACKAGE_DATA_DIR = Path(__file__).resolve().parent / "benchmarks"
"""The benchmark files shipped as package data (``selflen/benchmarks/``, see its NOTICE)."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where a benchmark lives and how it is scored.

    ``relpath`` is the file under the data directory, ``prompt_field`` the JSON field holding the prompt,
    ``family`` the scoring family and ``counter`` the reference word counter (names from ``evaluation``),
    ``hub_id``/``url`` where the file can be fetched when online.
    """

    name: str
    relpath: str
    prompt_field: str
    family: str
    counter: str
    hub_id: str | None = None
    url: str | None = None


_LONGWRITER_RAW = "https://raw.githubusercontent.com/THUDM/LongWriter/main/evaluation/"
BENCHMARK_SPECS: dict[str, BenchmarkSpec] = {
    "longen": BenchmarkSpec("longen", "longen/LonGen.jsonl", "query", "longen", "longen", hub_id="quanshr/LonGen"),
    "longbench_write": BenchmarkSpec(
        "longbench_write", "longbench_write/longbench_write.jsonl", "prompt", "longbench_write", "longbench_write",
        url=_LONGWRITER_RAW + "longbench_write.jsonl",
    ),
    "longbench_write_en": BenchmarkSpec(
        "longbench_write_en", "longbench_write/longbench_write_en.jsonl", "prompt", "longbench_write",
        "longbench_write", url=_LONGWRITER_RAW + "longbench_write_en.jsonl",
    ),
    "longwrite_ruler": BenchmarkSpec(
        "longwrite_ruler", "longbench_write/longwrite_ruler.jsonl", "prompt", "longbench_write", "longbench_write",
        url=_LONGWRITER_RAW + "longwrite_ruler.jsonl",
    ),
}  # fmt: skip
"""The benchmark file table: name -> :class:`BenchmarkSpec`."""

BENCHMARKS: tuple[str, ...] = tuple(BENCHMARK_SPECS)
"""Every benchmark name, in table order."""


def resolve_data_dir(explicit: str | Path | None = None) -> Path | None:
    """The benchmark data directory: ``explicit``, else ``$SELFLEN_DATA_DIR``, else the packaged copy
    (:data:`PACKAGE_DATA_DIR`), else ``None`` (see the module docstring).

    >>> resolve_data_dir("my-data")
    PosixPath('my-data')
    """
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return PACKAGE_DATA_DIR if PACKAGE_DATA_DIR.is_dir() else None
