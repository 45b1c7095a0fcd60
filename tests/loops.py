"""What every finished smoke loop holds, whatever its backend: the stage folders, each done with its counts keys, and
which model generated each stage (``served_by`` in ``done.json``). Numbers are left out: sampling differs between
backends, the structure does not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selflen.store import config_hash

SMOKE = ["debug=smoke", "logger=none", "evaluate.languages=[en]"]
ITERATION_STAGES = (
    "instruct",
    "generate",
    "select_responses",
    "extend",
    "select",
    "sft_data",
    "finetune_gen",
    "finetune_ext",
    "evaluate",
)
FINAL_STAGES = ("collect_instruct", "collect_generate", "collect_select", "length_control", "finetune", "evaluate")
RECORDS = ("dropped", "ok", "records")
COUNT_KEYS = {
    "instruct": RECORDS,
    "generate": RECORDS,
    "select_responses": RECORDS,
    "extend": RECORDS,
    "select": RECORDS,
    "collect_instruct": RECORDS,
    "collect_generate": RECORDS,
    "collect_select": RECORDS,
    "sft_data": ("ext_examples", "gen_examples"),
    "finetune_gen": ("dropped_too_long", "examples"),
    "finetune_ext": ("dropped_too_long", "examples"),
    "finetune": ("dropped_too_long", "examples"),
    "evaluate": ("hit_budget", "rows"),
}


def expected_stages(iterations: int = 2) -> set[str]:
    """Every stage folder of a smoke run (evaluation on, the final collection round and SFT on)."""
    stages = {"iter_0/instruct", "iter_0/evaluate"} | {f"final/{s}" for s in FINAL_STAGES}  # split, base
    return stages | {f"iter_{k}/{s}" for k in range(1, iterations + 1) for s in ITERATION_STAGES}


def manifests(run_dir: Path) -> dict[str, dict[str, Any]]:
    """``done.json`` of every stage folder under ``iter_*/`` and ``final/``; a folder without one fails."""
    out = {}
    for folder in sorted([*run_dir.glob("iter_*/*"), *run_dir.glob("final/*")]):
        if folder.is_dir():
            rel = str(folder.relative_to(run_dir))
            assert (folder / "done.json").exists(), f"{rel} is not done"
            out[rel] = json.loads((folder / "done.json").read_text())
    return out


def check_structure(run_dir: Path, iterations: int = 2) -> dict[str, dict[str, Any]]:
    """Assert the stage folders and counts keys of a finished smoke run; returns its manifests."""
    found = manifests(run_dir)
    assert set(found) == expected_stages(iterations), sorted(set(found) ^ expected_stages(iterations))
    for name, m in found.items():
        stage = name.rsplit("/", 1)[1]
        keys = tuple(sorted(m["counts"]))
        if stage == "length_control":  # which kinds and rewrites occur depends on the pooled answers
            assert "examples" in keys and all(k == "examples" or k.startswith(("kind_", "rewrite_")) for k in keys)
        else:
            assert keys == COUNT_KEYS[stage], f"{name}: {keys}"
        assert m["config_hash"] and m["counts"], name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["iterations"]) == {str(k) for k in range(1, iterations + 1)}
    assert set(summary["eval"]) == {str(k) for k in range(iterations + 1)} | {"final"}
    assert set(summary["self_instructed"]) == {str(k) for k in range(iterations + 1)}  # the split at 0..K
    assert set(summary["links"]) == {str(k) for k in range(1, iterations + 1)}
    assert summary["headline"]["point"] == "final"
    return found


def run_tag(run_dir: Path) -> str:
    """The prefix of the adapter names a run registers (``Runner``: unique to its folder on a shared server)."""
    return config_hash(str(run_dir.resolve()))[:8]


def expected_served(run_dir: Path, merged: bool = False) -> dict[str, list[str]]:
    """Which model generated each stage of a two-iteration smoke run: iteration 2 generates and extends with the
    adapters trained in iteration 1, each evaluation uses the Generator it evaluates (``merged``: each adapter was
    served merged into a model copy, as vLLM on CPU does)."""
    t = run_tag(run_dir)
    if merged:
        return {k: [v if v == "base" else f"{v} (merged)" for v in vs] for k, vs in expected_served(run_dir).items()}
    served = {f"iter_{k}/instruct": ["base"] for k in (0, 1, 2)}  # iter_0: the held-out self-instructed split
    served.update(
        {
            "iter_0/evaluate": ["base"],
            "iter_1/generate": ["base"],
            "iter_1/extend": ["base"],
            "iter_2/generate": [f"{t}-gen1"],
            "iter_2/extend": [f"{t}-ext1"],
            "iter_1/evaluate": [f"{t}-gen1"],
            "iter_2/evaluate": [f"{t}-gen2"],
            "final/collect_instruct": ["base"],
            "final/collect_generate": [f"{t}-gen2"],
            "final/length_control": ["base"],
            "final/evaluate": [f"{t}-final"],
        }
    )
    return served


def check_served(found: dict[str, dict[str, Any]], run_dir: Path, merged: bool = False) -> None:
    got = {name: m["served_by"] for name, m in found.items() if "served_by" in m}
    assert got == expected_served(run_dir, merged)
