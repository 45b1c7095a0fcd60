"""Tracking: secrets redacted, W&B runs always finished (also when the run raises)."""

from __future__ import annotations

from pathlib import Path

import pytest

from selflen.tracking import NullLogger, open_logger, redact

pytestmark = pytest.mark.unit


def test_redact_nested_secrets_but_not_env_var_names() -> None:
    cfg = {
        "backend": {"api_key": "sk-123", "api_key_env": "OPENAI_API_KEY"},
        "hf_token": "hf_x",
        "lr": 0.1,
        "list": [{"password": "p"}],
    }
    out = redact(cfg)
    assert out["backend"] == {"api_key": "***", "api_key_env": "OPENAI_API_KEY"}
    assert out["hf_token"] == "***" and out["lr"] == 0.1 and out["list"] == [{"password": "***"}]


def test_null_logger_has_the_same_methods() -> None:
    from selflen.tracking import WandbLogger

    public = {m for m in dir(WandbLogger) if not m.startswith("_")}
    assert public <= set(dir(NullLogger())) | {"run"}


def test_wandb_offline_run_is_finished_on_error_with_redacted_config(tmp_path: Path) -> None:
    import wandb

    with pytest.raises(RuntimeError, match="boom"), open_logger(
        "wandb", run_dir=tmp_path, config={"api_key": "sk-secret", "x": 1}, mode="offline"
    ) as logger:
        assert dict(logger.run.config) == {"api_key": "***", "x": 1}  # what W&B received
        logger.log({"a/b": 1.0})
        raise RuntimeError("boom")
    assert wandb.run is None  # finished, not left open for the next job of a multirun
    assert list(tmp_path.glob("wandb/offline-run-*/run-*.wandb")), "the offline run log was not written"
    assert (tmp_path / "wandb_id").exists()
