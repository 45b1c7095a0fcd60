"""Experiment tracking: W&B (online when an API key is configured, as W&B itself does) and a null logger with the
same methods.

Call sites never branch on "is logging on". ``open_logger`` is a context manager that always finishes the
run — with exit code 1 when the body raises — so a failed job of a multirun never leaves a W&B run open.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|passwd|auth)", re.IGNORECASE)
REDACTED = "***"


def redact(obj: Any) -> Any:
    """Replace the values of secret-looking keys, recursively.

    >>> redact({"backend": {"api_key": "sk-1", "api_key_env": "OPENAI_API_KEY"}, "lr": 1})
    {'backend': {'api_key': '***', 'api_key_env': 'OPENAI_API_KEY'}, 'lr': 1}
    """
    if isinstance(obj, dict):
        return {k: (REDACTED if _is_secret(k, v) else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def _is_secret(key: str, value: Any) -> bool:
    # *_env keys hold the NAME of an environment variable, not the secret itself
    return bool(SECRET_KEY.search(str(key))) and not str(key).endswith("_env") and isinstance(value, str | int)


class NullLogger:
    """Same methods as ``WandbLogger``; does nothing. Also records what it was given, for tests."""

    run_id = ""  # a W&B run's id; artifact names carry it, so two runs of one project never share a name

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.summary_data: dict[str, Any] = {}
        self.artifacts: list[dict[str, Any]] = []
        self.tables: dict[str, list[list[Any]]] = {}
        self.used: list[str] = []
        self._pending_inputs: list[str] = []

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.history.append(dict(metrics))

    def log_table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.tables[key] = [list(columns), *[list(r) for r in rows]]

    def log_image(self, key: str, path: str | Path) -> None:
        pass

    def log_artifact(self, name: str, type: str, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
        """Version ``path`` (a file or folder) as artifact ``name`` of ``type`` (dataset / model / evaluation)."""
        self.artifacts.append({"name": artifact_name(name, self.run_id), "type": type, "path": str(path),
                               "metadata": dict(metadata or {}), "inputs": list(self._pending_inputs)})
        self._pending_inputs.clear()

    def use_artifact(self, name: str) -> None:
        """Declare artifact ``name`` an input of what is logged next (the lineage edge)."""
        self._pending_inputs.append(artifact_name(name, self.run_id))
        self.used.append(artifact_name(name, self.run_id))

    def define_metrics(self, step_metrics: dict[str, str]) -> None:
        """Chart ``glob -> step metric`` (e.g. ``train/gen/*`` against ``train/gen/step``)."""

    @property
    def active(self) -> bool:
        """Whether a W&B run is open (so the trainer's own W&B integration may report into it)."""
        return False

    def summary(self, values: dict[str, Any]) -> None:
        self.summary_data.update(values)

    @property
    def location(self) -> str | None:
        """Where the run's record is: its URL online, its local folder offline (``wandb sync`` uploads it)."""
        return None

    def finish(self, exit_code: int = 0) -> None:
        pass


class WandbLogger(NullLogger):
    """A W&B run named and grouped from the config; the resolved config is logged with secrets redacted."""

    def __init__(
        self,
        *,
        project: str,
        name: str,
        group: str | None,
        tags: Sequence[str],
        config: dict[str, Any],
        run_dir: Path,
        mode: str = "offline",
        entity: str | None = None,
        job_type: str = "loop",
    ) -> None:
        super().__init__()
        import wandb

        if mode == "online" and os.environ.get("WANDB_MODE") == "offline":
            os.environ["WANDB_MODE"] = "online"
        run_dir.mkdir(parents=True, exist_ok=True)
        self._wandb = wandb
        self.run = wandb.init(
            project=project,
            entity=entity,
            name=name,
            group=group,
            tags=list(tags),
            job_type=job_type,
            config=redact(config),
            dir=str(run_dir),
            mode=mode,
            reinit="finish_previous",
            id=_persisted_id(run_dir),
            resume="allow",
        )
        self.run_id = self.run.id
        self._logged: dict[str, Any] = {}  # artifact name -> the Artifact this run logged (exact lineage online)

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        super().log(metrics, step)
        self.run.log(metrics)

    def log_table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        super().log_table(key, columns, rows)
        self.run.log({key: self._wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def log_image(self, key: str, path: str | Path) -> None:
        self.run.log({key: self._wandb.Image(str(path))})

    def log_artifact(self, name: str, type: str, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
        inputs = list(self._pending_inputs)
        super().log_artifact(name, type, path, metadata)
        path = Path(path)
        # offline W&B cannot resolve used artifacts, so each artifact also names its inputs in its metadata
        art = self._wandb.Artifact(artifact_name(name, self.run_id), type=type,
                                   metadata={**(metadata or {}), "inputs": inputs})
        if path.is_dir():
            art.add_dir(str(path))
        else:
            art.add_file(str(path))
        self._logged[art.name] = self.run.log_artifact(art)

    def use_artifact(self, name: str) -> None:
        super().use_artifact(name)
        if self.run.settings._offline:
            return  # wandb refuses use_artifact offline; the edge is in the next artifact's metadata
        own = artifact_name(name, self.run_id)
        try:  # the version this run logged; from an earlier session of the same run: its name is this run's only
            self.run.use_artifact(self._logged.get(own) or f"{own}:latest")
        except Exception as err:  # not logged yet (e.g. an input from before logging was on)
            log.info("use_artifact(%s) skipped: %s", name, err)

    def define_metrics(self, step_metrics: dict[str, str]) -> None:
        for step in set(step_metrics.values()):
            self.run.define_metric(step, hidden=True)
        for glob, step in step_metrics.items():
            self.run.define_metric(glob, step_metric=step)

    @property
    def active(self) -> bool:
        return self._wandb.run is self.run

    @property
    def location(self) -> str | None:
        if self.run.settings._offline:
            return f"{Path(self.run.dir).parent} (offline: wandb sync uploads it)"
        return self.run.url

    def summary(self, values: dict[str, Any]) -> None:
        super().summary(values)
        self.run.summary.update(values)

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


def wandb_key_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether a W&B API key is configured: ``WANDB_API_KEY``, or the netrc entry ``wandb login`` writes for the W&B
    host (``WANDB_BASE_URL``, else api.wandb.ai) in ``$NETRC`` or ``~/.netrc``.

    >>> wandb_key_configured({"WANDB_API_KEY": "x" * 40}), wandb_key_configured({"NETRC": "/nonexistent"})
    (True, False)
    """
    import netrc
    from urllib.parse import urlsplit

    env = os.environ if environ is None else environ
    if env.get("WANDB_API_KEY", "").strip():
        return True
    host = urlsplit(env.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    path = Path(env.get("NETRC") or Path(env.get("HOME") or Path.home()) / ".netrc").expanduser()
    try:
        entry = netrc.netrc(str(path)).authenticators(host) if path.is_file() else None
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def wandb_mode(mode: str, online: bool | None = None, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The W&B mode a run logs in, and why. ``logger.mode`` offline/online/disabled is taken as it is (``online``
    is refused under ``online=false``); ``auto`` follows W&B's own convention: offline when ``online=false`` or
    ``WANDB_MODE`` says offline/disabled, online when an API key is configured, else offline.

    >>> wandb_mode("auto", None, {"WANDB_API_KEY": "k"}), wandb_mode("auto", False, {"WANDB_API_KEY": "k"})[0]
    (('online', 'a W&B API key is configured'), 'offline')
    >>> wandb_mode("auto", None, {"NETRC": "/nonexistent"}), wandb_mode("offline", None, {"WANDB_API_KEY": "k"})[0]
    (('offline', 'no W&B API key (WANDB_API_KEY or `wandb login`)'), 'offline')
    """
    env = os.environ if environ is None else environ
    if mode == "online" and online is False:
        return "offline", "logger.mode=online, but online=false forces offline"
    if mode != "auto":
        return mode, f"logger.mode={mode}"
    if online is False:
        return "offline", "online=false"
    forced = env.get("WANDB_MODE", "").strip().lower()
    if forced in ("offline", "disabled", "dryrun"):
        return ("disabled" if forced == "disabled" else "offline"), f"WANDB_MODE={forced}"
    if wandb_key_configured(env):
        return "online", "a W&B API key is configured"
    return "offline", "no W&B API key (WANDB_API_KEY or `wandb login`)"


def artifact_name(name: str, run_id: str = "") -> str:
    """A W&B artifact name from a stage name and the run's id (``iter_1/sft_data`` of run ``3aca9403`` ->
    ``iter_1-sft_data-3aca9403``), so the runs of one sweep in one project never share an artifact name.

    >>> artifact_name("iter_1/finetune_gen"), artifact_name("final/finetune", "3aca9403")
    ('iter_1-finetune_gen', 'final-finetune-3aca9403')
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")
    return f"{stem}-{run_id}" if run_id else stem


STEP_METRICS = {"train/gen/*": "train/gen/step", "train/ext/*": "train/ext/step", "train/final/*": "train/final/step",
                "train/*": "train/global_step", "*": "iteration"}
"""The chart axes: each role's training curve against its own step, the trainer's own metrics (lr, grad_norm,
throughput from the transformers W&B integration) against its global step, every stage metric against the
iteration."""


def hydra_job_context() -> dict[str, Any]:
    """The sweep this job belongs to (its folder name, the W&B group) and the job's own overrides, from Hydra's
    runtime config; empty outside a Hydra job. A single run (no ``-m``) has no sweep."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return {}
        hc = HydraConfig.get()
        out: dict[str, Any] = {"overrides": [str(o) for o in hc.overrides.task]}
        if hc.mode == RunMode.MULTIRUN:
            out["sweep"] = Path(str(hc.sweep.dir)).name
            out["override_dirname"] = str(hc.job.override_dirname)
        return out
    except Exception as err:  # never let bookkeeping stop a run
        log.debug("no Hydra job context: %s", err)
        return {}


def run_tags(tags: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """W&B tags: the configured ones plus the job's overrides (W&B caps a tag at 64 characters).

    >>> run_tags(["x"], ["model=qwen2", "x"])
    ['x', 'model=qwen2']
    """
    return list(dict.fromkeys(str(t)[:64] for t in [*tags, *overrides]))


def _persisted_id(run_dir: Path) -> str:
    """One W&B run id per run directory, so a resumed run continues the same W&B run."""
    path = run_dir / "wandb_id"
    if path.exists():
        return path.read_text().strip()
    import secrets

    run_id = secrets.token_hex(4)
    path.write_text(run_id)
    return run_id


@contextlib.contextmanager
def open_logger(
    name: str,
    *,
    run_dir: Path,
    config: dict[str, Any],
    project: str = "selflen",
    group: str | None = None,
    tags: Sequence[str] = (),
    mode: str = "auto",
    entity: str | None = None,
    online: bool | None = None,
    job_type: str = "loop",
) -> Iterator[NullLogger]:
    """Yield a logger for the run; finish it whatever happens inside the block. ``mode`` is ``logger.mode``
    (``wandb_mode`` resolves ``auto``)."""
    mode, why = wandb_mode(mode, online)
    if name != "none" and mode != "disabled":
        log.info("W&B logs %s: %s", mode, why)
    if name == "none" or mode == "disabled":
        logger: NullLogger = NullLogger()
    else:
        logger = WandbLogger(
            project=project,
            name=run_dir.name,
            group=group,
            tags=tags,
            config=config,
            run_dir=run_dir,
            mode=mode,
            entity=entity,
            job_type=job_type,
        )
    try:
        yield logger
    except BaseException:
        logger.finish(exit_code=1)
        raise
    logger.finish(exit_code=0)


def job_type(debug: str | None, experiment: str | None) -> str:
    """The W&B job type of a training run: what ran (``loop``, ``loop:<experiment>``, ``loop:smoke`` for
    ``debug=smoke``; the debug option wins).

    >>> job_type(None, "cpu_lengthen"), job_type("smoke", "cpu_lengthen"), job_type(None, None)
    ('loop:cpu_lengthen', 'loop:smoke', 'loop')
    """
    what = debug or experiment
    return f"loop:{what}"[:64] if what else "loop"
