"""Long-output evaluation for selflen: counters, scorers, repetition metrics, benchmarks, an LLM judge, a CLI.

Hub and W&B access follow the Hugging Face tools: ``HF_HUB_OFFLINE=1`` forces every library of the process
offline (``HF_DATASETS_OFFLINE`` and ``WANDB_MODE`` follow it), so a missing local file fails fast instead of
hanging on a network lookup (the rule: :mod:`selflen.env`).
"""

from __future__ import annotations

from selflen.env import apply_offline_defaults

apply_offline_defaults()

__all__ = ["__version__"]
__version__ = "0.1.0"
