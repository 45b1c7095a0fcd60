"""The stage groups: one frozen dataclass per config group of a stage, which that stage receives whole.

The values live in YAML only (``conf/<group>/default.yaml``, and ``conf/length/*.yaml`` for the token budgets);
these classes give each key its type and carry no defaults, so a key missing from the YAML stops the load with its
name (``tests/unit/test_config.py`` checks that every YAML key has a field and every field a key). Each field says
what it means, what range or choices it takes and whether it is hashed, in one place: ``knob(...)``, which
``selflen.config`` reads for its checks and ``python train.py --knobs`` for its listing. A stage's hash is taken
from its settings (``identity``); a field with ``hashed=False`` does not shape the output of the stage that
receives the group (how often to checkpoint, whether the stage runs at all, or a value that reaches the stage
through a derived field).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, field
from typing import Any

from selflen.benchmark_files import BENCHMARKS
from selflen.text.rules import RULES

HASH_VERSION = 2
"""Part of every stage hash; bumped when the settings change shape (2: stages receive their groups whole)."""
NO_HASH = {"hash": False}
"""The metadata of a field left out of the stage hash (``knob(..., hashed=False)``)."""
Range = tuple[float | None, float | None, bool, bool]
"""(low, high, low_open, high_open); None means unbounded on that side."""
_INTERVAL = re.compile(r"^([\[(])\s*(-inf|[-+.\deE]+)\s*,\s*(inf|[-+.\deE]+)\s*([\])])$")


def interval(text: str) -> Range:
    """An interval written as in mathematics, "[1, inf)" or "(0, 1]", as ``Range``.

    >>> interval("[1, inf)"), interval("(0, 0.5]")
    ((1, None, False, True), (0, 0.5, True, False))
    """
    m = _INTERVAL.match(text)
    if not m:
        raise ValueError(f"{text!r} is not an interval such as '[1, inf)' or '(0, 1]'")

    def bound(s: str) -> float | None:
        return None if s.endswith("inf") else int(s) if re.fullmatch(r"[-+]?\d+", s) else float(s)

    return bound(m.group(2)), bound(m.group(3)), m.group(1) == "(", m.group(4) == ")"


def describe(r: Range) -> str:
    """``Range`` back as text: ``describe(interval("[1, inf)")) == "[1, inf)"``."""
    lo, hi, lo_open, hi_open = r
    low, high = "-inf" if lo is None else lo, "inf" if hi is None else hi
    return f"{'(' if lo_open else '['}{low}, {high}{')' if hi_open else ']'}"


def knob(help: str, range: str | None = None, *, choices: tuple[Any, ...] | None = None, hashed: bool = True,
         default: Any = MISSING, default_factory: Any = MISSING) -> Any:
    """A config field with its meaning beside its type: ``help`` (one line), ``range`` (a numeric knob's interval,
    "[1, inf)"), ``choices`` (a text knob's allowed values); a null is allowed where the type allows it. A stage
    group's field takes no default (its value is in YAML); the other groups' fields (``selflen.config``) do."""
    meta = {"help": help, "range": interval(range) if range else None, "choices": choices}
    if not hashed:
        meta.update(NO_HASH)
    return field(default=default, default_factory=default_factory, metadata=meta)


def knobs(cls: type, prefix: str = "") -> Iterator[tuple[str, Any, dataclasses.Field]]:
    """Every knob of the dataclass ``cls``, nested groups walked: (dotted key, its type, its field)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            yield from knobs(kind, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", kind, f


def numeric(kind: Any) -> bool:
    """Whether a field of type ``kind`` holds a number (``int``, ``float``, or either or null; not ``bool``)."""
    options = set(typing.get_args(kind)) - {type(None)} if nullable(kind) else {kind}
    return bool(options) and options <= {int, float}


def nullable(kind: Any) -> bool:
    return type(None) in typing.get_args(kind)


def identity(obj: Any) -> Any:
    """What of a settings object shapes the stage's output: its fields as JSON-ready values, recursively, without
    those marked ``NO_HASH``.

    >>> identity(FinetuneConfig(**{f.name: 1 for f in dataclasses.fields(FinetuneConfig)}))["save_steps"]
    Traceback (most recent call last):
    KeyError: 'save_steps'
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: identity(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.metadata.get("hash", True)}
    if isinstance(obj, list | tuple):
        return [identity(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): identity(v) for k, v in obj.items()}
    return obj


POSITIVE, COUNT, FRACTION, SHARE = "[1, inf)", "[0, inf)", "(0, 1]", "[0, 1]"
"""The intervals most knobs share: at least one, any count, a fraction above zero, a share from zero to one."""


@dataclass(frozen=True)
class LengthConfig:
    """The length target: every stage's token budget and the length-following pool's word bounds (one place)."""

    instruct_tokens: int = knob("new tokens of a self-instruct call", POSITIVE)
    generate_tokens: int = knob("new tokens of the Generator's answer", POSITIVE)
    extend_tokens: int = knob("new tokens of each of the Extender's two stages per round", POSITIVE)
    evaluate_tokens: int = knob("new tokens of an evaluated answer", POSITIVE)
    rewrite_tokens: int = knob("length control: new tokens of the base model's rewrite of a query with its constraint",
                               POSITIVE)
    pool_min_words: int = knob("length control pools answers with pool_min_words <= words < pool_max_words "
                               "(reference: 2000)", COUNT)
    pool_max_words: int = knob("the length-control pool's upper bound in words, exclusive (reference: 8000)", POSITIVE)


@dataclass(frozen=True)
class InstructConfig:
    """Step 0, self-instruct: the base model writes long-writing instructions from two examples; a judge keeps some."""

    count: int = knob("instructions per iteration (reference: 5000, +experiment=paper_scale)", POSITIVE)
    attempts: int = knob("tries per requested instruction (reference: 10)", POSITIVE)
    pool: str = knob("few-shot examples from: growing = seeds + accepted so far (Qwen reference) | seeds (LLaMA "
                     "reference)", choices=("growing", "seeds"))
    pool_reset: int | None = knob("growing pool: reset to the seeds every N slots (Qwen reference: 500); null: never",
                                  POSITIVE)
    judge: bool = knob("a yes/no judge keeps the instructions suited to long writing")
    judge_temperature: float = knob("the judge's temperature (the reference samples it with the shared decoding)",
                                    COUNT)
    judge_min_words: int = knob('the judge asks "suitable for a text of more than N words" (reference: 2000)', COUNT)
    judge_parse: str = knob('reading the verdict: selflen reads "Yes.", "是的", "Answer: no" | reference: exactly '
                            '"yes" / "是", else no', choices=RULES)
    min_words: int = knob("an instruction is kept when min_words <= words < max_words (reference: 3 < w < 500)",
                          COUNT)
    max_words: int = knob("upper bound of an instruction in words, exclusive (reference: 500)", POSITIVE)
    dedup_threshold: float | None = knob("exact and near-duplicate instructions dropped at this similarity; null: "
                                         "none (the reference has no dedup)", FRACTION)
    decontaminate: bool = knob("drop instructions that overlap the held-out benchmarks (the reference does not check)")
    drop_truncated: bool = knob("drop an instruction cut by the token budget (it is unfinished)")


@dataclass(frozen=True)
class GenerateConfig:
    """Step 1: the Generator answers each instruction; the language group's filters keep or drop each answer."""

    samples: int = knob("answers per instruction (reference: 2)", POSITIVE)
    attempts: int = knob("extra tries for an answer that failed the filters (reference: up to 19)", COUNT)
    drop_truncated: bool = knob('drop an answer cut by the token budget (finish reason "length")')
    stop_loops: bool = knob("end and drop an answer that repeats one 8-128-token pattern 3 times back to back (it "
                            "holds a repeated n-gram the filters drop anyway); the reference lets it run")


@dataclass(frozen=True)
class ExtendConfig:
    """Step 2: the Extender lengthens each answer, two stages per round, in chained rounds (split: the split group)."""

    extensions: int = knob("independent extensions per answer (reference: 2)", POSITIVE)
    rounds: int = knob("chained extension rounds (reference: 3)", POSITIVE)
    attempts: int = knob("tries per round before the round gives up (reference: 1)", POSITIVE)
    retries: int = knob("an extension under min_ratio after its rounds starts over from the original (reference: 19)",
                        COUNT)
    min_ratio: float = knob("accepted only if words > min_ratio x the original's (strictly, as the reference)",
                            POSITIVE)
    keep_fraction: float = knob("stage 1's expansion is cut to its first keep_fraction (reference: 2/3)", FRACTION)
    keep_rule: str = knob('cutting stage 1: selflen counts content paragraphs and keeps one at least | reference: raw '
                          '"\\n\\n" pieces, may keep none', choices=RULES)
    prefix_separator: str = knob('put between the kept text and stage 2\'s continuation ("": verbatim, the reference)')
    strip_meta: bool = knob('strip "Here is the revised version:" lines instead of dropping the text '
                            "(reference: drop)")
    drop_truncated: bool = knob("drop an extension cut by the token budget")
    stop_loops: bool = knob("end and drop a rewrite caught in a verbatim loop (both stages); the reference runs on")
    hold_to_ratio: bool = knob("stage 2 may not end (EOS) before the text could be min_ratio x longer "
                               "(reference: off)")


@dataclass(frozen=True)
class SelectConfig:
    """After extension: near-duplicates removed, then length-biased sampling (keep p = 1 - 2r^3 by length rank)."""

    length_biased_responses: bool = knob("the rank rule on the Generator's answers (reference: drop_short there too)",
                                         hashed=False)  # enters as SelectSettings.length_biased
    length_biased_extensions: bool = knob("the rank rule on the accepted extensions (reference: yes)", hashed=False)
    length_unit: str = knob("what the rank rule ranks by: chars (the reference's len(str)) | words",
                            choices=("chars", "words"))
    min_items: int = knob("below this many items the rank rule, which always drops the shortest ~21 %, is skipped "
                          "(reference: 0)", COUNT)
    dedup_threshold: float | None = knob("near-duplicate items dropped first at this similarity; null: none (the "
                                         "reference has no dedup)", FRACTION)


@dataclass(frozen=True)
class SftDataConfig:
    """Step 3: Generator pairs (instruction -> extended), Extender pairs (the answer, lines removed -> extended)."""

    p_keep_line: float = knob("chance each line of the answer stays in the Extender's outline (reference: 0.8)",
                              FRACTION)
    line_removal: str = knob("selflen: blank lines stay, one line at least stays | reference: every line drawn, "
                             "may be empty", choices=RULES)
    max_examples: int | None = knob("examples per SFT file at most; null: all", POSITIVE)


@dataclass(frozen=True)
class LoraConfig:
    r: int = knob("LoRA rank", POSITIVE)
    alpha: int = knob("LoRA alpha (the update is scaled by alpha / r)", "(0, inf)")
    dropout: float = knob("LoRA dropout", "[0, 1)")
    target_modules: str = knob("modules given adapters (peft's target_modules, e.g. all-linear: every linear layer)")


@dataclass(frozen=True)
class FinetuneConfig:
    """Step 4: the Generator and the Extender are fine-tuned on their SFT files."""

    method: str = knob("lora (adapters) | full (every weight)", choices=("lora", "full"))
    lineage: str = knob("continue: training goes on from the role's last model (the reference's cumulative adapter) "
                        "| fresh: each iteration trains anew from the base", choices=("continue", "fresh"))
    lora: LoraConfig  # the adapters (method=lora)
    learning_rate: float = knob("peak learning rate", "(0, inf)")
    epochs: float = knob("passes over the SFT file (reference: 4)", "(0, inf)")
    batch_size: int = knob("examples per step and process", POSITIVE)
    grad_accum: int = knob("steps accumulated per optimiser update", POSITIVE)
    warmup_ratio: float = knob("share of the steps the learning rate warms up over", SHARE)
    scheduler: str = knob("transformers' learning-rate schedule (lr_scheduler_type: cosine, linear, ...)")
    max_length: int = knob("tokens per example at most; a longer example is dropped", POSITIVE)
    batching: str = knob("bucketed: sorted-by-length batches in shuffled order, ~no padding on skewed data | "
                         "group_by_length | random", choices=("bucketed", "group_by_length", "random"))
    save_steps: int = knob("steps between checkpoints (a killed fine-tune resumes from the last)", POSITIVE,
                           hashed=False)
    logging_steps: int = knob("steps between logged losses", POSITIVE, hashed=False)
    bf16: bool = knob("train in bf16 autocast (native on GPUs and AVX512-BF16/AMX CPUs)")
    gradient_checkpointing: bool = knob("recompute activations in the backward pass: less memory, slower steps")
    last_extender: bool = knob("train the Extender in the last iteration too (the reference); nothing after the "
                               "loop uses it", hashed=False)


@dataclass(frozen=True)
class LengthControlConfig:
    """After the loop: pooled long answers get length constraints for a final length-following fine-tune."""

    enabled: bool = knob("run length control after the loop", hashed=False)
    collect: int = knob("final collection round: fresh instructions answered by the last Generator (reference: 5000)",
                        COUNT)
    mix: dict[str, float] = knob("weights of the constraint kinds about / range / above / below")
    rewrite: str = knob("llm: the base model weaves the constraint into the query (template as fallback) | template",
                        choices=("llm", "template"))
    final_sft: bool = knob("fine-tune the length-following model on the constrained pairs", hashed=False)
    epochs: float = knob("the final fine-tune's epochs (it reaches that stage as its finetune.epochs)", "(0, inf)",
                         hashed=False)


@dataclass(frozen=True)
class EvaluateConfig:
    """Each iteration's Generator (and the base model as iteration 0) answers a held-out benchmark slice."""

    enabled: bool = knob("evaluate at all", hashed=False)
    base: bool = knob("evaluate the base model as iteration 0 (growth is then a ratio measured in one run)",
                      hashed=False)
    benchmark: str = knob("the held-out benchmark", choices=BENCHMARKS)
    languages: list[str] = knob("the benchmark languages evaluated ([]: all)")
    n_per_cell: int = knob("rows per language x length bucket x type cell", POSITIVE)
    temperature: float = knob("0: greedy; a sampled evaluation uses the run seed, the same at every point", COUNT)
    top_p: float = knob("nucleus sampling of the evaluated answers", FRACTION)
    top_k: int = knob("top-k sampling of the evaluated answers (0: off)", COUNT)
    repetition_penalty: float = knob("repetition penalty of the evaluated answers (1: none)", "(0, inf)")
    self_instructed: int = knob("size of the held-out self-instructed split: instructions the base model writes "
                                "before the loop, which no iteration trains on and every point answers; 0: off", COUNT)
    self_samples: int = knob("answers per instruction of the held-out split", POSITIVE)


@dataclass(frozen=True)
class RegressionConfig:
    """General ability after the final fine-tune (the paper: MMLU unchanged), base and final model alike."""

    tasks: list[str] = knob("lm-eval tasks, a verdict each ([]: off; offline: [selflen_mini_mc]; online: [mmlu])")
    limit: int | None = knob("documents per task; null: all", POSITIVE)


MOVED = {
    "instruct.max_new_tokens": "length.instruct_tokens",
    "generate.max_new_tokens": "length.generate_tokens",
    "extend.max_new_tokens": "length.extend_tokens",
    "evaluate.max_new_tokens": "length.evaluate_tokens",
    "length_control.rewrite_max_new_tokens": "length.rewrite_tokens",
    "length_control.min_words": "length.pool_min_words",
    "length_control.max_words": "length.pool_max_words",
    "generate.length_biased": "select.length_biased_responses",
    "extend.length_biased": "select.length_biased_extensions",
    "select.length_biased": "select.length_biased_responses and select.length_biased_extensions",
    "evaluate.regression_tasks": "regression.tasks",
    "evaluate.regression_limit": "regression.limit",
}
"""Keys that moved to the group of the stage that reads them (named in the error a moved key raises)."""
