"""Step 4: fine-tune one role (``gen``, ``ext``, or ``final`` for the length-following model) on its SFT file,
into ``<stage>/adapter`` (LoRA) or ``<stage>/model`` (full fine-tuning).

Config group ``finetune``; the trainer is ``selflen.trainer.train`` (TRL ``SFTTrainer``, loss on the answer
only), run as a launched job (``selflen.launch``, config group ``launch``) or in this process. Lineage:
``continue`` starts iteration k from iteration k-1's adapter (the reference's cumulative adapter) or from its full
weights; ``fresh`` starts from the base model every time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from selflen.config import TrainConfig
from selflen.errors import SelflenError
from selflen.groups import FinetuneConfig
from selflen.integrity import redo_fix
from selflen.launch import LaunchSettings, TrainJob, run_job
from selflen.stages.common import StageResult
from selflen.stages.records import Drop
from selflen.store import LENGTH_FOLLOWER, RunLayout, Stage
from selflen.trainer import train


@dataclass(frozen=True)
class FinetuneSettings:
    role: str
    finetune: FinetuneConfig  # the group; the final fine-tune takes length_control.epochs as its epochs
    seed: int
    dtype: str  # the model's
    processes: int = 1  # trainer processes: the global batch is train.batch_size x train.grad_accum x processes
    init_adapter: str | None = None  # run-relative adapter folder training starts from (None: a new adapter)
    start_model: str | None = None  # run-relative full model folder training starts from (None: the base model)

    @property
    def output(self) -> str:
        return "adapter" if self.finetune.method == "lora" else "model"


@dataclass
class FinetuneInputs:
    data: Path  # the SFT file
    base_model_dir: Path
    layout: RunLayout
    on_log: Callable[[dict[str, float]], None] | None = None
    report_to: str = "none"  # "wandb" only while a W&B run is open (the trainer logs lr, grad norm, throughput)
    on_train_begin: Callable[[], None] | None = None
    launch: LaunchSettings = field(default_factory=lambda: LaunchSettings(launcher="inprocess"))


def settings(cfg: TrainConfig, role: str, epochs: float | None = None) -> FinetuneSettings:
    f = cfg.finetune if epochs is None else replace(cfg.finetune, epochs=epochs)
    return FinetuneSettings(role=role, finetune=f, seed=cfg.seed, dtype=cfg.model.dtype,
                            processes=cfg.launch.num_processes)


def launch_settings(cfg: TrainConfig) -> LaunchSettings:
    """How the trainer is launched (the ``launch`` group): not part of the stage's identity, the same training
    launched another way is the same stage."""
    c = cfg.launch
    return LaunchSettings(name=c.name, launcher=c.launcher, num_processes=c.num_processes,
                          main_process_port=c.main_process_port, accelerate=dict(c.accelerate),
                          deepspeed=dict(c.deepspeed) if c.deepspeed is not None else None,
                          env={k: str(v) for k, v in c.env.items()})


def with_start(s: FinetuneSettings, layout: RunLayout, previous: Path | None) -> FinetuneSettings:
    """Where training starts: ``previous`` (what the role's last training produced) under ``continue`` lineage —
    its adapter is trained further, or its full weights are the starting model — else the base model."""
    if previous is None or (s.finetune.lineage != "continue" and s.role != LENGTH_FOLLOWER):
        return s
    if previous.name == "adapter":
        return replace(s, init_adapter=layout.rel(previous))
    return replace(s, start_model=layout.rel(previous))


def run(stage: Stage, inputs: FinetuneInputs, s: FinetuneSettings, engine: None = None) -> StageResult:
    """Train; a fine-tune on no example is an error, not a finished stage (a model that did not change would pass
    for a trained one)."""
    check_examples(stage, inputs.data)
    root = inputs.layout.root
    model_dir = root / s.start_model if s.start_model else inputs.base_model_dir
    init_adapter = root / s.init_adapter if s.init_adapter else None
    if inputs.launch.launcher == "inprocess":
        stats = train(model_dir, inputs.data, stage.dir / s.output, s.finetune, seed=s.seed, init_adapter=init_adapter,
                      on_log=inputs.on_log, dtype=s.dtype, report_to=inputs.report_to,
                      on_train_begin=inputs.on_train_begin)
    else:  # the launched trainer reports through its log file; the W&B run stays in this process
        if inputs.on_train_begin:
            inputs.on_train_begin()
        job = TrainJob(model_dir=str(model_dir), data=str(inputs.data), out_dir=str(stage.dir / s.output),
                       settings=asdict(s.finetune), seed=s.seed, dtype=s.dtype,
                       init_adapter=str(init_adapter) if init_adapter else None)
        stats = run_job(job, stage.dir / "launch", inputs.launch, inputs.on_log)
    if stats.get("trained") is False:
        raise SelflenError(f"{stage.name}: all {stats['examples']} examples of {inputs.data} are longer than "
                           "finetune.max_length allows; raise it (or shorten the length.* budgets) and re-run")
    return StageResult(
        counts={"examples": stats["examples"], "dropped_too_long": stats["dropped_too_long"]},
        drops={Drop.TOO_LONG: stats["dropped_too_long"]} if stats["dropped_too_long"] else {},
        metrics={f"train/{s.role}/final_loss": stats["train_loss"]} if stats.get("train_loss") is not None else {},
        extra={"train": stats, "settings": asdict(s)},
    )


def check_examples(stage: Stage, data: Path) -> None:
    """Stop with one line when the SFT file holds no example (every record upstream was dropped)."""
    try:
        with open(data, "rb") as f:
            if any(line.strip() for line in f):
                return
    except FileNotFoundError:
        raise SelflenError(f"{stage.name}: its training data {data} is missing; {redo_fix(data.parent)}") from None
    raise SelflenError(
        f"{stage.name}: no training example in {data}: the stages before it dropped every record (their drops are "
        "in their done.json); change what dropped them (the length.* budgets, the filters, generate.attempts) and "
        "re-run"
    )


def trained_folder(stage: Stage, s: FinetuneSettings) -> Path | None:
    """The trained folder of a finished finetune stage, None when it trained nothing."""
    out = stage.dir / s.output
    return out if out.exists() else None
