"""Command line: ``python -m evaluation {score,generate,regress} ...`` (see ``evaluation/README.md``).

Exit codes: 0 success, 2 bad input (malformed row, missing file, unknown name), 1 a known runtime error (model or
adapter folder unusable, server down, disk full) printed as one line ``selflen: error: ...``; 130/143 when stopped
by SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluation import api
from evaluation.benchmarks import BENCHMARKS, load_benchmark, slice_rows
from evaluation.counters import COUNTERS
from selflen.errors import Interrupted, SelflenError, install_stop_handlers
from selflen.jsonl import BadRow, RowError, read_jsonl, write_jsonl

if TYPE_CHECKING:
    from evaluation.runner import JudgeSettings

SCORE_BENCHMARKS = tuple(api.FAMILIES)
GENERATE_BENCHMARKS = tuple(BENCHMARKS)


def _kv(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as JSON when it parses (numbers, booleans), else as a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _csv(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def _judge_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("judge (quality scoring; off unless --judge-model is given)")
    g.add_argument("--judge-model", help="model path or id of the judge")
    g.add_argument(
        "--judge-backend",
        choices=("hf", "vllm", "openai"),
        default=None,
        help="default: hf for score, --backend for generate",
    )
    g.add_argument("--judge-engine-arg", type=_kv, action="append", default=[], metavar="KEY=VALUE")
    g.add_argument("--judge-cache", help="JSONL cache file (default: next to the output)")
    g.add_argument("--judge-attempts", type=int, default=3, help="bounded tries per item (default 3)")
    g.add_argument("--judge-max-new-tokens", type=int, default=1024)
    g.add_argument("--judge-max-response-chars", type=int, default=None, help="truncate long answers")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with the ``score`` and ``generate`` subcommands."""
    parser = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("score", help="score a JSONL of benchmark rows plus 'response'")
    s.add_argument("--benchmark", required=True, choices=SCORE_BENCHMARKS)
    s.add_argument("--input", required=True, type=Path)
    s.add_argument("--output", required=True, type=Path, help="scored rows (JSONL)")
    s.add_argument("--summary", required=True, type=Path, help="summary (JSON)")
    s.add_argument("--counter", choices=sorted(COUNTERS), help="default: the benchmark's own counter")
    s.add_argument("--skip-bad", action="store_true", help="skip malformed rows and count them instead of stopping")
    s.add_argument("--scatter", type=Path, help="also write a required-vs-produced scatter plot (PNG)")
    _judge_args(s)

    g = sub.add_parser("generate", help="generate answers for a benchmark slice, then score them")
    g.add_argument("--benchmark", required=True, choices=GENERATE_BENCHMARKS)
    g.add_argument("--backend", required=True, choices=("hf", "vllm", "openai"))
    g.add_argument("--model", required=True, help="model folder or id")
    g.add_argument("--adapter", help="LoRA adapter folder to evaluate on top of --model")
    g.add_argument("--merge-adapter", choices=("auto", "always", "never"), default="auto",
                   help="serve --adapter merged into a copy of --model under OUT/merged (auto: vLLM on a CPU, "
                        "where an adapter on every request decodes about 3x slower)")  # fmt: skip
    g.add_argument("--engine-arg", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="extra engine argument, e.g. dtype=float32 device=cpu batch_size=4 (repeatable)")  # fmt: skip
    g.add_argument("--out", required=True, type=Path, help="output folder")
    g.add_argument("--data-dir", type=Path, help="default: $SELFLEN_DATA_DIR or the packaged copy")
    g.add_argument("--online", action="store_true", help="load from the hub (not with HF_HUB_OFFLINE=1)")
    g.add_argument("--language", type=_csv, help="comma list, e.g. en or zh,en")
    g.add_argument("--bucket", type=_csv, help="comma list of length buckets, e.g. 2-4k or 0-500,500-2k")
    g.add_argument("--type", dest="type_", type=_csv, help="comma list of types, e.g. about,below")
    g.add_argument("--n-per-cell", type=int, help="keep at most N rows per (language, bucket, type) cell")
    g.add_argument("--seed", type=int, default=0, help="slice seed (rows per cell); -1 = first rows")
    g.add_argument("--limit", type=int, help="keep only the first N rows after slicing")
    g.add_argument("--exclude-flagged", action="store_true", help="drop LonGen's 4 flagged rows")
    g.add_argument("--samples", type=int, default=1, help="samples per prompt (for length sigma/mu)")
    g.add_argument("--max-new-tokens", type=int, default=8192)
    g.add_argument("--temperature", type=float, default=0.7)
    g.add_argument("--top-p", type=float, default=0.8)
    g.add_argument("--top-k", type=int, default=20)
    g.add_argument("--repetition-penalty", type=float, default=1.05)
    g.add_argument("--gen-seed", type=int, default=0, help="sampling seed")
    g.add_argument("--counter", choices=sorted(COUNTERS), help="default: the benchmark's own counter")
    _judge_args(g)

    r = sub.add_parser("regress", help="general-ability regression: base model vs adapter or fine-tuned model "
                       "on lm-eval tasks, with bootstrap standard errors and a verdict per task")
    r.add_argument("--model", required=True, help="the base model folder or id")
    other = r.add_mutually_exclusive_group(required=True)
    other.add_argument("--adapter", help="LoRA adapter folder (evaluated on top of --model)")
    other.add_argument("--finetuned", help="a fully fine-tuned model folder")
    r.add_argument("--tasks", type=_csv, default=["selflen_mini_mc"],
                   help="comma list of lm-eval tasks, e.g. mmlu (default: the offline selflen_mini_mc)")
    r.add_argument("--limit", type=float, help="documents per task (a fraction below 1)")
    r.add_argument("--batch-size", type=int, default=4)
    r.add_argument("--device", default="cpu")
    r.add_argument("--dtype", default="float32")
    r.add_argument("--bootstrap-iters", type=int, default=1000)
    r.add_argument("--include-path", type=Path, help="extra lm-eval task folder (default: evaluation/lm_eval_tasks)")
    r.add_argument("--out", type=Path, help="write the full result (JSON)")
    return parser


