"""A run's SFT data in the forms the next tools read: ShareGPT and Alpaca JSON lines, a LLaMA-Factory data folder
(ShareGPT files plus the ``dataset_info.json`` that ``llamafactory-cli train`` reads) and a Hugging Face dataset
(``datasets.load_from_disk``). Each folder carries a dataset card with the run's provenance.

The sets, by name: ``gen_iter<k>`` and ``ext_iter<k>`` (each iteration's Generator and Extender pairs),
``gen_all`` and ``ext_all`` (every iteration's, the cumulative sets) and ``length_control`` (the final
length-following set). Rows keep the run's stable ``id``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from selflen.addresses import FINAL
from selflen.report import cards
from selflen.stages.length_control import LC_FILE
from selflen.stages.sft_data import EXT_FILE, GEN_FILE
from selflen.store import LENGTH_FOLLOWER, RunLayout, read_json, read_jsonl, write_jsonl

ROLE_OF_SET = {"gen": "gen", "ext": "ext", "length_control": LENGTH_FOLLOWER}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "system_tag": "system"}
SHAREGPT_ROLES = {"user": "human", "assistant": "gpt"}


class ExportError(ValueError):
    """The run cannot be exported as asked; the message says why."""


def collect_sets(layout: RunLayout) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """Every SFT set of the run (name -> rows of ``{"id", "messages"}``) and the stage each came from."""
    sets: dict[str, list[dict[str, Any]]] = {}
    source: dict[str, str] = {}
    for k in layout.iterations():
        stage = layout.stage(k, "sft_data")
        if not (stage / "done.json").is_file():
            continue
        for role, name in (("gen", GEN_FILE), ("ext", EXT_FILE)):
            sets[f"{role}_iter{k}"] = read_jsonl(stage / name)
            source[f"{role}_iter{k}"] = layout.rel(stage / name)
    for role in ("gen", "ext"):
        parts = [n for n in sets if n.startswith(f"{role}_iter")]
        if parts:
            sets[f"{role}_all"] = [row for n in parts for row in sets[n]]
            source[f"{role}_all"] = " + ".join(source[n] for n in parts)
    lc = layout.stage(FINAL, "length_control")
    if (lc / "done.json").is_file() and (lc / LC_FILE).is_file():
        sets["length_control"] = read_jsonl(lc / LC_FILE)
        source["length_control"] = layout.rel(lc / LC_FILE)
    if not sets:
        raise ExportError(f"{layout.root} holds no finished sft_data or length_control stage: nothing to export")
    return sets, source


def split_messages(messages: list[dict[str, str]]) -> tuple[str | None, list[dict[str, str]]]:
    """The system prompt (or None) and the turns after it.

    >>> split_messages([{"role": "system", "content": "S"}, {"role": "user", "content": "q"}])
    ('S', [{'role': 'user', 'content': 'q'}])
    """
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[1:]
    return None, list(messages)


def to_sharegpt(row: Mapping[str, Any]) -> dict[str, Any]:
    """A chat row as ShareGPT: ``conversations`` of ``from``/``value`` (human, gpt), the system prompt apart.

    >>> to_sharegpt({"id": "a", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}]})
    {'id': 'a', 'conversations': [{'from': 'human', 'value': 'q'}, {'from': 'gpt', 'value': 'r'}]}
    """
    system, turns = split_messages(row["messages"])
    conversations = [{"from": SHAREGPT_ROLES[m["role"]], "value": m["content"]} for m in turns]
    out: dict[str, Any] = {"id": row["id"], "conversations": conversations}
    if system is not None:
        out["system"] = system
    return out


def to_alpaca(row: Mapping[str, Any]) -> dict[str, Any]:
    """A chat row as Alpaca: the last user turn is ``instruction``, the answer ``output``, earlier turns ``history``.

    >>> to_alpaca({"id": "a", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}]})
    {'id': 'a', 'instruction': 'q', 'input': '', 'output': 'r', 'history': []}
    """
    system, turns = split_messages(row["messages"])
    pairs = [(turns[i]["content"], turns[i + 1]["content"]) for i in range(0, len(turns) - 1, 2)]
    out: dict[str, Any] = {"id": row["id"], "instruction": pairs[-1][0], "input": "", "output": pairs[-1][1],
                           "history": [list(p) for p in pairs[:-1]]}
    if system is not None:
        out["system"] = system
    return out


def llamafactory_info(files: Mapping[str, str], with_system: set[str]) -> dict[str, Any]:
    """``dataset_info.json`` for ShareGPT files (set name -> file name), in LLaMA-Factory's documented schema:
    ``file_name``, ``formatting: sharegpt``, ``columns`` (``messages``, ``system`` when the set has one) and the
    ``tags`` naming the role and content keys and the user, assistant and system roles."""
    info = {}
    for name, file in files.items():
        columns = {"messages": "conversations", **({"system": "system"} if name in with_system else {})}
        info[f"selflen_{name}"] = {"file_name": file, "formatting": "sharegpt", "columns": columns,
                                   "tags": dict(SHAREGPT_TAGS)}
    return info


def write_rows(folder: Path, sets: Mapping[str, list[dict[str, Any]]], convert) -> dict[str, str]:
    """Each set as ``<folder>/<name>.jsonl`` in the form ``convert`` gives; returns set name -> file name."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, rows in sets.items():
        write_jsonl(folder / f"{name}.jsonl", (convert(r) for r in rows))
        files[name] = f"{name}.jsonl"
    return files


def write_hf(folder: Path, sets: Mapping[str, list[dict[str, Any]]]) -> None:
    """A ``DatasetDict`` with one split per set (``id``, ``messages``), saved for ``datasets.load_from_disk``."""
    from datasets import Dataset, DatasetDict
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    if folder.exists():
        shutil.rmtree(folder)
    DatasetDict({name: Dataset.from_list([{"id": r["id"], "messages": r["messages"]} for r in rows])
                 for name, rows in sets.items()}).save_to_disk(str(folder))


