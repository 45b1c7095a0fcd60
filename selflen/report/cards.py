"""Cards and provenance: a ``README.md`` with Hugging Face front matter for every data folder and adapter folder.

A card answers, from the folder alone, where its contents came from: the seed set (file hash), the model (id,
revision and a hash of its ``config.json``), the sampling parameters, what the filters dropped, the counts, and
the licences involved. The front matter is what the Hub reads (``license``, ``base_model``, ``library_name``,
``tags``, ``configs``); the body is for people. ``push_to_hub`` uploads a folder and refuses clearly offline.

    card = write_data_card(stage_dir, title="selflen iteration 1 SFT data", model=describe_model(name, folder),
                           seeds=describe_seeds("en"), sampling={...}, filters={...}, counts={...}, drops={...},
                           licence_note=default_licence_note(name))
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from selflen.store import LENGTH_FOLLOWER, read_jsonl

log = logging.getLogger(__name__)

CARD_NAME = "README.md"
PROJECT = "selflen"
PROJECT_LICENCE = "apache-2.0"
PAPER = "arXiv:2410.23933"
# Licence identifiers of the model families this project configures (Hub ids, longest prefix wins).
MODEL_LICENCES: dict[str, str] = {
    "meta-llama/Meta-Llama-3.1": "llama3.1",
    "meta-llama/Llama-3.1": "llama3.1",
    "meta-llama/Meta-Llama-3": "llama3",
    "Qwen/Qwen2": "apache-2.0",
    "HuggingFaceTB/SmolLM2": "apache-2.0",
    "selflen/tiny": PROJECT_LICENCE,
}
ROLE_TEXT = {
    "gen": "the **Generator**: answers an instruction directly, trained on the longest accepted extensions",
    "ext": "the **Extender**: rewrites an answer (with lines removed) into a longer one",
    LENGTH_FOLLOWER: "the **length-following model**: answers an instruction that carries an explicit length "
                     "constraint",
}
PIPE = "\\|"  # a literal pipe inside a Markdown table cell
SKIPPED_FILES = {"records.jsonl"}  # stage bookkeeping, not training data
UPLOAD_IGNORE = ["*.lock", "*.tmp", "config_hash", "run.lock", "run.lock.*", "*.checkpoints/*", "**/*.checkpoints/**"]


class HubError(RuntimeError):
    """An upload cannot happen as asked; the message says what to change."""


# -- provenance helpers ----------------------------------------------------------------------------------------
def file_sha256(path: Path | str) -> str | None:
    """SHA-256 of a file's bytes, or ``None`` when the file does not exist.

    >>> file_sha256("/nonexistent/config.json") is None
    True
    """
    p = Path(path)
    if not p.is_file():
        return None
    digest = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_model(name: str, folder: Path | str | None = None, *, source: str | None = None,
                   revision: str | None = None) -> dict[str, Any]:
    """The model's identity for a card: its id, where it came from, and a hash of its ``config.json``.

    The hash pins the architecture actually used even when ``name`` is a stand-in (``debug=smoke`` keeps the
    configured id but loads a tiny random model; the hash tells them apart).
    """
    info: dict[str, Any] = {"name": name, "source": source, "revision": revision}
    if folder is not None:
        info["folder"] = str(folder)
        info["config_sha256"] = file_sha256(Path(folder) / "config.json")
        try:  # an embedded model's provenance: the GGUF's pinned hash, the packages its bytes came from
            conversion = json.loads((Path(folder) / "selflen_conversion.json").read_text(encoding="utf-8"))
            info.update({k: conversion[k] for k in ("gguf_sha256", "packages", "provenance") if k in conversion})
        except (OSError, ValueError):
            pass
    return {k: v for k, v in info.items() if v is not None}


def describe_seeds(language: str, path: Path | str | None = None) -> dict[str, Any]:
    """The seed set: language, number of prompts, categories and a hash of the seed file."""
    from selflen import seeds as seeds_mod

    file = Path(path) if path is not None else Path(seeds_mod.__file__).resolve().parent / f"{language}.jsonl"
    loaded = seeds_mod.load_seeds(language, file)
    return {
        "language": language,
        "count": len(loaded),
        "categories": sorted({s.category for s in loaded}),
        "file": f"selflen/seeds/{file.name}" if path is None else str(file),
        "sha256": file_sha256(file),
    }


def licence_for(model_name: str) -> str:
    """Hub licence identifier for data or weights derived from ``model_name`` (``other`` when unknown).

    >>> licence_for("meta-llama/Meta-Llama-3.1-8B-Instruct"), licence_for("Qwen/Qwen2-7B-Instruct")
    ('llama3.1', 'apache-2.0')
    >>> licence_for("someone/unknown-model")
    'other'
    """
    matches = [prefix for prefix in MODEL_LICENCES if model_name.startswith(prefix)]
    return MODEL_LICENCES[max(matches, key=len)] if matches else "other"


def default_licence_note(model_name: str) -> str:
    """The standard licence paragraph: seeds are the project's own, benchmarks only decontaminate."""
    licence = licence_for(model_name)
    model_part = (f"The generated text and weights derive from `{model_name}` and are subject to its licence "
                  f"(`{licence}`)." if licence != "other" else
                  f"The generated text and weights derive from `{model_name}`; check that model's licence.")
    return (
        f"The seed prompts are this project's own ({PROJECT}, Apache-2.0). {model_part} "
        "The LonGen and LongBench-Write benchmarks (Apache-2.0) were used only to decontaminate the "
        "self-instructed prompts (overlapping prompts were dropped); no benchmark text is part of this data."
    )


