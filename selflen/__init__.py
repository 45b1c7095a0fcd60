"""selflen: Self-Lengthen, an LLM that teaches itself to write long outputs (arXiv 2410.23933)."""

from __future__ import annotations

import os

from selflen.env import apply_offline_defaults

__version__ = "0.1.0"

# Online like the Hugging Face tools; HF_HUB_OFFLINE=1 (or the deprecated SELFLEN_ONLINE=0) forces every hub and
# W&B library of this process offline (the rule is in selflen/env.py). Telemetry is off unless the caller turns it
# on, so a run on a cached, embedded or local model sends no request at all (TRL's trainer reports to the hub).
apply_offline_defaults()
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
