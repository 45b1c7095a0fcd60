"""Benchmark loaders and deterministic slicing.

Every loaded row keeps the file's own fields and gains: ``id`` (``<benchmark>-<line:04d>``), ``line`` (1-based
line in the reference file), ``benchmark``, ``language``, ``range`` (length bucket), ``flagged`` and
``flag_reason``. LongBench-Write rows get ``language`` from their prompt (any character of
``selflen.text.scripts.REFERENCE_IDEOGRAPHS`` → ``zh``) and a bucket from their required length, using LongWriter's
reporting intervals. The benchmark file table and the data directory rule live in :mod:`selflen.benchmark_files`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from selflen.benchmark_files import BENCHMARK_SPECS, PACKAGE_DATA_DIR, BenchmarkSpec, resolve_data_dir
from selflen.jsonl import read_jsonl
from selflen.text.scripts import REFERENCE_IDEOGRAPHS, char_class

__all__ = [
    "BENCHMARKS",
    "LONGEN_FLAGGED",
    "BenchmarkSpec",
    "annotate",
    "benchmark_file",
    "default_data_dir",
    "ensure_benchmarks",
    "get_spec",
    "lbw_bucket",
    "load_benchmark",
    "longen_flag",
    "prompt_language",
    "slice_rows",
]

log = logging.getLogger(__name__)
default_data_dir = resolve_data_dir  # the one data-directory rule: explicit > $SELFLEN_DATA_DIR > repo default

BENCHMARKS: dict[str, BenchmarkSpec] = BENCHMARK_SPECS
"""The benchmark table (name -> spec); defined once in :mod:`selflen.benchmark_files`."""

LONGEN_FLAGGED: dict[int, str] = {
    183: "query is a bare story fragment with no instruction; constraint says less than 5000 words",
    195: "query asks for about 150 words; constraint says more than 4000 words",
    206: "query asks for a concise email; constraint says around 7000 words",
    217: "query is a Verilog module spec with no length; constraint says 6000-8000 words",
}
"""LonGen's inconsistent English rows (1-based lines): kept for comparability, flagged in every report."""

_LONGEN_FLAGGED_QUERIES = {
    "02ddfbd50638362c": 183,
    "ab02b03cfd08a181": 195,
    "6bfe8f9925158f7e": 206,
    "a0f832fcc774d663": 217,
}  # sha256(query)[:16] -> line, so rows that lost their line number are still recognised


def longen_flag(row: dict[str, Any]) -> str | None:
    """Why a LonGen row is flagged (``None`` if it is not): by its ``line`` when it came from our loader,
    else by a hash of its ``query``.

    >>> longen_flag({"line": 195, "benchmark": "longen"})[:30]
    'query asks for about 150 words'
    >>> longen_flag({"query": "Write a poem."}) is None
    True
    """
    if row.get("benchmark") == "longen" and isinstance(row.get("line"), int):
        return LONGEN_FLAGGED.get(row["line"])
    digest = hashlib.sha256(str(row.get("query", "")).encode("utf-8")).hexdigest()[:16]
    line = _LONGEN_FLAGGED_QUERIES.get(digest)
    return LONGEN_FLAGGED[line] if line else None


_CJK = re.compile(char_class(REFERENCE_IDEOGRAPHS))
_LBW_BUCKETS = ((500, "0-500"), (2000, "500-2k"), (4000, "2k-4k"), (20001, "4k-20k"))


def get_spec(name: str) -> BenchmarkSpec:
    """The spec of a benchmark by name; unknown names raise ``KeyError`` listing the choices."""
    if name not in BENCHMARKS:
        raise KeyError(f"Unknown benchmark {name!r}. Available: {', '.join(BENCHMARKS)}.")
    return BENCHMARKS[name]


def benchmark_file(name: str, data_dir: str | Path | None = None) -> Path:
    """Path of a benchmark's local JSONL file (which may not exist) under
    :func:`selflen.benchmark_files.resolve_data_dir`; with no data directory anywhere, the path under the packaged
    copy's place."""
    return (resolve_data_dir(data_dir) or PACKAGE_DATA_DIR) / get_spec(name).relpath


def lbw_bucket(length: float) -> str:
    """LongWriter's reporting interval for a required length.

    >>> lbw_bucket(100), lbw_bucket(500), lbw_bucket(3999), lbw_bucket(20000), lbw_bucket(30000)
    ('0-500', '500-2k', '2k-4k', '4k-20k', '20k+')
    """
    for upper, name in _LBW_BUCKETS:
        if length < upper:
            return name
    return "20k+"


def prompt_language(prompt: str) -> str:
    """``zh`` if the prompt holds any CJK ideograph, else ``en`` (how LongBench-Write rows get a language).

    >>> prompt_language("写一首诗"), prompt_language("Write a poem")
    ('zh', 'en')
    """
    return "zh" if _CJK.search(prompt) else "en"