# -- rendering -------------------------------------------------------------------------------------------------
def _front_matter(meta: Mapping[str, Any]) -> str:
    body = yaml.safe_dump(_plain(dict(meta)), sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{body}---\n"


def _plain(obj: Any) -> Any:
    """JSON round trip: tuples, paths and numpy-like scalars become plain YAML-safe values."""
    return json.loads(json.dumps(obj, default=str))


def _kv_table(values: Mapping[str, Any], key: str = "key", value: str = "value") -> str:
    if not values:
        return "_none_\n"
    lines = [f"| {key} | {value} |", "| --- | --- |"]
    for k, v in values.items():
        shown = json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, dict | list | tuple) else str(v)
        lines.append(f"| {k} | {shown.replace('|', PIPE)} |")
    return "\n".join(lines) + "\n"


def _model_section(model: Mapping[str, Any], heading: str = "Model") -> str:
    rows = {"id": model.get("name"), "source": model.get("source"), "revision": model.get("revision"),
            "config.json sha256": model.get("config_sha256"), "folder": model.get("folder")}
    return f"## {heading}\n\n" + _kv_table({k: v for k, v in rows.items() if v is not None}) + "\n"


def _size_category(n: int) -> str:
    """Hub ``size_categories`` bucket.

    >>> _size_category(12), _size_category(12_000)
    ('n<1K', '10K<n<100K')
    """
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "n>1M"


def _count_rows(path: Path) -> int:
    return len(read_jsonl(path))


def data_files_in(folder: Path) -> dict[str, str]:
    """Config name -> JSON-lines file of a data folder (``gen_sft.jsonl`` -> ``gen``), bookkeeping excluded."""
    out = {}
    for p in sorted(Path(folder).glob("*.jsonl")):
        if p.name not in SKIPPED_FILES:
            out[p.stem.removesuffix("_sft")] = p.name
    return out


def _details(extra: Mapping[str, Any]) -> str:
    return "\n## Details\n\n```json\n" + json.dumps(_plain(dict(extra)), indent=2, ensure_ascii=False) + "\n```\n"


def _write(folder: Path, text: str) -> Path:
    path = Path(folder) / CARD_NAME
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


