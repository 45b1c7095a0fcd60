"""selflen entry point: compose the Hydra config, validate it, provision the model, run the loop, report.

python train.py                               # the whole loop on the embedded SmolLM2-135M, CPU
python train.py debug=smoke                   # tiny random model, every stage, about a minute
python train.py -m model=llama3,qwen2 backend=vllm
"""

from __future__ import annotations

import logging
import sys

import selflen  # noqa: F401 - sets the offline defaults before any hub library is imported
from selflen.cli import precheck_or_exit, register_resolvers, setup_logging

log = logging.getLogger("selflen")


def main() -> None:
    import hydra
    from omegaconf import DictConfig

    @hydra.main(config_path="conf", config_name="train", version_base="1.3")
    def _job(raw: DictConfig) -> float:
        from selflen.config import to_config
        from selflen.pipeline import format_summary, run

        setup_logging()
        cfg = to_config(raw)
        summary = run(cfg)
        print(format_summary(summary))
        last = summary["iterations"][max(summary["iterations"])] if summary["iterations"] else {}
        return float(last.get("generator_mean_words", 0.0))  # a sweeper can optimise this

    _job()


if __name__ == "__main__":
    register_resolvers()
    precheck_or_exit(sys.argv[1:])
    main()