def cmd_regress(args: argparse.Namespace) -> int:
    """``regress``: both models on each task; one verdict line per (task, metric)."""
    from evaluation.lm_eval_compare import TASKS_DIR, run_regression, verdict_lines

    limit = None if args.limit is None else (int(args.limit) if args.limit >= 1 else args.limit)
    result = run_regression(
        args.model, args.adapter, args.tasks, limit, args.batch_size, args.device, args.dtype,
        args.include_path or TASKS_DIR, finetuned_dir=args.finetuned, bootstrap_iters=args.bootstrap_iters,
    )  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    for line in verdict_lines(result["comparison"] or {}):
        print(line)
    return 0


def _judge_settings(args: argparse.Namespace, default_backend: str, cache: Path) -> JudgeSettings | None:
    from evaluation.runner import JudgeSettings

    if not args.judge_model:
        return None
    return JudgeSettings(
        model=args.judge_model,
        backend=args.judge_backend or default_backend,
        engine_kwargs=dict(args.judge_engine_arg),
        cache_path=str(args.judge_cache or cache),
        max_attempts=args.judge_attempts,
        max_new_tokens=args.judge_max_new_tokens,
        max_response_chars=args.judge_max_response_chars,
    )


def cmd_score(args: argparse.Namespace) -> int:
    """``score``: read, score, (judge), write scored rows and the summary."""
    bad_json: list[BadRow] = []
    rows = read_jsonl(args.input, strict=True, bad=bad_json if args.skip_bad else None)
    scored, summary = api.score_rows(
        rows, args.benchmark, args.counter, skip_bad=args.skip_bad, source=str(args.input), bad_rows=bad_json
    )
    if not scored:  # a score of None over nothing is not a result: refuse it before any output is written
        bad = summary.get("bad_rows") or 0
        what = f"no usable row ({bad} skipped as malformed)" if bad else "no rows (the file is empty)"
        print(f"error: {args.input}: {what}; score a JSON-lines file with one answer per line", file=sys.stderr)
        return 2
    settings = _judge_settings(args, "hf", args.output.with_suffix(".judge_cache.jsonl"))
    if settings is not None:
        from evaluation.judge import Judge, rubric_for
        from evaluation.runner import judge_and_summarize
        from selflen.engines import build_engine
        from selflen.engines.base import SamplingParams

        params = SamplingParams(
            temperature=0.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=settings.max_new_tokens
        )
        with build_engine(settings.backend, settings.model, **settings.engine_kwargs) as engine:
            judge = Judge(engine, settings.model, rubric_for(args.benchmark), settings.cache_path,
                          settings.max_attempts, params, max_response_chars=settings.max_response_chars)  # fmt: skip
            scored = judge_and_summarize(scored, args.benchmark, judge, summary)
    elif any("judge_error" in r for r in scored):
        from evaluation.judge import judge_summary, rubric_for

        summary["judge"] = judge_summary(scored, rubric_for(args.benchmark))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.output, scored, private=False)
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.scatter:
        api.scatter_plot(scored, args.scatter, f"{args.benchmark}: {args.input.name}")
    overall = summary["overall"]["score"]
    print(f"scored {summary['n']} rows ({summary['bad_rows']} bad) -> {args.output}; overall score {overall}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """``generate``: slice the benchmark, generate with the engine, score, (judge), write everything."""
    from evaluation.runner import run_generate
    from selflen.engines.base import SamplingParams

    rows = load_benchmark(args.benchmark, args.data_dir, online=args.online)
    rows = slice_rows(
        rows, args.language, args.bucket, args.type_, args.n_per_cell, None if args.seed < 0 else args.seed,
        include_flagged=not args.exclude_flagged,
    )  # fmt: skip
    rows = rows[: args.limit] if args.limit is not None else rows
    if not rows:
        print("error: the slice is empty; check --language/--bucket/--type", file=sys.stderr)
        return 2
    params = SamplingParams(
        temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, repetition_penalty=args.repetition_penalty,
        max_new_tokens=args.max_new_tokens, seed=args.gen_seed, n=args.samples,
    )  # fmt: skip
    summary = run_generate(
        args.benchmark, rows, args.backend, args.model, args.out, params, args.adapter, dict(args.engine_arg),
        args.counter, _judge_settings(args, args.backend, args.out / "judge_cache.jsonl"), args.merge_adapter,
    )  # fmt: skip
    outputs, overall = summary["generation"]["outputs"], summary["overall"]["score"]
    print(f"generated {outputs} answers -> {args.out}; overall score {overall}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    restore = install_stop_handlers()
    try:
        commands = {"score": cmd_score, "generate": cmd_generate, "regress": cmd_regress}
        return commands[args.command](args)
    except RowError as exc:
        print(f"error: {exc} (use --skip-bad to skip and count malformed rows)", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc.args[0] if len(exc.args) == 1 else exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"selflen: {exc}; outputs of this command are incomplete, run it again", file=sys.stderr)
        return exc.exit_code
    except SelflenError as exc:
        print(f"selflen: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"selflen: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        restore()


if __name__ == "__main__":
    sys.exit(main())
