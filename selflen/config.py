"""Typed schemas behind the YAML in ``conf/`` and the validation that runs before anything is written.

Values live in YAML; these dataclasses give every key a type, a default and one line of meaning. A bad value
stops the run with one line naming the key, the value and what is allowed (``ConfigError``)."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from selflen import embedded, env
from selflen.benchmark_files import BENCHMARKS
from selflen.groups import (
    EvaluateConfig,
    ExtendConfig,
    FinetuneConfig,
    GenerateConfig,
    InstructConfig,
    LengthConfig,
    LengthControlConfig,
    RegressionConfig,
    SelectConfig,
    SftDataConfig,
)
from selflen.models import merges_adapters
from selflen.schema import SchemaError, build
from selflen.text.counting import COUNTERS
from selflen.text.filters import NGRAM_TOKENIZERS
from selflen.text.rules import RULES
from selflen.text.split import SPLIT_STRATEGIES

CONF_DIR = Path(__file__).resolve().parent / "conf"  # shipped inside the package


class ConfigError(ValueError):
    """A config value that cannot run. ``str(err)`` is a single line meant for the user."""


@dataclass
class ModelConfig:
    name: str = "HuggingFaceTB/SmolLM2-135M-Instruct"  # identity recorded in records, cards and W&B
    source: str = "embedded"  # embedded | hub | local | tiny
    path: str | None = "smollm2_135m"  # hub id, local folder, or the key in selflen/embedded.py (embedded)
    dtype: str = "float32"  # float32 | bfloat16 | float16 | auto
    max_model_len: int = 8192  # context used by the engines
    chat_format: str | None = "chatml"  # chatml | llama3: template given to a tiny stand-in of this model
    system_prompt: str | None = None  # prepended as a system message when set
    trust_remote_code: bool = False  # explicit opt-in only
    revision: str | None = None


@dataclass
class BackendConfig:
    name: str = "hf"  # hf | vllm | openai
    device: str = "auto"  # hf: auto | cpu | cuda
    batch_size: int = 16  # hf: rows per forward batch
    gpu_memory_utilization: float = 0.85  # vllm
    tensor_parallel_size: int = 1  # vllm: devices per engine replica
    data_parallel_size: int = 1  # vllm: engine replicas, each in its own process on its own devices (1 = in-process)
    sleep_mode: bool = False  # vllm on CUDA: sleep (weights to CPU) instead of closing before training
    enforce_eager: bool = True  # vllm: skip graph capture/compilation (faster start)
    max_lora_rank: int = 64  # vllm: must be >= finetune.lora.r
    cpu_kvcache_gb: int = 2  # vllm on CPU: VLLM_CPU_KVCACHE_SPACE
    dtype: str | None = None  # vllm: engine dtype (null = model.dtype); bf16_if_supported = bf16 on CPUs with it
    single_process: bool = True  # vllm: engine core in this process (no busy-polling second process on CPU)
    cpu_fast_paths: bool = True  # vllm on CPU, single_process: C++ norm/SwiGLU kernels, sparse penalties, top-k mask
    max_num_seqs: int | None = None  # vllm: sequences per step (null = vLLM's default)
    max_num_batched_tokens: int | None = 32768  # vllm: tokens per step; above a call's prompt total on CPU
    merge_adapters: str = "auto"  # vllm: serve LoRA adapters merged into model copies (auto = on CPU) | always | never
    base_url: str = "http://127.0.0.1:8000/v1"  # openai
    api_key_env: str = "OPENAI_API_KEY"  # openai: name of the env var holding the key (never the key)
    concurrency: int = 8  # openai: requests in flight
    timeout_s: float = 600.0  # openai: per request
    max_retries: int = 4  # openai: retries with exponential backoff


@dataclass
class LanguageConfig:
    name: str = "en"
    end_punct: str | None = ".!?\"')]}>`*\u201d\u2019"  # allowed last characters; null disables the rule
    ngram_n: int = 10  # repeated n-gram window; 0 disables
    ngram_tokenizer: str = "whitespace"  # whitespace | cjk
    meta_words: list[str] = field(default_factory=lambda: ["revised", "revision", "response", "version", "paragraph"])
    counter: str = "longen"  # word counter used for every length rule
    line_joiner: str = "\n"  # joins kept lines in the Extender's outline after line removal (reference zh: "\n\n")
    instruction_label: str = "Instruction"  # self-instruct transcript label ("指令" in zh)
    rules: str = "selflen"  # selflen | reference: the reference's end punctuation, meta words and substring match


@dataclass
class SplitConfig:
    strategy: str = "paragraph_half"  # paragraph_half | sentence_half | word_ratio
    ratio: float = 0.5  # word_ratio: fraction of words in the first part


@dataclass
class SamplingConfig:
    """Decoding shared by every generating stage (the reference uses one setting for all calls)."""

    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    repetition_penalty: float = 1.1
    stop: list[str] = field(default_factory=lambda: ["\n\n---", "\n\n\n", "\n---", "---"])  # the reference's


@dataclass
class IterationsConfig:
    count: int = 1  # macro-iterations (group options one, two, three; any count: iterations.count=N)


@dataclass
class LaunchConfig:
    """How fine-tuning runs (``selflen.launch``): in this process, or launched by accelerate on N processes."""

    name: str = "single"  # inprocess | single | ddp | fsdp | zero3 | zero3_offload
    launcher: str = "accelerate"  # accelerate (a subprocess that frees its devices) | inprocess
    num_processes: int = 1  # trainer processes: GPUs, or CPU processes over gloo
    main_process_port: int = 0  # 0 = a free port
    accelerate: dict[str, Any] = field(default_factory=lambda: {"distributed_type": "NO"})  # accelerate config
    deepspeed: dict[str, Any] | None = None  # DeepSpeed JSON ("auto" values filled from finetune.*)
    env: dict[str, str] = field(default_factory=dict)  # extra environment of the trainer processes


@dataclass
class LoggerConfig:
    name: str = "wandb"  # wandb | none
    project: str = "selflen"
    entity: str | None = None
    mode: str = "auto"  # auto (online when a W&B API key is configured, else offline) | offline | online | disabled
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    samples: int = 8  # rows in the sample table


@dataclass
class PathsConfig:
    root: str = "."
    run_dir: str = "."  # Hydra's output dir
    cache_dir: str = "~/.cache/selflen"  # converted and tiny models only
    data_dir: str | None = None  # benchmark files (LonGen, LongBench-Write); null = auto
    fork_from: str | None = None  # a finished run whose iter_0 and iter_1 data stages this run starts from


@dataclass
class TrainConfig:
    """The whole run. Stage groups (``selflen.groups``) take their values from YAML only; the other groups keep
    their defaults here, since their options (``backend=hf|vllm|openai``) each set only their own keys."""

    length: LengthConfig
    instruct: InstructConfig
    generate: GenerateConfig
    extend: ExtendConfig
    select: SelectConfig
    sft_data: SftDataConfig
    finetune: FinetuneConfig
    length_control: LengthControlConfig
    evaluate: EvaluateConfig
    regression: RegressionConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    iterations: IterationsConfig = field(default_factory=IterationsConfig)
    seed: int = 0
    online: bool | None = None  # null: like the hub tools; true: check the hub answers first; false: force offline
    redo: list[str] = field(default_factory=list)  # stages to recompute (a name: every iteration; or iter_2/extend)
    experiment: str | None = None  # name of the experiment file, for grouping
    debug: str | None = None


CHOICES: dict[str, tuple[Any, ...]] = {
    "model.source": ("embedded", "hub", "local", "tiny"),
    "model.dtype": ("float32", "bfloat16", "float16", "auto"),
    "backend.dtype": (None, "float32", "bfloat16", "float16", "auto", "bf16_if_supported"),
    "model.chat_format": (None, "chatml", "llama3"),
    "backend.name": ("hf", "vllm", "openai"),
    "backend.device": ("auto", "cpu", "cuda"),
    "backend.merge_adapters": ("auto", "always", "never"),
    "language.ngram_tokenizer": NGRAM_TOKENIZERS,
    "language.counter": COUNTERS,
    "split.strategy": SPLIT_STRATEGIES,
    "instruct.pool": ("growing", "seeds"),
    "select.length_unit": ("chars", "words"),
    "language.rules": RULES,
    "instruct.judge_parse": RULES,
    "extend.keep_rule": RULES,
    "sft_data.line_removal": RULES,
    "finetune.method": ("lora", "full"),
    "finetune.lineage": ("continue", "fresh"),
    "finetune.batching": ("bucketed", "group_by_length", "random"),
    "launch.launcher": ("accelerate", "inprocess"),
    "length_control.rewrite": ("llm", "template"),
    "logger.name": ("wandb", "none"),
    "logger.mode": ("auto", "offline", "online", "disabled"),
    "evaluate.benchmark": BENCHMARKS,
}
# key -> (low, high, low_open, high_open); None means unbounded on that side
RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "iterations.count": (1, None, False, True),
    "split.ratio": (0, 1, True, True),
    "sampling.top_p": (0, 1, True, False),
    "sampling.temperature": (0, None, False, True),
    "instruct.count": (1, None, False, True),
    "instruct.attempts": (1, None, False, True),
    "instruct.dedup_threshold": (0, 1, True, False),
    "generate.samples": (1, None, False, True),
    "generate.attempts": (0, None, False, True),
    "extend.extensions": (1, None, False, True),
    "extend.rounds": (1, None, False, True), "extend.attempts": (1, None, False, True),
    "extend.retries": (0, None, False, True), "extend.min_ratio": (1, None, False, True),
    "extend.keep_fraction": (0, 1, True, False),
    "select.dedup_threshold": (0, 1, True, False),
    "sft_data.p_keep_line": (0, 1, True, False),
    "finetune.learning_rate": (0, None, True, True), "finetune.epochs": (0, None, True, True),
    "finetune.batch_size": (1, None, False, True), "finetune.lora.r": (1, None, False, True),
    "launch.num_processes": (1, None, False, True), "length_control.collect": (0, None, False, True),
    "length.evaluate_tokens": (1, None, False, True), "evaluate.self_instructed": (0, None, False, True),
    "evaluate.self_samples": (1, None, False, True), "backend.gpu_memory_utilization": (0, 1, True, False),
    "backend.batch_size": (1, None, False, True), "backend.concurrency": (1, None, False, True),
    "backend.tensor_parallel_size": (1, None, False, True), "backend.data_parallel_size": (1, None, False, True),
    # every other numeric knob, so a value that cannot run stops here, before any folder is written
    **dict.fromkeys(["length.instruct_tokens", "length.generate_tokens", "length.extend_tokens",
                     "length.rewrite_tokens", "length.pool_max_words", "instruct.max_words", "instruct.pool_reset",
                     "finetune.grad_accum", "finetune.max_length", "finetune.save_steps", "finetune.logging_steps",
                     "evaluate.n_per_cell", "model.max_model_len", "backend.max_lora_rank", "backend.cpu_kvcache_gb",
                     "backend.max_num_seqs", "backend.max_num_batched_tokens"], (1, None, False, True)),
    **dict.fromkeys(["length.pool_min_words", "instruct.judge_min_words", "instruct.min_words", "select.min_items",
                     "instruct.judge_temperature", "evaluate.temperature", "evaluate.top_k", "sampling.top_k",
                     "backend.max_retries", "language.ngram_n", "logger.samples", "seed"], (0, None, False, True)),
    **dict.fromkeys(["finetune.lora.alpha", "length_control.epochs", "evaluate.repetition_penalty",
                     "sampling.repetition_penalty", "backend.timeout_s"], (0, None, True, True)),
    "finetune.lora.dropout": (0, 1, False, True), "finetune.warmup_ratio": (0, 1, False, False),
    "evaluate.top_p": (0, 1, True, False), "launch.main_process_port": (0, 65535, False, False),
}


OFF_WHEN_NULL = {"instruct.dedup_threshold", "select.dedup_threshold",  # null turns the rule off
                 "instruct.pool_reset", "backend.max_num_seqs", "backend.max_num_batched_tokens"}  # null: no limit


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _describe_range(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    return f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


def check(cfg: TrainConfig) -> None:
    """Raise ``ConfigError`` for the first value that cannot run (choices, ranges, cross-field rules)."""
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not allowed; choose one of {', '.join(map(str, allowed))}")
    for key, (lo, hi, lo_open, hi_open) in RANGES.items():
        value = _get(cfg, key)
        if value is None and key in OFF_WHEN_NULL:
            continue
        bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
        bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
        if bad_lo or bad_hi:
            raise ConfigError(f"{key}={value!r} is out of range; allowed {_describe_range(lo, hi, lo_open, hi_open)}")
    if cfg.model.source in ("hub", "local") and not cfg.model.path:
        raise ConfigError(
            f"model.path is missing for model.source={cfg.model.source}; set model.path=<hub id or folder>"
        )
    if cfg.model.source == "embedded":
        try:
            embedded.lookup(cfg.model.path)
        except embedded.WeightsError as err:
            raise ConfigError(str(err)) from None
    if cfg.model.source == "local" and not Path(cfg.model.path).expanduser().exists():
        raise ConfigError(f"model.path={cfg.model.path!r} does not exist; point it at a model folder with config.json")
    if cfg.instruct.min_words >= cfg.instruct.max_words:
        raise ConfigError("instruct.min_words must be < instruct.max_words")
    if cfg.length.pool_min_words >= cfg.length.pool_max_words:
        raise ConfigError("length.pool_min_words must be < length.pool_max_words")
    unknown = set(cfg.length_control.mix) - {"about", "range", "above", "below"}
    if unknown or not any(v > 0 for v in cfg.length_control.mix.values()):
        raise ConfigError(
            f"length_control.mix={dict(cfg.length_control.mix)} needs weights for about/range/above/below"
        )
    if (
        cfg.backend.name == "vllm"
        and cfg.finetune.method == "lora"
        and cfg.backend.max_lora_rank < cfg.finetune.lora.r
        and not merges_adapters(cfg.backend)
    ):
        raise ConfigError(
            f"backend.max_lora_rank={cfg.backend.max_lora_rank} < finetune.lora.r={cfg.finetune.lora.r}; raise it"
        )
    _check_launch(cfg)
    if cfg.finetune.method == "full" and cfg.backend.name == "openai":
        raise ConfigError(
            "finetune.method=full needs backend=hf or backend=vllm (a server cannot load new full weights at run time)"
        )
    if cfg.backend.name == "vllm":
        check_vllm_devices(cfg.backend)


def check_vllm_devices(backend: BackendConfig) -> None:
    """On a GPU machine, the replicas x devices per replica must fit on the visible GPUs (CPU splits its cores)."""
    dp, tp = backend.data_parallel_size, backend.tensor_parallel_size
    if dp * tp == 1:
        return
    gpus = env.visible_gpus()
    if gpus and dp * tp > len(gpus):
        raise ConfigError(
            f"backend.data_parallel_size={dp} x backend.tensor_parallel_size={tp} needs {dp * tp} GPUs but "
            f"{len(gpus)} are visible; lower one of them"
        )


def _check_launch(cfg: TrainConfig) -> None:
    la = cfg.launch
    if la.launcher == "inprocess" and la.num_processes != 1:
        raise ConfigError(f"launch.num_processes={la.num_processes} needs launch.launcher=accelerate "
                          "(in-process training is one process); e.g. launch=ddp")
    kind = la.accelerate.get("distributed_type", "NO")
    if kind == "NO" and la.num_processes > 1:
        raise ConfigError(f"launch.accelerate.distributed_type=NO runs one process, not launch.num_processes="
                          f"{la.num_processes}; use launch=ddp, fsdp or zero3")
    if la.accelerate.get("mixed_precision", "no") != "no":
        raise ConfigError(f"launch.accelerate.mixed_precision={la.accelerate['mixed_precision']!r}: the training "
                          "precision is finetune.bf16 (one key for every launch); remove it and set finetune.bf16")
    if (kind == "DEEPSPEED") != (la.deepspeed is not None):
        raise ConfigError("launch.deepspeed (the DeepSpeed JSON) goes with launch.accelerate.distributed_type="
                          f"DEEPSPEED, and only with it (got {kind}); use launch=zero3 or launch=zero3_offload")


SWEEP_ID_IGNORES = ("redo", "logger", "logger.mode", "hydra")
"""Overrides that do not change what a sweep computes, so re-running with them resumes the same sweep folder."""


def sweep_id(overrides: Any) -> str:
    """A sweep folder name from the command line's task overrides: readable, plus a hash of all of them, so the
    same ``-m`` command always lands (and resumes) in the same folder.

    >>> sweep_id(["model=llama3,qwen2", "redo=[extend]"]) == sweep_id(["model=llama3,qwen2"])
    True
    >>> sweep_id(["debug=smoke", "model=llama3,qwen2"])[:31]
    'model=llama3,qwen2_debug=smoke-'
    """
    import hashlib
    import re

    kept = sorted(str(o) for o in (overrides or [])
                  if str(o).lstrip("+~").partition("=")[0].split(".")[0] not in SWEEP_ID_IGNORES)
    swept_first = sorted(kept, key=lambda o: ("," not in o, o))  # the swept axes name the folder
    readable = re.sub(r"[^A-Za-z0-9=,._+-]+", "_", "_".join(swept_first))[:48] or "default"
    return f"{readable}-{hashlib.sha256(chr(0).join(kept).encode()).hexdigest()[:8]}"


SWEEP_ID_ENV = "SELFLEN_SWEEP_ID"


def pinned_sweep_id(overrides: Any) -> str:
    """``sweep_id`` of the ``-m`` command, pinned for its jobs.

    Hydra resolves ``hydra.sweep.dir`` first in the sweep's own config (the command line, ``model=llama3,qwen2``)
    and again in each job's config (``model=llama3``); the first value is kept in ``$SELFLEN_SWEEP_ID`` so every
    job of the command — in this process or in a launcher's child process that inherits the environment — lands
    in the same folder."""
    pinned = os.environ.get(SWEEP_ID_ENV)
    if pinned:
        return pinned
    value = sweep_id(overrides)
    os.environ[SWEEP_ID_ENV] = value
    return value


def register_resolvers() -> None:
    """Resolvers the config files use beyond the CLI's own (registered on import, so any entry point has them)."""
    if not OmegaConf.has_resolver("sweep_id"):
        OmegaConf.register_new_resolver("sweep_id", pinned_sweep_id)