def provenance(layout: RunLayout, sets: Mapping[str, list[dict[str, Any]]], source: Mapping[str, str],
               model_folder: Path | None = None) -> dict[str, Any]:
    """Where the data came from: the model, the seeds, the sampling, every stage's hash, the counts per set."""
    cfg = read_json(layout.config_path) or {}
    model = cfg.get("model", {})
    first = next(iter(sorted(layout.root.glob("*/sft_data/done.json"))), None)
    hashes = {}
    for done in sorted(layout.root.glob("*/*/done.json")):
        manifest = read_json(done) or {}
        hashes[layout.rel(done.parent)] = manifest.get("config_hash")
    return {
        "run": str(layout.root),
        "model": cards.describe_model(model.get("name", "unknown"), model_folder, source=model.get("source"),
                                      revision=model.get("revision")),
        "seed": cfg.get("seed"),
        "seeds": cards.describe_seeds(cfg.get("language", {}).get("name", "en")),
        "sampling": cfg.get("sampling", {}),
        "stage_hashes": hashes,
        "counts": {name: len(rows) for name, rows in sets.items()},
        "sources": dict(source),
        "experiment": cfg.get("experiment"),
        "debug": cfg.get("debug"),
        "git_commit": (read_json(first) or {}).get("git_commit") if first else None,
    }


FORMAT_TEXT = {
    "sharegpt": ("ShareGPT JSON lines: `conversations` of `from` (human, gpt) and `value`, the system prompt (if any) "
                 "in `system`.", 'load_dataset("json", data_files="{file}", split="train")'),
    "alpaca": ("Alpaca JSON lines: `instruction`, `input` (empty), `output`, `history`, `system` (if any).",
               'load_dataset("json", data_files="{file}", split="train")'),
    "llamafactory": ("LLaMA-Factory data folder: ShareGPT JSON lines and `dataset_info.json` (datasets "
                     "`selflen_<set>`); pass `dataset_dir: <this folder>` and `dataset: selflen_gen_all`.",
                     'load_dataset("json", data_files="{file}", split="train")'),
    "hf": ("A Hugging Face `DatasetDict`, one split per set, rows `id` and `messages` (chat format).",
           'load_from_disk("<this folder>")["{name}"]'),
}


def write_card(folder: Path, fmt: str, prov: Mapping[str, Any], files: Mapping[str, str]) -> Path:
    """The dataset card of an exported folder: what each file holds, how to load it, and the run's provenance."""
    counts = prov["counts"]
    name = str(prov["model"].get("name", ""))
    what, load = FORMAT_TEXT[fmt]
    configs = [{"config_name": n, "data_files": [{"split": "train", "path": f}]} for n, f in files.items()]
    meta = {"license": cards.licence_for(name), "language": [prov["seeds"].get("language")],
            "pretty_name": f"selflen long-output SFT data ({name}, {fmt})", "task_categories": ["text-generation"],
            "tags": [cards.PROJECT, "self-lengthen", "synthetic", "long-form-generation", fmt],
            "size_categories": [cards._size_category(max(counts.values(), default=0))],
            **({"configs": configs} if configs else {})}
    loader = "load_from_disk" if fmt == "hf" else "load_dataset"
    lines = [f"{n} = {load.format(file=files.get(n, ''), name=n)}\n" for n in counts]
    text = "".join([
        cards._front_matter(meta),
        f"# selflen SFT data: {fmt}\n\n",
        f"Synthetic long-output training data from `{cards.PROJECT}`, a re-implementation of Self-Lengthen "
        f"({cards.PAPER}), generated by `{name}` as Generator and Extender. {what}\n\n",
        "Sets: `gen_iter<k>` / `ext_iter<k>` (iteration k's Generator and Extender pairs), `gen_all` / `ext_all` "
        "(every iteration's), `length_control` (the final length-following set).\n\n",
        "## Sets\n\n", cards._kv_table({n: f"{c} rows, from `{prov['sources'][n]}`" for n, c in counts.items()},
                                      "set", "rows"),
        f"\n```python\nfrom datasets import {loader}\n\n", *lines, "```\n\n",
        cards._model_section(prov["model"]),
        "## Seed set\n\n", cards._kv_table(dict(prov["seeds"])), "\n",
        "## Sampling\n\n", cards._kv_table(dict(prov["sampling"]), "parameter"),
        f"\nRun seed: {prov['seed']}.\n\n",
        "## Stage hashes\n\n", cards._kv_table(dict(prov["stage_hashes"]), "stage", "hash"), "\n",
        "## Licence\n\n", cards.default_licence_note(name), "\n",
        cards._details({k: prov[k] for k in ("run", "experiment", "debug", "git_commit")}),
    ])
    return cards._write(folder, text)


def export_data(fmt: str, layout: RunLayout, out: Path, sets: Mapping[str, list[dict[str, Any]]],
                prov: Mapping[str, Any]) -> Path:
    """Write one data format under ``out/<fmt>``; returns the folder."""
    folder = out / fmt
    if fmt == "hf":
        write_hf(folder, sets)
        write_card(folder, fmt, prov, {})
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    convert = to_alpaca if fmt == "alpaca" else to_sharegpt
    files = write_rows(folder, sets, convert)
    if fmt == "llamafactory":
        with_system = {n for n, rows in sets.items() if any(r["messages"][0]["role"] == "system" for r in rows)}
        info = llamafactory_info(files, with_system)
        (folder / "dataset_info.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    write_card(folder, fmt, prov, files)
    return folder
