"""The stage groups: one frozen dataclass per config group of a stage, which that stage receives whole.

The values live in YAML only (``conf/<group>/default.yaml``, and ``conf/length/*.yaml`` for the token budgets);
these classes give each key its type and carry no defaults, so a key missing from the YAML stops the load with its
name (``tests/unit/test_config.py`` checks that every YAML key has a field and every field a key). A stage's hash is
taken from its settings (``selflen.store.settings_identity``); a field marked ``NO_HASH`` does not shape the output
of the stage that receives the group (how often to checkpoint, whether the stage runs at all, or a value that reaches
the stage through a derived field).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

HASH_VERSION = 2
"""Part of every stage hash; bumped when the settings change shape (2: stages receive their groups whole)."""
NO_HASH = {"hash": False}
"""``field(metadata=NO_HASH)``: left out of the stage hash."""


def unhashed():  # a dataclass field
    return field(metadata=NO_HASH)


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


@dataclass(frozen=True)
class LengthConfig:
    """The length target: every stage's token budget and the length-following pool's word bounds (one place)."""

    instruct_tokens: int
    generate_tokens: int
    extend_tokens: int
    evaluate_tokens: int
    rewrite_tokens: int  # length control: the base model's rewrite of a query with its constraint
    pool_min_words: int  # length control pools answers with pool_min_words <= words < pool_max_words
    pool_max_words: int


@dataclass(frozen=True)
class InstructConfig:
    count: int
    attempts: int
    pool: str  # growing | seeds
    pool_reset: int | None
    judge: bool
    judge_temperature: float
    judge_min_words: int
    judge_parse: str  # selflen | reference
    min_words: int
    max_words: int
    dedup_threshold: float | None  # null: no deduplication
    decontaminate: bool
    drop_truncated: bool


@dataclass(frozen=True)
class GenerateConfig:
    samples: int
    attempts: int
    drop_truncated: bool
    stop_loops: bool


@dataclass(frozen=True)
class ExtendConfig:
    extensions: int
    rounds: int
    attempts: int
    retries: int
    min_ratio: float
    keep_fraction: float
    keep_rule: str  # selflen | reference
    prefix_separator: str
    strip_meta: bool
    drop_truncated: bool
    stop_loops: bool
    hold_to_ratio: bool


@dataclass(frozen=True)
class SelectConfig:
    length_biased_responses: bool = unhashed()  # enters as SelectSettings.length_biased
    length_biased_extensions: bool = unhashed()
    length_unit: str  # chars | words
    min_items: int
    dedup_threshold: float | None


@dataclass(frozen=True)
class SftDataConfig:
    p_keep_line: float
    line_removal: str  # selflen | reference
    max_examples: int | None


@dataclass(frozen=True)
class LoraConfig:
    r: int
    alpha: int
    dropout: float
    target_modules: str


@dataclass(frozen=True)
class FinetuneConfig:
    method: str  # lora | full
    lineage: str  # continue | fresh
    lora: LoraConfig
    learning_rate: float
    epochs: float
    batch_size: int
    grad_accum: int
    warmup_ratio: float
    scheduler: str
    max_length: int
    batching: str  # bucketed | group_by_length | random
    save_steps: int = unhashed()
    logging_steps: int = unhashed()
    bf16: bool
    gradient_checkpointing: bool
    last_extender: bool = unhashed()  # whether the last iteration's Extender trains at all


@dataclass(frozen=True)
class LengthControlConfig:
    enabled: bool = unhashed()
    collect: int
    mix: dict[str, float]
    rewrite: str  # llm | template
    final_sft: bool = unhashed()
    epochs: float = unhashed()  # the final fine-tune's epochs (it reaches that stage as its finetune.epochs)


@dataclass(frozen=True)
class EvaluateConfig:
    enabled: bool = unhashed()
    base: bool = unhashed()  # whether iteration 0 (the base model) is evaluated
    benchmark: str
    languages: list[str]
    n_per_cell: int
    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float
    self_instructed: int
    self_samples: int


@dataclass(frozen=True)
class RegressionConfig:
    tasks: list[str]  # lm-eval tasks run on the base and the final model; empty = off
    limit: int | None  # documents per task (null = all)


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
