"""The capacity probe: can a model's Extender lengthen long answers, before any long run is spent on it?

    OMP_WAIT_POLICY=PASSIVE python bench/capacity.py --run-dir outputs/probe_q05 \\
        model=qwen25_coder_05b +experiment=capacity_probe
    python bench/capacity.py --run-dir outputs/probe_q05 --report-only      # tables of a finished probe
    python bench/capacity.py --run-dir outputs/proof15_s0 --report-only --out x.json   # or of a train.py run

Runs the loop's own stages through ``selflen.pipeline`` for one iteration up to the selected extensions (the base
model on the held-out LonGen slice, self-instruct, answers, their selection, two-stage extensions, the length-biased
selection of those), nothing trained. The folders are the loop's, with the same hashes, so a later
``train.py`` run with the same overrides and ``hydra.run.dir`` (or ``paths.fork_from``) resumes from them.

Reports, like the SmolLM2 table of docs/benchmarks/2026-12-03-proof-run.md: the Extender's accept rate and accepted
words by the length of the answer it was given; why its tries failed (the drop reason of every failed round); how many
answers passed 450 words; and the go/no-go number, the targets' words over the base model's ended and effective words
on LonGen. A model goes on to the proof run when its targets reach 1.5x the base's effective words. Writes
``bench/results/capacity_<model>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BINS = ((0, 300, "under 300 words"), (300, 450, "300-450"), (450, 600, "450-600"), (600, 10**9, "600 and more"))
GO = 1.5  # targets over the base's effective words needed for the headline goal (final / base >= 1.5x)


def run_probe(run_dir: Path, overrides: list[str]) -> float:
    """The stages, run or resumed; returns the wall seconds."""
    from selflen.addresses import at
    from selflen.config import load, to_dict
    from selflen.locks import RunLock
    from selflen.pipeline import evaluate_point, evaluation_inputs, lengthen
    from selflen.run_inputs import model_folder, preflight
    from selflen.stage_runner import Runner
    from selflen.store import RunLayout, write_json
    from selflen.tracking import NullLogger

    cfg = load(*overrides)
    cfg = dataclasses.replace(cfg, paths=dataclasses.replace(cfg.paths, run_dir=str(run_dir)))
    cfg = preflight(cfg)
    layout = RunLayout(run_dir.resolve())
    layout.root.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with RunLock(layout.root):
        r = Runner(cfg, layout, model_folder(cfg), NullLogger())
        write_json(layout.root / "probe_config.json", {"overrides": overrides, **to_dict(cfg)})
        try:
            answered = evaluation_inputs(r)  # the benchmark slice and the held-out split, as the loop builds them
            if answered is not None:
                evaluate_point(r, 0, answered)
            lengthen(r, 1, answered is not None and cfg.evaluate.self_instructed > 0)
            assert (layout.root / at(1, "select") / "done.json").exists()
        finally:
            r.engines.close()
    return time.time() - t0


def _records(run_dir: Path, rel: str, name: str = "records.jsonl") -> list[dict[str, Any]]:
    from selflen.store import read_jsonl

    return read_jsonl(run_dir / rel / name)  # [] when the stage has not run


def _mean(xs: list[float]) -> float | None:
    return round(statistics.fmean(xs), 1) if xs else None


def analyse(run_dir: Path) -> dict[str, Any]:
    """The probe's numbers from its stage folders."""
    from selflen.report.lengths import eval_length_row

    answers = _records(run_dir, "iter_1/generate")
    kept = [a for a in _records(run_dir, "iter_1/select_responses") if a.get("status") == "ok"]
    ext = _records(run_dir, "iter_1/extend")
    targets = [e for e in _records(run_dir, "iter_1/select") if e.get("status") == "ok"]
    scored = _records(run_dir, "iter_0/evaluate", "scored.jsonl")
    base = eval_length_row(None, scored) if scored else {}
    ok_answers = [a for a in answers if a.get("status") == "ok"]
    by_bin = []
    for lo, hi, label in BINS:
        tried = [e for e in ext if lo <= e["words_before"] < hi]
        acc = [e for e in tried if e["status"] == "ok"]
        by_bin.append({"bin": label, "tried": len(tried), "accepted": len(acc),
                       "accepted_words": _mean([e["words"] for e in acc]),
                       "accepted_ratio": _mean([e["ratio"] for e in acc]),
                       "tried_best_ratio": _mean([e["ratio"] for e in tried])})
    drops: Counter[str] = Counter()
    for e in ext:
        drops.update(e.get("drops") or {})
    answer_drops = Counter(a.get("reason") for a in answers if a.get("status") != "ok")
    target_words = _mean([e["words"] for e in targets])
    eff, ended = base.get("effective_words"), base.get("ended_mean_words")
    return {
        "answers": len(answers), "answers_kept_by_filters": len(ok_answers),
        "answer_drops": dict(answer_drops),
        "answer_words": _mean([a["words"] for a in ok_answers]),
        "answers_over_450": sum(a["words"] > 450 for a in ok_answers),
        "selected_answers": len(kept), "selected_over_450": sum(a["words"] > 450 for a in kept),
        "extensions_tried": len(ext), "extensions_accepted": sum(e["status"] == "ok" for e in ext),
        "extender_by_length": by_bin, "failed_round_reasons": dict(drops.most_common()),
        "max_extension_words": max((e["words"] for e in ext if e["status"] == "ok"), default=None),
        "targets": len(targets), "target_words": target_words,
        "base_longen": {"n": base.get("n"), "mean_words": base.get("mean_words"), "ended_mean_words": ended,
                        "effective_words": eff, "finish_by_budget_rate": base.get("finish_by_budget_rate"),
                        "repeated_10gram_rate": base.get("repeated_ngram_rate")},
        "target_over_base_ended": round(target_words / ended, 3) if target_words and ended else None,
        "target_over_base_effective": round(target_words / eff, 3) if target_words and eff else None,
        "go": bool(target_words and eff and target_words / eff >= GO),
        "stage_seconds": _stage_seconds(run_dir),
    }