def annotate(name: str, raw_rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``id``, ``line``, ``benchmark``, ``language``, ``range``, ``flagged`` and ``flag_reason`` to raw rows.

    >>> annotate("longbench_write", [{"prompt": "写一首诗", "type": "x", "length": 800}])[0]["range"]
    '500-2k'
    """
    spec = get_spec(name)
    out = []
    for line, raw in enumerate(raw_rows, start=1):
        row = {k: v for k, v in raw.items() if not k.startswith("_")}
        row.update(id=f"{name}-{line:04d}", line=line, benchmark=name)
        if spec.family == "longbench_write":
            row.setdefault("language", prompt_language(str(row.get("prompt", ""))))
            row.setdefault("range", lbw_bucket(float(row["length"])))
        reason = longen_flag(row) if name == "longen" else None
        row["flagged"], row["flag_reason"] = reason is not None, reason
        out.append(row)
    return out


def _missing_message(name: str, path: Path) -> str:
    spec = get_spec(name)
    source = spec.hub_id or spec.url
    return (
        f"Benchmark {name!r}: file {path} not found. Put {Path(spec.relpath).name} there, set SELFLEN_DATA_DIR to a "
        f"folder that holds {spec.relpath}, pass data_dir=/--data-dir, or load it from {source} with online=True "
        "(--online) where the hub answers (without HF_HUB_OFFLINE=1)."
    )


def _load_online(spec: BenchmarkSpec) -> list[dict[str, Any]]:
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise RuntimeError(
            f"online=True for {spec.name!r} but HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is 1; run without those variables "
            "to allow downloads."
        )
    import datasets

    if spec.hub_id:
        return [dict(r) for r in datasets.load_dataset(spec.hub_id, split="train")]
    return [dict(r) for r in datasets.load_dataset("json", data_files=spec.url, split="train")]


def load_benchmark(name: str, data_dir: str | Path | None = None, online: bool = False) -> list[dict[str, Any]]:
    """Load and annotate a benchmark from ``data_dir`` (resolved by :func:`selflen.benchmark_files.resolve_data_dir`)
    or, with ``online``, from the hub (LonGen: ``quanshr/LonGen``) or LongWriter's repository (LongBench-Write
    files)."""
    spec = get_spec(name)
    if online:
        return annotate(name, _load_online(spec))
    path = benchmark_file(name, data_dir)
    if not path.is_file():
        raise FileNotFoundError(_missing_message(name, path))
    rows = read_jsonl(path, strict=True)
    return annotate(name, rows)


DECONTAMINATION_BENCHMARKS = ("longen", "longbench_write")
"""The files decontamination needs (the benchmarks whose prompts the training instructions must not overlap)."""


def ensure_benchmarks(
    names: Sequence[str], data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
    online: bool = False,
) -> Path:
    """The data directory that holds every benchmark file in ``names``.

    The configured folder (:func:`selflen.benchmark_files.resolve_data_dir`) if it has them all; else
    ``<cache_dir>/benchmarks`` if an earlier online run fetched them there; else, ``online``, each missing file is
    fetched once from its public source (LonGen from the hub, LongBench-Write from LongWriter's repository) into
    ``<cache_dir>/benchmarks``.
    Offline with a file missing it raises ``FileNotFoundError`` with one line saying how to get them.
    """
    configured = resolve_data_dir(data_dir)
    cache = Path(cache_dir).expanduser() / "benchmarks" if cache_dir else None
    for folder in (configured, cache):
        if folder is not None and all((folder / get_spec(n).relpath).is_file() for n in names):
            return folder
    if online and cache is not None:
        for n in names:
            target = cache / get_spec(n).relpath
            if not target.is_file():
                rows = _load_online(get_spec(n))
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(".part")
                tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
                tmp.rename(target)
                log.info("benchmark %s: %d rows fetched into %s", n, len(rows), target)
        return cache
    where = configured or PACKAGE_DATA_DIR
    missing = [get_spec(n).relpath for n in names if not (where / get_spec(n).relpath).is_file()]
    fix = (f"point paths.data_dir / SELFLEN_DATA_DIR at a folder that holds them, or unset both to use the copy "
           f"shipped with selflen ({PACKAGE_DATA_DIR})" if where != PACKAGE_DATA_DIR else
           "the copy shipped with selflen is incomplete: reinstall selflen (pip install --force-reinstall selflen)")
    raise FileNotFoundError(f"benchmark files missing under {where}: {', '.join(missing)} -- {fix}")


def _as_set(values: str | Sequence[str] | None) -> set[str] | None:
    if values is None:
        return None
    return {values} if isinstance(values, str) else set(values)


def slice_rows(
    rows: Sequence[dict[str, Any]],
    language: str | Sequence[str] | None = None,
    bucket: str | Sequence[str] | None = None,
    type_: str | Sequence[str] | None = None,
    n_per_cell: int | None = None,
    seed: int | None = 0,
    include_flagged: bool = True,
) -> list[dict[str, Any]]:
    """Filter rows by language / bucket (``range``) / type, then keep at most ``n_per_cell`` per
    (language, bucket, type) cell. With ``seed=None`` a cell keeps its first rows; otherwise a seeded sample.
    The result is always in file order, so the same arguments give the same slice.

    >>> rows = [{"language": "en", "range": "2-4k", "type": t, "id": i} for i, t in enumerate("aabbb")]
    >>> [r["id"] for r in slice_rows(rows, n_per_cell=1, seed=None)]
    [0, 2]
    >>> [r["id"] for r in slice_rows(rows, type_="b")]
    [2, 3, 4]
    """
    wanted = {"language": _as_set(language), "range": _as_set(bucket), "type": _as_set(type_)}
    kept = [
        (i, r)
        for i, r in enumerate(rows)
        if all(allowed is None or str(r.get(key)) in allowed for key, allowed in wanted.items())
        and (include_flagged or not r.get("flagged"))
    ]
    if n_per_cell is None:
        return [r for _, r in kept]
    cells: dict[tuple[str, str, str], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for i, r in kept:
        cells[(str(r.get("language")), str(r.get("range")), str(r.get("type")))].append((i, r))
    chosen: list[tuple[int, dict[str, Any]]] = []
    for cell, members in cells.items():
        if seed is None or len(members) <= n_per_cell:
            chosen.extend(members[:n_per_cell])
        else:
            chosen.extend(random.Random(f"{seed}:{'/'.join(cell)}").sample(members, n_per_cell))
    return [r for _, r in sorted(chosen, key=lambda pair: pair[0])]