# -- cards -----------------------------------------------------------------------------------------------------
def write_data_card(folder: Path, *, title: str, model: Mapping[str, Any], seeds: Mapping[str, Any],
                    sampling: Mapping[str, Any], filters: Mapping[str, Any], counts: Mapping[str, Any],
                    drops: Mapping[str, int], licence_note: str, extra: Mapping[str, Any] | None = None,
                    license: str | None = None, data_files: Mapping[str, str] | None = None) -> Path:
    """Write ``folder/README.md`` for a data folder; returns its path.

    ``model`` comes from ``describe_model``, ``seeds`` from ``describe_seeds``. ``data_files`` maps a config name
    to a file in the folder (default: every ``*.jsonl`` except ``records.jsonl``); they become the card's
    ``configs`` so ``load_dataset(folder)`` finds them, and each loads with ``load_dataset("json", ...)``.
    """
    folder = Path(folder)
    files = dict(data_files) if data_files is not None else data_files_in(folder)
    rows = {name: _count_rows(folder / f) for name, f in files.items() if (folder / f).is_file()}
    language = seeds.get("language")
    meta: dict[str, Any] = {
        "license": license or licence_for(str(model.get("name", ""))),
        "language": [language] if language else None,
        "pretty_name": title,
        "task_categories": ["text-generation"],
        "tags": [PROJECT, "self-lengthen", "synthetic", "long-form-generation"],
        "size_categories": [_size_category(max(rows.values(), default=0))],
        "configs": [{"config_name": name, "data_files": [{"split": "train", "path": f}]} for name, f in files.items()],
    }
    meta = {k: v for k, v in meta.items() if v is not None}
    parts = [
        _front_matter(meta),
        f"# {title}\n\n",
        f"Synthetic chat-format training data produced by `{PROJECT}`, a re-implementation of Self-Lengthen "
        f"({PAPER}), with `{model.get('name')}` as Generator and Extender. Each row is "
        "`{\"id\", \"messages\": [...]}` with the assistant answer last.\n\n",
        "## Files\n\n",
        _kv_table({f: rows.get(name, 0) for name, f in files.items()}, "file", "rows"),
        "\n```python\nfrom datasets import load_dataset\n\n",
        *(f'{name} = load_dataset("json", data_files="{f}", split="train")\n' for name, f in files.items()),
        "```\n\n",
        _model_section(model),
        "## Seed set\n\n", _kv_table(dict(seeds)), "\n",
        "## Sampling\n\n", _kv_table(dict(sampling), "parameter"), "\n",
        "## Filters\n\n", _kv_table(dict(filters), "rule"), "\n",
        "### Dropped\n\n", _kv_table(dict(drops), "reason", "count"), "\n",
        "## Counts\n\n", _kv_table(dict(counts), "item", "count"), "\n",
        "## Licence\n\n", licence_note.strip(), "\n",
    ]
    if extra:
        parts.append(_details(extra))
    return _write(folder, "".join(parts))


