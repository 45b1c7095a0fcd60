"""selflen: Self-Lengthen, an LLM that teaches itself to write long outputs (arXiv 2410.23933)."""

from __future__ import annotations

import os

from selflen.env import apply_offline_defaults

__version__ = "0.1.0"

# Hub and W&B stay offline unless the user opts in with SELFLEN_ONLINE=1 (the rule is in selflen/env.py).
if apply_offline_defaults():
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
