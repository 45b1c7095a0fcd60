"""Hooks for selflen's lm-eval tasks: the long-output tasks' data loader and metric function, the mini-MC loader."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
try:  # lm_eval loads this file by path; make the repository importable when selflen is not installed
    import evaluation  # noqa: F401
except ImportError:  # pragma: no cover - depends on how lm_eval was launched
    sys.path.insert(0, str(_HERE.parents[1]))

from evaluation import scorers  # noqa: E402
from evaluation.benchmarks import benchmark_file  # noqa: E402
from evaluation.counters import count_words_longbench_write, count_words_longen  # noqa: E402
from selflen.jsonl import read_jsonl  # noqa: E402


def cached_benchmark_file(name: str) -> Path | None:
    """The copy ``evaluation.benchmarks.ensure_benchmarks`` fetched into ``$SELFLEN_CACHE`` (else
    ``~/.cache/selflen``)``/benchmarks``, if there is one."""
    from selflen.benchmark_files import BENCHMARK_SPECS

    cache = Path(os.environ.get("SELFLEN_CACHE") or "~/.cache/selflen").expanduser()
    path = cache / "benchmarks" / BENCHMARK_SPECS[name].relpath
    return path if path.is_file() else None


def load_benchmark_docs(selflen_benchmark: str = "", data_files: Any = None, **kwargs: Any) -> Any:
    """A selflen benchmark as a ``DatasetDict`` with one ``test`` split (lm-eval's ``custom_dataset`` hook).

    The file is the task's ``dataset_kwargs.data_files`` when it sets one (relative paths are resolved against the
    working directory, as by ``datasets``); otherwise the benchmark's file
    (``selflen.benchmark_files.BENCHMARK_SPECS``) in the data directory of
    ``selflen.benchmark_files.resolve_data_dir``: ``$SELFLEN_DATA_DIR``, else the copy shipped in
    ``selflen/benchmarks``, whatever the working directory; else the copy an online run fetched into the selflen
    cache. Other keyword arguments (lm-eval passes the task metadata and the model arguments) are ignored.
    """
    import datasets

    if data_files is None:
        if not selflen_benchmark:
            raise ValueError("set dataset_kwargs.selflen_benchmark (or dataset_kwargs.data_files) in the task")
        path = benchmark_file(selflen_benchmark)
        if not path.is_file():  # fetched once by `python train.py online=true` into the selflen cache
            path = cached_benchmark_file(selflen_benchmark) or path
        if not path.is_file():
            raise FileNotFoundError(
                f"{selflen_benchmark}: {path} not found; set SELFLEN_DATA_DIR to the folder that holds "
                f"{path.parent.name}/{path.name}, or set dataset_kwargs.data_files in a task of your own"
            )
        data_files = {"test": str(path)}
    return datasets.load_dataset("json", data_files=data_files)


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Length metrics of one generation: LonGen rows (``constraint``) get LonGen's score in [0, 1], LongBench-Write
    rows (``length``) get S_l in [0, 100]; ``hit`` is 1.0 inside the target window (LonGen's window, or the
    required length ±10 % for LongBench-Write)."""
    text = results[0] if results else ""
    if "constraint" in doc:
        words = count_words_longen(text)
        a, b = scorers.longen_window(str(doc["type"]), str(doc["constraint"]))
        score = scorers.longen_score(words, a, b)
    else:
        words = count_words_longbench_write(text)
        required = float(doc["length"])
        score = scorers.lbw_length_score(required, words)
        a, b = scorers.lifebench_window(required, "equal", 0.1)
    return {"length_score": score, "words": float(words), "hit": float(a <= words <= b)}


def load_mini_mc(**kwargs: Any) -> Any:
    """The mini multiple-choice set next to this file, as a ``DatasetDict`` with one ``test`` split."""
    import datasets

    rows = [{k: v for k, v in row.items() if k != "_line"} for row in read_jsonl(_HERE / "mini_mc.jsonl", strict=True)]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