def write_adapter_card(folder: Path, *, base_model: Mapping[str, Any], role: str, iteration: int | str,
                       lineage: str, train_stats: Mapping[str, Any], data_path: Path | str, method: str = "lora",
                       settings: Mapping[str, Any] | None = None, init_adapter: Path | str | None = None,
                       licence_note: str | None = None, license: str | None = None,
                       extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``folder/README.md`` for a trained adapter (``method=lora``) or full model folder; returns its path.

    It replaces the empty template PEFT writes on ``save_pretrained``. ``base_model`` comes from
    ``describe_model``; ``role`` is ``gen``, ``ext`` or ``final``; ``settings`` are the training settings.
    """
    folder = Path(folder)
    name = str(base_model.get("name", "unknown"))
    is_lora = method == "lora"
    meta = {
        "base_model": name,
        "library_name": "peft" if is_lora else "transformers",
        "license": license or licence_for(name),
        "pipeline_tag": "text-generation",
        "tags": [PROJECT, "self-lengthen", "lora" if is_lora else "full-finetune", f"role-{role}",
                 f"iteration-{iteration}", *([f"base_model:adapter:{name}"] if is_lora else [])],
    }
    if lineage == "continue" and init_adapter:
        lineage_text = f"continued from the adapter `{init_adapter}` (cumulative lineage, the reference's)"
    elif lineage == "continue":
        lineage_text = "started on the base model (first iteration of a continuing lineage)"
    else:
        lineage_text = "trained fresh on the base model (lineage `fresh`: a new adapter each iteration)"
    load = (f"```python\nfrom peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n\n"
            f'base = AutoModelForCausalLM.from_pretrained("{name}")\n'
            f'model = PeftModel.from_pretrained(base, "{folder}")\n```\n' if is_lora else
            f'```python\nfrom transformers import AutoModelForCausalLM\n\n'
            f'model = AutoModelForCausalLM.from_pretrained("{folder}")\n```\n')
    parts = [
        _front_matter(meta),
        f"# {PROJECT} {role} {'adapter' if is_lora else 'model'}, iteration {iteration}\n\n",
        f"{'A LoRA adapter' if is_lora else 'A fully fine-tuned model'} for {ROLE_TEXT.get(role, role)}, "
        f"from the Self-Lengthen loop ({PAPER}) in `{PROJECT}`.\n\n",
        f"- iteration: {iteration}\n- lineage: {lineage_text}\n- training data: `{data_path}`\n\n",
        "## Load\n\n", load, "\n",
        _model_section(base_model, "Base model"),
        "## Training\n\n", _kv_table(dict(train_stats), "statistic"), "\n",
    ]
    if settings:
        parts += ["### Settings\n\n", _kv_table(dict(settings), "setting"), "\n"]
    parts += ["## Licence\n\n", (licence_note or default_licence_note(name)).strip(), "\n"]
    if extra:
        parts.append(_details(extra))
    return _write(folder, "".join(parts))


def read_front_matter(path: Path | str) -> dict[str, Any]:
    """The YAML front matter of a card (``{}`` when it has none)."""
    text = Path(path).read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---\n", 4)
    if end < 0:
        return {}
    return yaml.safe_load(text[4:end]) or {}


# -- upload ----------------------------------------------------------------------------------------------------
def push_to_hub(folder: Path | str, repo_id: str, online: bool, *, repo_type: str | None = None,
                private: bool = True, token: str | None = None,
                ignore_patterns: Sequence[str] = tuple(UPLOAD_IGNORE)) -> str:
    """Upload ``folder`` (card included) to ``repo_id``; returns the repo URL. Refuses offline with ``HubError``.

    ``repo_type`` defaults to ``model`` for adapter/model folders and ``dataset`` otherwise. Repos are created
    private unless ``private=False``.
    """
    folder = Path(folder)
    if not online:
        raise HubError(f"push_to_hub({repo_id!r}) refused: online use is off (online=false); ask for the upload "
                       "where the hub answers, or upload the folder later with `huggingface-cli upload`")
    if os.environ.get("HF_HUB_OFFLINE", "0") in ("1", "true", "yes"):
        raise HubError(f"push_to_hub({repo_id!r}) refused: HF_HUB_OFFLINE is set in this process; start it "
                       "without HF_HUB_OFFLINE=1 to upload")
    if not (folder / CARD_NAME).is_file():
        raise HubError(f"{folder} has no {CARD_NAME}; write its card first (write_data_card / write_adapter_card)")
    if repo_type is None:
        is_model = any((folder / f).exists() for f in ("adapter_config.json", "config.json"))
        repo_type = "model" if is_model else "dataset"
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type,
                      ignore_patterns=list(ignore_patterns), commit_message=f"{PROJECT}: upload {folder.name}")
    log.info("uploaded %s to %s", folder, url)
    return str(url)


def write_run_data_card(folder: Path, *, point: int | str, model: Mapping[str, Any], language: str,
                        model_name: str, settings: Mapping[str, Mapping[str, Any]],
                        manifests: Mapping[str, Mapping[str, Any]], extra: Mapping[str, Any]) -> Path:
    """The card of a run's data folder (an iteration's SFT data or the length-control data): the settings of the
    stages that made it (their frozen settings, so the card cannot drift from what ran) and their counts."""
    first = next(iter(settings.values()), {})
    return write_data_card(
        folder,
        title=f"selflen {'length-control' if point == 'final' else f'iteration {point}'} SFT data ({model_name})",
        model=model,
        seeds=describe_seeds(language),
        sampling=first.get("sampling") or {},
        filters=dict(settings),
        counts={f"{n}/{c}": v for n, m in manifests.items() for c, v in (m.get("counts") or {}).items()},
        drops={f"{n}/{c}": v for n, m in manifests.items() for c, v in (m.get("drops") or {}).items()},
        licence_note=default_licence_note(model_name),
        extra={"iteration": point, **extra},
    )
