"""``report.md``: the verdict (each run's held-out length against its own base model, with intervals), the runs and
their status, config differences, words per iteration per role, extension
acceptance, the held-out length at each evaluation point, and evaluation scores. Missing values are "—"."""

from __future__ import annotations

import datetime as _dt
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from selflen.report.plots import is_number, point_key, point_label
from selflen.report.runs import ROLES, Run, config_differences, latest, short
from selflen.report.summary import budget_bound, budget_note, growth, headline, verdict_rows

MISSING = "—"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped, None as "—").

    >>> print(md_table(["a", "b"], [[1, "x|y"], [None, 2]]))
    | a | b |
    | --- | --- |
    | 1 | x\\|y |
    | — | 2 |
    """
    def cell(v: Any) -> str:
        return MISSING if v is None else str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def mean_cell(values: Sequence[float]) -> str | None:
    """``mean (n=count)``, or None (shown "—") when there are no values: missing, not zero."""
    return f"{statistics.fmean(values):.1f} (n={len(values)})" if values else None


def fmt(value: Any, digits: int = 3) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def _pct(value: Any) -> str | None:
    return f"{100 * value:.1f}%" if is_number(value) else None


def runs_section(runs: Sequence[Run]) -> str:
    return "## Runs\n\n" + md_table(
        ["run", "status", "model", "experiment", "iterations", "path"],
        [[r.label, r.status, r.config.get("model.name"), r.config.get("experiment"),
          ", ".join(map(str, r.words)) or None, r.path] for r in runs]) + "\n"


def differences_section(runs: Sequence[Run]) -> str:
    diffs = config_differences(runs)
    body = (md_table(["key", *[r.label for r in runs]], [[k, *[short(v) for v in vs]] for k, vs in diffs.items()])
            if diffs else "_The runs' configs are identical (apart from their paths)._")
    return "## Config differences\n\n" + body + "\n"


def words_section(runs: Sequence[Run]) -> str:
    rows = [[r.label, k, *[mean_cell(w.get(role, [])) for role in ROLES]] for r in runs for k, w in r.words.items()]
    return ("## Words per iteration\n\nMean words (number of answers) per role: Generator answers, accepted "
            "Extender outputs, and the extensions kept by selection (the next iteration's training data). "
            f"A role with nothing in an iteration shows {MISSING}.\n\n"
            + md_table(["run", "iteration", *ROLES], rows) + "\n")


def acceptance_section(runs: Sequence[Run]) -> str:
    return "## Extension acceptance\n\n" + md_table(
        ["run", "iteration", "extended", "accepted", "accept rate", "kept by selection"],
        [[r.label, f"{k}{' (running)' if a.get('partial') else ''}", a.get("inputs"), a.get("accepted"),
          fmt(a.get("rate")), a.get("kept")] for r in runs for k, a in r.acceptance.items()]) + "\n"


def _times(ratio: Any) -> str | None:
    return f"{ratio:.2f}x" if is_number(ratio) else None


def eval_length_section(runs: Sequence[Run]) -> str:
    """The Generator's length on the held-out slice at base, 1..K and final, with growth over base."""
    rows, notes = [], []
    for run in runs:
        ratios = growth(run.eval_lengths, "mean_words")
        for point in sorted(run.eval_lengths, key=point_key):
            e = run.eval_lengths[point]
            ratio = ratios.get(point)
            rows.append([run.label, point_label(point), e.get("n"), fmt(e.get("mean_words"), 1),
                         fmt(e.get("median_words"), 1), fmt(e.get("effective_words"), 1),
                         fmt(e.get("ended_mean_words"), 1), _pct(e.get("finish_by_budget_rate")),
                         _pct(e.get("repeated_ngram_rate")), _times(ratio), _times(e.get("paired_growth")),
                         fmt(e.get("score"))])
        if note := budget_note(budget_bound(run.eval_lengths)):
            notes.append(f"- {run.label}: {note}")
    if not rows:
        return ("## Held-out length\n\n_No evaluate folders with scored answers (`iter_0/evaluate/` for the base "
                "model, `iter_<k>/evaluate/`, `final/evaluate/`)._\n")
    text = ("## Held-out length\n\nThe Generator's answers on the held-out evaluation slice at each point (base = "
            "the model before training). Ended words: mean of the answers the model ended itself; finish by budget: "
            "answers stopped by max_new_tokens; repeated 10-grams: share of 10-gram positions whose 10-gram occurs "
            "again in the answer; growth: mean words over the base's; paired growth: geometric mean over prompts "
            "of words over the base's words on the same prompt.\n\n" + md_table(
                ["run", "point", "n", "mean words", "median words", "effective words", "ended words",
                 "finish by budget", "repeated 10-grams", "growth vs base", "paired growth", "score"], rows))
    return text + ("\n\n" + "\n".join(notes) if notes else "") + "\n"


