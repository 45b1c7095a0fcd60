"""selflen: Self-Lengthen, an LLM that teaches itself to write long outputs (arXiv 2410.23933)."""

from __future__ import annotations

import os

__version__ = "0.1.0"


def _offline_by_default() -> None:
    """Hub and W&B lookups hang ~40 s without a network; stay offline unless the user opts in."""
    if os.environ.get("SELFLEN_ONLINE", "0") in ("1", "true", "yes"):
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


_offline_by_default()
