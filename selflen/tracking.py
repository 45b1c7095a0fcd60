"""Experiment tracking: W&B (offline unless the user opts in) and a null logger with the same methods.

Call sites never branch on "is logging on". ``open_logger`` is a context manager that always finishes the
run — with exit code 1 when the body raises — so a failed job of a multirun never leaves a W&B run open.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
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

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.summary_data: dict[str, Any] = {}

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.history.append(dict(metrics))

    def log_table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        pass

    def log_image(self, key: str, path: str | Path) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        self.summary_data.update(values)

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
        job_type: str = "train",
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

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        super().log(metrics, step)
        self.run.log(metrics)

    def log_table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.run.log({key: self._wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def log_image(self, key: str, path: str | Path) -> None:
        self.run.log({key: self._wandb.Image(str(path))})

    def summary(self, values: dict[str, Any]) -> None:
        super().summary(values)
        self.run.summary.update(values)

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


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
    mode: str = "offline",
    entity: str | None = None,
    online: bool = False,
) -> Iterator[NullLogger]:
    """Yield a logger for the run; finish it whatever happens inside the block."""
    if name == "none" or mode == "disabled":
        logger: NullLogger = NullLogger()
    else:
        if mode == "online" and not online:
            log.warning("logger.mode=online needs online=true; logging offline instead")
            mode = "offline"
        logger = WandbLogger(
            project=project,
            name=run_dir.name,
            group=group,
            tags=tags,
            config=config,
            run_dir=run_dir,
            mode=mode,
            entity=entity,
        )
    try:
        yield logger
    except BaseException:
        logger.finish(exit_code=1)
        raise
    logger.finish(exit_code=0)