def _stage_seconds(run_dir: Path) -> dict[str, float]:
    out = {}
    for done in sorted(run_dir.glob("iter_*/*/done.json")):
        seconds = json.loads(done.read_text()).get("seconds")
        if seconds is not None:
            out[f"{done.parent.parent.name}/{done.parent.name}"] = seconds
    return out


def markdown(model: str, a: dict[str, Any]) -> str:
    cells = " | ".join(f"{b['accepted']} / {b['tried']}" + (f" → {b['accepted_words']:.0f}" if b["accepted"] else "")
                       for b in a["extender_by_length"])
    lines = [
        f"**{model}**: {a['answers_kept_by_filters']} of {a['answers']} answers kept by the filters "
        f"({a['answer_words']} mean words, {a['answers_over_450']} over 450; drops {a['answer_drops']}); "
        f"{a['selected_answers']} selected ({a['selected_over_450']} over 450), "
        f"{a['extensions_accepted']} of {a['extensions_tried']} extensions accepted, the longest "
        f"{a['max_extension_words']} words.",
        "",
        "| model | " + " | ".join(b[2] for b in BINS) + " |", "|---|" + "---|" * len(BINS),
        f"| {model} | {cells} |",
        "",
        f"Failed rounds by reason: {a['failed_round_reasons']}.",
        f"Targets: {a['targets']} at {a['target_words']} words; the base on {a['base_longen']['n']} LonGen prompts: "
        f"ended {a['base_longen']['ended_mean_words']}, effective {a['base_longen']['effective_words']} words → "
        f"targets / base ended {a['target_over_base_ended']}, / base effective {a['target_over_base_effective']} "
        f"({'GO' if a['go'] else 'no-go'}: the bar is {GO}).",
    ]
    return "\n".join(lines)


def hydra_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides of a ``train.py`` run, as Hydra recorded them."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    return [str(o) for o in OmegaConf.load(path)]  # a YAML list; a quoted override keeps its quotes' meaning


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--out", type=Path)
    p.add_argument("overrides", nargs="*", help="train.py overrides (model=..., +experiment=capacity_probe)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    wall = None if args.report_only else run_probe(args.run_dir, args.overrides)
    probe = args.run_dir / "probe_config.json"  # a train.py run folder has config.json and its overrides in .hydra
    cfg = json.loads((probe if probe.exists() else args.run_dir / "config.json").read_text())
    model = cfg["model"]["path"] or cfg["model"]["name"]
    result = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": f"{platform.machine()} {os.cpu_count()} cores", "model": model,
              "overrides": cfg.get("overrides") or hydra_overrides(args.run_dir),
              "wall_s": wall and round(wall, 1), **analyse(args.run_dir)}
    out = args.out or ROOT / "bench" / "results" / f"capacity_{model}.json"
    if not args.report_only or args.out:
        out.write_text(json.dumps(result, indent=1))
    print(markdown(model, result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