def verdict_section(runs: Sequence[Run]) -> str:
    """The table the end of a run prints, per run: effective words, ended rate, repeated-10-gram rate and the
    effective-words ratio to the run's own base model with its 95 % paired bootstrap interval; then each run's
    verdict sentence."""
    rows = [[run.label, *row] for run in runs for row in verdict_rows({"eval": run.eval_lengths})]
    if not rows:
        return "## Verdict\n\n_No run evaluated its Generator (`iter_<k>/evaluate/`)._\n"
    sentences = [f"- {run.label}: {head['verdict']}" for run in runs if (head := headline(run.eval_lengths))]
    return ("## Verdict\n\nEach run against its own base model on the same held-out prompts and seeds. Effective "
            "words count repeated sentences once, so an answer that loops to the budget cannot win; the interval "
            "resamples prompts, paired.\n\n" + md_table(
                ["run", "point", "effective words", "ended", "repeated 10-grams", "effective words / base [95 %]"],
                rows) + ("\n\n" + "\n".join(sentences) if sentences else "") + "\n")


def links_section(runs: Sequence[Run]) -> str:
    """Per run and iteration, the three links from ``summary.json`` and the first one below its bar."""
    from selflen.report.links import weakest_link

    rows = [[run.label, k, row.get("targets"), fmt(row.get("target_words"), 1), _times(row.get("target_gain")),
             _times(row.get("target_over_base_ended")), fmt(row.get("fit")), fmt(row.get("transfer")),
             weakest_link(row)[0] or "none"]
            for run in runs for k, row in ((run.summary or {}).get("links") or {}).items()]
    if not rows:
        return ""
    return ("## Links: target gain, fit, transfer\n\nTarget gain: the Generator's training targets over the answers "
            "they were extended from and over the base model's ended answers on the benchmark; fit: the trained "
            "Generator's words on held-out self-instructed instructions over its targets' words; transfer: the "
            "benchmark's effective-words growth over the self-instructed split's.\n\n" + md_table(
                ["run", "iteration", "targets", "target words", "target gain", "targets / base ended", "fit",
                 "transfer", "broken link"], rows) + "\n")


def _depth(metric: str) -> int:
    return metric.count("/") + metric.count(".")


def eval_section(runs: Sequence[Run]) -> str:
    """The headline scores at every evaluation point, then the breakdown (by type, bucket, language...) at each
    run's latest evaluation."""
    metrics = sorted({m for r in runs for scores in r.evals.values() for m in scores}, key=lambda m: (_depth(m), m))
    if not metrics:
        return ("## Evaluation\n\n_No evaluation results in these runs (`iter_<k>/evaluate/`, `final/evaluate/` "
                "or `summary.json` key `eval`)._\n")
    top = [m for m in metrics if _depth(m) == _depth(metrics[0])]
    text = "## Evaluation\n\n" + md_table(
        ["run", "evaluated after", *top],
        [[r.label, point_label(p), *[fmt(s.get(m)) for m in top]] for r in runs for p, s in r.evals.items()])
    rest = [m for m in metrics if m not in top]
    evaluated = [r for r in runs if r.evals]
    if rest:
        last = [r.evals[latest(r.evals)] for r in evaluated]
        text += ("\n\n### Breakdown at each run's latest evaluation\n\n" + md_table(
            ["score", *[f"{r.label} ({point_label(latest(r.evals))})" for r in evaluated]],
            [[m, *[fmt(scores.get(m)) for scores in last]] for m in rest]))
    return text + "\n"


def next_steps_section(runs: Sequence[Run]) -> str:
    """Where a run's results go next, in the commands of the tools that take them (README, "Export")."""
    done = [r for r in runs if r.complete]
    if not done:
        return ""
    run = done[0]
    model = run.config.get("model.name") or "BASE_MODEL"
    exports = "\n".join(f"python -m selflen.export {r.path} --to {r.path}/export" for r in done)
    return ("## Next: train on the data, serve the model\n\n"
            "Export each run's SFT sets (LLaMA-Factory, ShareGPT, Alpaca, a Hugging Face dataset) and its merged "
            "final model, then train a bigger model on the data with LLaMA-Factory (or TRL's `SFTTrainer` on "
            "`export/hf`, README \"Export\") and serve the merged model with vLLM; the commands for "
            f"`{run.label or run.path.name}`:\n\n```bash\n{exports}\n"
            f"llamafactory-cli train --stage sft --do_train --model_name_or_path {model} --template default "
            f"--dataset_dir {run.path}/export/llamafactory --dataset selflen_gen_all,selflen_length_control "
            "--finetuning_type lora --lora_target all --output_dir saves/selflen-sft\n"
            f"vllm serve {run.path}/export/merged --served-model-name selflen-final\n```\n")


def render_report(runs: Sequence[Run], plots: Mapping[str, Path], title: str, notes: Sequence[str] = ()) -> str:
    """The Markdown report; ``plots`` maps a caption to a PNG next to the report."""
    now = _dt.datetime.now().isoformat(timespec="seconds")
    parts = [f"# {title}\n", f"{len(runs)} runs, read from their run directories on {now}.\n",
             verdict_section(runs), runs_section(runs), differences_section(runs), words_section(runs),
             acceptance_section(runs),
             eval_length_section(runs), links_section(runs), eval_section(runs), next_steps_section(runs)]
    parts = [part for part in parts if part]
    if plots:
        parts.append("## Plots\n\n" + "\n\n".join(f"![{cap}]({p.name})" for cap, p in plots.items()) + "\n")
    if notes:
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    return "\n".join(parts)
