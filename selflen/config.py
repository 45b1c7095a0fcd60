"""Typed schemas behind the YAML in ``conf/`` and the validation that runs before anything is written.

Values live in YAML; these dataclasses give every key a type, a default, its meaning and what it allows
(``groups.knob``, read by ``CHOICES``, ``RANGES`` and ``python train.py --knobs``). A bad value stops the run with
one line naming the key, the value and what is allowed (``ConfigError``)."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from selflen import embedded, env
from selflen.groups import (
    COUNT,
    FRACTION,
    POSITIVE,
    EvaluateConfig,
    ExtendConfig,
    FinetuneConfig,
    GenerateConfig,
    InstructConfig,
    LengthConfig,
    LengthControlConfig,
    Range,
    RegressionConfig,
    SelectConfig,
    SftDataConfig,
    describe,
    knob,
    knobs,
    nullable,
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
    name: str = knob("the model's identity, recorded in records, cards and W&B",
                     default="HuggingFaceTB/SmolLM2-135M-Instruct")
    source: str = knob("where the weights come from", choices=("embedded", "hub", "local", "tiny"),
                       default="embedded")
    path: str | None = knob("hub id, local folder, or the key in selflen/embedded.py (embedded)",
                            default="smollm2_135m")
    dtype: str = knob("the weights' dtype", choices=("float32", "bfloat16", "float16", "auto"), default="float32")
    max_model_len: int = knob("context of the engines in tokens", POSITIVE, default=8192)
    chat_format: str | None = knob("the chat template given to a tiny stand-in of this model",
                                   choices=("chatml", "llama3"), default="chatml")
    system_prompt: str | None = knob("prepended as a system message when set", default=None)
    trust_remote_code: bool = knob("run the model repository's own code (explicit opt-in only)", default=False)
    revision: str | None = knob("the hub revision (null: the default branch)", default=None)


@dataclass
class BackendConfig:
    name: str = knob("the engine (auto: vllm where installed, else hf)", choices=("hf", "vllm", "openai"),
                     default="hf")
    device: str = knob("hf: where the model runs", choices=("auto", "cpu", "cuda"), default="auto")
    batch_size: int = knob("hf: rows per forward batch", POSITIVE, default=16)
    gpu_memory_utilization: float = knob("vllm: share of the GPU memory the engine takes", FRACTION, default=0.85)
    tensor_parallel_size: int = knob("vllm: devices per engine replica", POSITIVE, default=1)
    data_parallel_size: int = knob("vllm: engine replicas, each in its own process on its own devices (1: the engine "
                                   "in this process)", POSITIVE, default=1)
    sleep_mode: bool = knob("vllm on CUDA: sleep (weights to CPU, KV cache dropped) instead of closing before "
                            "training", default=False)
    enforce_eager: bool = knob("vllm: skip graph capture and compilation (a faster start)", default=True)
    max_lora_rank: int = knob("vllm: the largest adapter rank served; >= finetune.lora.r, smaller is cheaper",
                              POSITIVE, default=64)
    cpu_kvcache_gb: int = knob("vllm on CPU: KV cache in GB (VLLM_CPU_KVCACHE_SPACE)", POSITIVE, default=2)
    dtype: str | None = knob("vllm: the engine's dtype (null: model.dtype; bf16_if_supported: bf16 on CPUs with "
                             "native bf16, else fp32)",
                             choices=("float32", "bfloat16", "float16", "auto", "bf16_if_supported"), default=None)
    single_process: bool = knob("vllm: the engine core in this process (no busy-polling second process on CPU)",
                                default=True)
    cpu_fast_paths: bool = knob("vllm on CPU, single_process: C++ norm/SwiGLU kernels, a penalty over the seen "
                                "tokens, a top-k+top-p mask without a vocabulary sort (selflen/engines/vllm_cpu.py); "
                                "false: vLLM's own code paths", default=True)
    max_num_seqs: int | None = knob("vllm: sequences per step (null: vLLM's default)", POSITIVE, default=None)
    max_num_batched_tokens: int | None = knob("vllm: tokens per step; above a call's prompt total on CPU (null: no "
                                              "limit)", POSITIVE, default=32768)
    merge_adapters: str = knob("vllm: serve each trained adapter merged into a model copy, <run>/merged/ (auto: on "
                               "CPU, 2-3x faster decoding than per-request LoRA there)",
                               choices=("auto", "always", "never"), default="auto")
    base_url: str = knob("openai: the server's URL", default="http://127.0.0.1:8000/v1")
    api_key_env: str = knob("openai: name of the environment variable holding the key (never the key)",
                            default="OPENAI_API_KEY")
    concurrency: int = knob("openai: requests in flight", POSITIVE, default=8)
    timeout_s: float = knob("openai: seconds per request", "(0, inf)", default=600.0)
    max_retries: int = knob("openai: retries with exponential backoff", COUNT, default=4)


@dataclass
class LanguageConfig:
    name: str = knob("the language of prompts, seeds and benchmark rows", default="en")
    end_punct: str | None = knob("characters an answer may end on; null: the rule is off",
                                 default=".!?\"')]}>`*\u201d\u2019")
    ngram_n: int = knob("a repeated n-gram of this many tokens drops an answer; 0: off", COUNT, default=10)
    ngram_tokenizer: str = knob("how the n-gram rule cuts tokens", choices=NGRAM_TOKENIZERS, default="whitespace")
    meta_words: list[str] = knob("words that mark a meta-text line (Here is the revised version:)",
                                 default_factory=lambda: ["revised", "revision", "response", "version", "paragraph"])
    counter: str = knob("the word counter of every length rule", choices=COUNTERS, default="longen")
    line_joiner: str = knob("joins kept lines in the Extender's outline after line removal (reference zh: blank line)",
                            default="\n")
    instruction_label: str = knob("self-instruct transcript label (指令 in zh)", default="Instruction")
    rules: str = knob("selflen | reference: the reference's end punctuation, meta words and substring match",
                      choices=RULES, default="selflen")


@dataclass
class SplitConfig:
    strategy: str = knob("how an answer is cut before stage 1 of an extension", choices=SPLIT_STRATEGIES,
                         default="paragraph_half")
    ratio: float = knob("word_ratio: fraction of words in the first part", "(0, 1)", default=0.5)


@dataclass
class SamplingConfig:
    """Decoding shared by every generating stage (the reference uses one setting for all calls)."""

    temperature: float = knob("sampling temperature (0: greedy)", COUNT, default=0.7)
    top_p: float = knob("nucleus sampling", FRACTION, default=0.8)
    top_k: int = knob("top-k sampling (0: off)", COUNT, default=20)
    repetition_penalty: float = knob("repetition penalty (1: none)", "(0, inf)", default=1.1)
    stop: list[str] = knob("stop strings (the reference's: Markdown rules and triple newlines)",
                           default_factory=lambda: ["\n\n---", "\n\n\n", "\n---", "---"])


@dataclass
class IterationsConfig:
    count: int = knob("macro-iterations (reference: 3; options one, two, three, or iterations.count=N)", POSITIVE,
                      default=1)


@dataclass
class LaunchConfig:
    """How fine-tuning runs (``selflen.launch``): in this process, or launched by accelerate on N processes."""

    name: str = knob("the option's name: inprocess | single | ddp | fsdp | zero3 | zero3_offload", default="single")
    launcher: str = knob("how the trainer starts: accelerate (a subprocess that frees its devices) | inprocess",
                         choices=("accelerate", "inprocess"), default="accelerate")
    num_processes: int = knob("trainer processes: GPUs, or CPU processes over gloo", POSITIVE, default=1)
    main_process_port: int = knob("the launcher's port (0: a free port)", "[0, 65535]", default=0)
    accelerate: dict[str, Any] = knob("the accelerate config, written as the stage's launch/accelerate.yaml",
                                      default_factory=lambda: {"distributed_type": "NO"})
    deepspeed: dict[str, Any] | None = knob('the DeepSpeed JSON ("auto" values filled from finetune.*), written as '
                                            "launch/deepspeed.json and named in the accelerate config", default=None)
    env: dict[str, str] = knob("extra environment of the trainer processes", default_factory=dict)


@dataclass
class LoggerConfig:
    name: str = knob("where metrics go", choices=("wandb", "none"), default="wandb")
    project: str = knob("W&B project", default="selflen")
    entity: str | None = knob("W&B entity (null: your default)", default=None)
    mode: str = knob("auto: online when a W&B API key is configured (WANDB_API_KEY or wandb login), else offline",
                     choices=("auto", "offline", "online", "disabled"), default="auto")
    group: str | None = knob("W&B group (the experiment's name)", default=None)
    tags: list[str] = knob("W&B tags", default_factory=list)
    samples: int = knob("rows in the sample table", COUNT, default=8)


@dataclass
class PathsConfig:
    root: str = knob("the project folder (Hydra's runtime cwd)", default=".")
    run_dir: str = knob("the run folder (Hydra's output dir)", default=".")
    cache_dir: str = knob("converted and tiny models ($SELFLEN_CACHE)", default="~/.cache/selflen")
    data_dir: str | None = knob("benchmark files, LonGen and LongBench-Write ($SELFLEN_DATA_DIR; null: auto)",
                                default=None)
    fork_from: str | None = knob("a finished run whose iter_0 and iter_1 data stages (instruct..sft_data) this run "
                                 "copies first", default=None)


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
    seed: int = knob("the run's seed: sampling, selection, training", COUNT, default=0)
    online: bool | None = knob("null: like the hub tools (cache first, download what is missing when the hub "
                               "answers; W&B online with an API key); true: stop within seconds unless the hub "
                               "answers; false (or HF_HUB_OFFLINE=1): force offline", default=None)
    redo: list[str] = knob("stages to recompute (done, changed or unreadable): redo=[extend] (each iteration), "
                           "[iter_2/extend]", default_factory=list)
    experiment: str | None = knob("name of the experiment file, for grouping", default=None)
    debug: str | None = knob("the debug option in use (smoke)", default=None)


CHOICES: dict[str, tuple[Any, ...]] = {key: f.metadata["choices"] for key, _, f in knobs(TrainConfig)
                                       if f.metadata.get("choices")}
"""The allowed values of each text knob, read from its field (``groups.knob``); null passes where the type allows."""
RANGES: dict[str, Range] = {key: f.metadata["range"] for key, _, f in knobs(TrainConfig) if f.metadata.get("range")}
"""The interval of each numeric knob, read from its field; null passes where the type allows (an option turned off)."""
NULLABLE = {key for key, kind, _ in knobs(TrainConfig) if nullable(kind)}


def check(cfg: TrainConfig) -> None:
    """Raise ``ConfigError`` for the first value that cannot run (choices, ranges, cross-field rules)."""
    for key, allowed in CHOICES.items():
        value = attrgetter(key)(cfg)
        if value not in allowed and not (value is None and key in NULLABLE):
            null = " or null" if key in NULLABLE else ""
            raise ConfigError(f"{key}={value!r} is not allowed; choose one of {', '.join(map(str, allowed))}{null}")
    for key, (lo, hi, lo_open, hi_open) in RANGES.items():
        value = attrgetter(key)(cfg)
        if value is None and key in NULLABLE:
            continue
        bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
        bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
        if bad_lo or bad_hi:
            raise ConfigError(f"{key}={value!r} is out of range; allowed {describe(RANGES[key])}")
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
