"""Long-output evaluation for selflen: counters, scorers, repetition metrics, benchmarks, an LLM judge, a CLI.

Importing this package makes hub and W&B access opt-in: unless the caller already set them (or set
``SELFLEN_ONLINE=1``), ``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE`` and ``WANDB_MODE`` default to offline, so a
missing local file fails fast instead of hanging on a network lookup (the rule: :mod:`selflen.env`).
"""

from __future__ import annotations

from selflen.env import apply_offline_defaults

apply_offline_defaults()

__all__ = ["__version__"]
__version__ = "0.1.0"
