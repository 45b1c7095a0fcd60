"""Does a LoRA adapter still act per request with the new vLLM defaults? Greedy texts, hf engine vs vLLM engine.

Makes a random (non-zero) PEFT all-linear LoRA (r 8) on the embedded model, then generates 24 greedy tokens for
two prompts, each with and without the adapter in one batch, with both engines (fp32). Prints whether the adapter
changes the text and whether the engines agree.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from selflen.engines import build_engine
    from selflen.engines.base import Request, SamplingParams
    from selflen.models import embedded_model_dir

    model_dir = str(embedded_model_dir())
    out = tempfile.mkdtemp(prefix="lora_check_")
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False))
    peft.save_pretrained(out)
    del peft, base
    greedy = SamplingParams(temperature=0.0, max_new_tokens=24, repetition_penalty=1.0)
    prompts = ["Write a short poem about the sea.", "Explain what a compiler does."]
    reqs = [Request([{"role": "user", "content": p}], greedy, adapter=a) for p in prompts for a in (None, "x")]
    texts = {}
    for backend, kwargs in (
        ("hf", {"dtype": "float32", "device": "cpu"}),
        ("vllm", {"dtype": "float32", "single_process": True, "max_lora_rank": 8}),
    ):
        with build_engine(backend, model_dir, **kwargs) as engine:
            engine.add_adapter("x", out)
            texts[backend] = [r.text for r in engine.generate(reqs)]
    report = {
        "adapter_changes_text": [texts["vllm"][i] != texts["vllm"][i + 1] for i in (0, 2)],
        "engines_agree": [a == b for a, b in zip(texts["hf"], texts["vllm"], strict=True)],
        "texts": texts,
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
