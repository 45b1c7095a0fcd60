"""Export a finished run to where researchers take it next: ``python -m selflen.export RUN --to DIR``.

Formats (``--format``, all of them when none is named):

- ``llamafactory``: each SFT set as ShareGPT JSON lines plus the ``dataset_info.json`` that ``llamafactory-cli
  train`` reads (``dataset_dir: DIR/llamafactory``, ``dataset: selflen_gen_all``);
- ``sharegpt`` and ``alpaca``: the same sets as JSON lines in those forms;
- ``hf``: a Hugging Face ``DatasetDict`` (``datasets.load_from_disk``), one split per set;
- ``merged``: the final adapter folded into a full safetensors model (tokenizer, chat template, generation config,
  model card) that transformers and ``vllm serve`` load as it is.

Every folder carries a card with the run's provenance (model, seeds, sampling, stage hashes, counts, licence).
``--push-to-hub REPO`` (opt-in) uploads the data (a dataset repository) and the merged model (a model repository)
under REPO. The sets and the formats are in ``selflen.export.data``, the merged model in ``selflen.export.model``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from selflen.store import RunLayout

DATA_FORMATS = ("llamafactory", "sharegpt", "alpaca", "hf")
FORMATS = (*DATA_FORMATS, "merged")
PUSHED_DATA = ("sharegpt", "llamafactory", "alpaca")  # the first exported one is uploaded: JSON lines + card


@dataclass(frozen=True)
class Exported:
    """One format written: where, how many bytes, how long it took."""

    format: str
    path: Path
    bytes: int
    seconds: float

    def line(self) -> str:
        return f"{self.format}: {self.path} ({human_size(self.bytes)}, {self.seconds:.1f} s)"


def human_size(n: int) -> str:
    """
    >>> human_size(512), human_size(2_500_000)
    ('512 B', '2.4 MiB')
    """
    size, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            break
        size /= 1024
    return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def export(run_dir: Path | str, out_dir: Path | str, formats: Sequence[str] = FORMATS,
           dtype: str | None = None) -> list[Exported]:
    """Write each of ``formats`` of the run at ``run_dir`` under ``out_dir/<format>``; returns what was written."""
    from selflen.export.data import ExportError, collect_sets, export_data, provenance
    from selflen.export.model import cached_base_folder, export_merged
    from selflen.store import read_json

    layout = RunLayout(Path(run_dir).expanduser().resolve())
    if not layout.config_path.is_file():
        raise ExportError(f"{layout.config_path} is missing: give the folder of a run that train.py wrote")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    done: list[Exported] = []
    data = [f for f in FORMATS if f in formats and f != "merged"]
    if data:
        sets, source = collect_sets(layout)
        prov = provenance(layout, sets, source, cached_base_folder(read_json(layout.config_path) or {}))
        for fmt in data:
            start = time.monotonic()
            folder = export_data(fmt, layout, out, sets, prov)
            done.append(Exported(fmt, folder, folder_bytes(folder), time.monotonic() - start))
    if "merged" in formats:
        start = time.monotonic()
        folder = export_merged(layout, out, dtype)
        done.append(Exported("merged", folder, folder_bytes(folder), time.monotonic() - start))
    return done


def push(exported: Sequence[Exported], repo_id: str, private: bool = True) -> list[str]:
    """Upload the exported data (a dataset repository) and the merged model (a model repository) to ``repo_id``
    on the hub ``HF_ENDPOINT`` names; returns the repository URLs."""
    from selflen.report.cards import push_to_hub

    by_format = {e.format: e.path for e in exported}
    urls = []
    data = next((by_format[f] for f in PUSHED_DATA if f in by_format), None)
    if data is not None:
        urls.append(push_to_hub(data, repo_id, online=True, repo_type="dataset", private=private))
    if "merged" in by_format:
        urls.append(push_to_hub(by_format["merged"], repo_id, online=True, repo_type="model", private=private))
    return urls