register_resolvers()


def to_config(raw: DictConfig | dict, announce: bool = True) -> TrainConfig:
    """A composed Hydra config read into the typed schema and checked; errors become one-line ``ConfigError``.
    ``backend=auto`` becomes ``vllm`` or ``hf``, said in the log when ``announce``."""
    try:
        data = OmegaConf.to_container(raw, resolve=True) if isinstance(raw, DictConfig) else dict(raw)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{getattr(err, 'full_key', None) or '?'}: {str(err).splitlines()[0]}") from None
    try:
        cfg = build(TrainConfig, data)
    except SchemaError as err:
        raise ConfigError(str(err)) from None
    if cfg.backend.name == "auto":  # vLLM where installed, else transformers (conf/backend/auto.yaml)
        cfg.backend.name = env.auto_backend(logging.getLogger("selflen").info if announce else None)
    check(cfg)
    return cfg


def load(*overrides: str, announce: bool = False) -> TrainConfig:
    """The config ``python train.py <overrides>`` runs with (composed from ``conf/``, run folder "."): the values
    of every group come from its YAML, so tests and scripts start from what a user gets."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        raw = compose("train", overrides=list(overrides))
    raw.paths.root, raw.paths.run_dir = ".", "."
    return to_config(raw, announce=announce)


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return asdict(cfg)
