"""selflen entry point: compose the Hydra config (``selflen/conf``), validate it, run the loop, report.

python train.py                               # the whole loop on the embedded SmolLM2-135M, CPU
python train.py debug=smoke                   # tiny random model, every stage, about a minute
python train.py -m model=llama3,qwen2 length=cpu,paper
python train.py --knobs [length ...] [model=qwen2 ...]   # every knob: type, value, range or choices, meaning
"""

from __future__ import annotations

import selflen  # noqa: F401 - sets the offline defaults before any hub library is imported
from selflen.cli import main

if __name__ == "__main__":
    main()
