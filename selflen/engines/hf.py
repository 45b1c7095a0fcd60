"""transformers engine: batched, length-sorted, left-padded generation with per-row seeded sampling.

Sampling happens in a logits processor with one ``torch.Generator`` per row, and ``generate`` runs greedy over
its output. So a row's text depends on its own seed only, not on which other rows share its batch — a resumed
stage reproduces the records an uninterrupted run would have written. PEFT adapters are loaded once and
switched per batch by name.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LogitsProcessor, LogitsProcessorList

from selflen.engines.base import Completion, Engine, Request, Result, SamplingParams, truncate_at_stop

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def row_seed(seed: int | None, index: int) -> int:
    """Seed of the ``index``-th sample of a request (a fresh random one when the request has none)."""
    base = random.getrandbits(48) if seed is None else seed
    return (base * 1_000_003 + index) % (2**63 - 1)


class RowSampler(LogitsProcessor):
    """Per-row repetition penalty, temperature, top-k, top-p and a seeded draw; returns a one-hot mask.

    Rows with temperature 0 stay greedy (only the repetition penalty is applied), matching vLLM's semantics.
    """

    def __init__(self, params: Sequence[SamplingParams], seeds: Sequence[int], device: torch.device) -> None:
        self.temps = torch.tensor([p.temperature for p in params], device=device)
        self.top_p = torch.tensor([p.top_p for p in params], device=device)
        self.top_k = [p.top_k for p in params]
        self.penalty = torch.tensor([p.repetition_penalty for p in params], device=device)
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.sampled = self.temps > 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.float()
        if bool((self.penalty != 1.0).any()):
            seen = torch.gather(scores, 1, input_ids)
            pen = self.penalty[:, None]
            scores = scores.scatter(1, input_ids, torch.where(seen < 0, seen * pen, seen / pen))
        if not bool(self.sampled.any()):
            return scores
        out = scores.clone()
        for i in torch.nonzero(self.sampled).flatten().tolist():
            logits = scores[i] / self.temps[i]
            k = self.top_k[i]
            if 0 < k < logits.numel():
                kth = torch.topk(logits, k).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            if float(self.top_p[i]) < 1.0:
                sorted_logits, order = torch.sort(logits, descending=True)
                cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
                drop = cum - torch.softmax(sorted_logits, dim=-1) > self.top_p[i]  # keep the token crossing p
                logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
            token = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=self.generators[i])
            out[i] = float("-inf")
            out[i, token] = 0.0
        return out


@dataclass
class _Row:
    request: int
    sample: int
    ids: list[int]
    params: SamplingParams
    seed: int
    adapter: str | None


class HFEngine(Engine):
    """Generation with transformers on CPU or GPU."""

    name = "hf"

    def __init__(
        self,
        model: str,
        dtype: str = "float32",
        device: str = "auto",
        batch_size: int = 16,
        max_model_len: int | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            model, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code
        ).to(self.device)
        self.model.eval()
        self.max_model_len = max_model_len or getattr(self.model.config, "max_position_embeddings", 4096)
        self._adapters: dict[str, str] = {}
        self.stop_ids = self._stop_token_ids()

    def _stop_token_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        return sorted(i for i in ids if i is not None)

    # -- adapters ---------------------------------------------------------------------------------
    def add_adapter(self, name: str, path: str) -> None:
        from peft import PeftModel

        if self._adapters.get(name) == str(path):
            return
        if not self._adapters:
            self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
        else:
            if name in self._adapters:
                self.model.delete_adapter(name)
            self.model.load_adapter(str(path), adapter_name=name)
        self.model.eval()
        self._adapters[name] = str(path)

    def _activate(self, adapter: str | None):  # noqa: ANN202 - a context manager
        import contextlib

        if adapter is None:
            return self.model.disable_adapter() if self._adapters else contextlib.nullcontext()
        if adapter not in self._adapters:
            raise KeyError(f"adapter {adapter!r} was never added; known: {sorted(self._adapters)}")
        self.model.set_adapter(adapter)
        return contextlib.nullcontext()

    # -- prompts ----------------------------------------------------------------------------------
    def render(self, request: Request) -> list[int]:
        """Token ids of the chat (tokenizer's own template) plus the assistant prefix to continue."""
        text = self.tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
        text += request.prefix or ""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # -- generation -------------------------------------------------------------------------------
    def generate(self, requests: Sequence[Request], desc: str | None = None) -> list[Result]:
        rows: list[_Row] = []
        prompt_tokens: list[int] = []
        for r_i, req in enumerate(requests):
            ids = self.render(req)
            prompt_tokens.append(len(ids))
            for s in range(req.params.n):
                rows.append(_Row(r_i, s, ids, req.params, row_seed(req.params.seed, s), req.adapter))
        outputs: dict[tuple[int, int], Completion] = {}
        groups: dict[tuple, list[_Row]] = defaultdict(list)
        for row in rows:
            groups[(row.adapter or "", row.params.max_new_tokens, row.params.stop)].append(row)
        bar = tqdm(total=len(rows), desc=desc or "generate", disable=desc is None, unit="seq")
        for (_, max_new, stop), group in groups.items():
            group.sort(key=lambda r: len(r.ids))
            for start in range(0, len(group), self.batch_size):
                chunk = group[start : start + self.batch_size]
                for row, completion in zip(chunk, self._generate_chunk(chunk, max_new, stop), strict=True):
                    outputs[(row.request, row.sample)] = completion
                bar.update(len(chunk))
        bar.close()
        return [
            Result([outputs[(i, s)] for s in range(req.params.n)], prompt_tokens=prompt_tokens[i])
            for i, req in enumerate(requests)
        ]

    @torch.no_grad()
    def _generate_chunk(self, chunk: list[_Row], max_new: int, stop: tuple[str, ...]) -> list[Completion]:
        budget = self.max_model_len - max(len(r.ids) for r in chunk)
        if budget <= 0:
            return [Completion("", 0, "length", error="prompt longer than max_model_len") for _ in chunk]
        max_new = min(max_new, budget)
        batch = self.tokenizer.pad({"input_ids": [r.ids for r in chunk]}, return_tensors="pt").to(self.device)
        config = GenerationConfig(
            max_new_tokens=max_new,
            do_sample=False,
            num_beams=1,
            eos_token_id=self.stop_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=list(stop) or None,
        )
        sampler = RowSampler([r.params for r in chunk], [r.seed for r in chunk], self.device)
        with self._activate(chunk[0].adapter):
            out = self.model.generate(
                **batch,
                generation_config=config,
                logits_processor=LogitsProcessorList([sampler]),
                tokenizer=self.tokenizer if stop else None,
            )
        new = out[:, batch["input_ids"].shape[1] :].tolist()
        return [self._completion(tokens, max_new, stop) for tokens in new]

    def _completion(self, tokens: list[int], max_new: int, stop: tuple[str, ...]) -> Completion:
        n = len(tokens)
        hit_eos = False
        for i, t in enumerate(tokens):
            if t in self.stop_ids:
                n, hit_eos = i, True
                break
        text = self.tokenizer.decode(tokens[:n], skip_special_tokens=True)
        text, hit_stop = truncate_at_stop(text, stop)
        reason = "stop" if (hit_eos or hit_stop or n < max_new) else "length"
        return Completion(text=text, tokens=n + int(hit_eos), finish_reason=reason)

    def close(self) -> None:
        if getattr(self, "model", None) is None:
            return
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
