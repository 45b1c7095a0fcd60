"""transformers engine: batched, length-sorted, left-padded generation with per-row seeded sampling.

Sampling happens in a vectorised logits processor whose random draws are keyed by each row's own seed, and
``generate`` runs greedy over its output. So a row's text depends on its own seed only, not on which other rows
share its batch (exactly in float32; bf16 kernels may round batched rows differently) — a resumed stage
reproduces the records an uninterrupted run would have written. PEFT adapters are loaded once and
switched per batch by name.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from selflen.engines.base import (
    LOOP,
    Completion,
    Engine,
    Request,
    Result,
    SamplingParams,
    ends_in_loop,
    in_order,
    truncate_at_stop,
)
from selflen.errors import check_stop, stop_requested

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}


def row_seed(seed: int | None, index: int) -> int:
    """Seed of the ``index``-th sample of a request (a fresh random one when the request has none)."""
    base = random.getrandbits(48) if seed is None else seed
    return (base * 1_000_003 + index) % (2**63 - 1)


def _i64(value: int) -> int:
    """An unsigned 64-bit constant as the signed int64 with the same bits (torch has no uint64 arithmetic)."""
    return value - 2**64 if value >= 2**63 else value


GOLDEN, MIX1, MIX2 = _i64(0x9E3779B97F4A7C15), _i64(0xBF58476D1CE4E5B9), _i64(0x94D049BB133111EB)


class RowSampler(LogitsProcessor):
    """Vectorised per-row repetition penalty, temperature, top-k, top-p and a seeded draw (Gumbel-max).

    The Gumbel noise of row ``r`` at generation step ``t`` for token ``v`` is a hash of (seed_r, t, v), so a row's
    draw depends on its own seed only — not on the other rows of the batch — and the whole batch is sampled with
    a handful of tensor ops (no per-row Python loop, no host syncs). Rows with temperature 0 stay greedy (only
    the repetition penalty applies), matching vLLM's semantics. The processor returns a one-hot mask, so
    ``generate`` in greedy mode picks exactly the sampled token.
    """

    def __init__(
        self, params: Sequence[SamplingParams], seeds: Sequence[int], device: torch.device, prompt_width: int,
        eos_ids: Sequence[int] = (),
    ) -> None:
        self.prompt_width = prompt_width
        # min_new_tokens: a row's EOS ids are masked until it has that many new tokens
        self.hold_until = max((p.min_new_tokens for p in params), default=0) if eos_ids else 0
        self.min_new = torch.tensor([p.min_new_tokens for p in params], device=device)[:, None]
        self.eos_ids = torch.tensor(list(eos_ids), dtype=torch.int64, device=device)
        self.use_penalty = any(p.repetition_penalty != 1.0 for p in params)
        self.any_sampled = any(not p.greedy for p in params)
        self.penalty = torch.tensor([p.repetition_penalty for p in params], device=device)[:, None]
        self.sampled = torch.tensor([not p.greedy for p in params], device=device)[:, None]
        self.temps = torch.tensor([p.temperature if not p.greedy else 1.0 for p in params], device=device)[:, None]
        self.kmax = max(p.top_k for p in params)
        # per-row k (rows without top-k use kmax and are not masked); built once: no host->device copy per step
        self.k_index = torch.tensor([(p.top_k if p.top_k > 0 else self.kmax) - 1 for p in params], device=device)
        self.k_limited = torch.tensor([p.top_k > 0 for p in params], device=device)[:, None]
        self.top_p = torch.tensor([p.top_p for p in params], device=device)[:, None]
        self.use_top_p = any(p.top_p < 1.0 for p in params)
        self.seeds = torch.tensor([s % (2**62) for s in seeds], dtype=torch.int64, device=device)[:, None]
        # every sampled row limited to its top k: the draw only needs those k candidates (same token either way,
        # since the noise is keyed by token id)
        self.all_top_k = self.kmax > 0 and all(p.top_k > 0 for p in params if not p.greedy)
        self.positions = torch.arange(max(self.kmax, 1), device=device)[None, :]

    def _gumbel(self, step: int, token_ids: torch.Tensor) -> torch.Tensor:
        """Gumbel noise for the given token ids of each row (``token_ids``: rows x n, int64)."""
        x = self.seeds * GOLDEN + _i64(((step + 1) * MIX1) % 2**64) + token_ids * MIX2
        for mult in (MIX1, MIX2):
            x = (x ^ (x >> 31)) * mult  # int64 arithmetic wraps: a splitmix-style integer hash
        u = ((x >> 40) & 0xFFFFFF).to(torch.float32).add_(0.5).div_(2**24)  # uniform in (0, 1)
        return -torch.log(-torch.log(u))

    def _top_p(self, sorted_logits: torch.Tensor) -> torch.Tensor:
        """Mask (in sorted order) of the tokens outside the nucleus; the token that crosses p is kept."""
        probs = torch.softmax(sorted_logits, dim=-1)
        return (probs.cumsum(-1) - probs) > self.top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.float()
        step = input_ids.shape[1] - self.prompt_width
        if step < self.hold_until:
            eos = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
            eos[self.eos_ids] = True
            scores = scores.masked_fill(eos[None, :] & (self.min_new > step), float("-inf"))
        if self.use_penalty:
            seen = torch.gather(scores, 1, input_ids)
            scores = scores.scatter(1, input_ids, torch.where(seen < 0, seen * self.penalty, seen / self.penalty))
        if not self.any_sampled:
            return scores
        logits = scores / self.temps
        if self.all_top_k:
            # work on the k best candidates only: top-p and noise over k values instead of the whole vocabulary
            vals, ids = torch.topk(logits, min(self.kmax, logits.shape[-1]), dim=-1)  # sorted, descending
            vals = vals.masked_fill(self.positions[:, : vals.shape[-1]] > self.k_index[:, None], float("-inf"))
            if self.use_top_p:
                vals = vals.masked_fill(self._top_p(vals), float("-inf"))
            choice = ids.gather(1, torch.argmax(vals + self._gumbel(step, ids), dim=-1, keepdim=True))
        else:
            if self.kmax > 0:
                top = torch.topk(logits, min(self.kmax, logits.shape[-1]), dim=-1).values
                kth = top.gather(1, self.k_index.clamp(max=top.shape[-1] - 1)[:, None])
                logits = logits.masked_fill(self.k_limited & (logits < kth), float("-inf"))
            if self.use_top_p:
                sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
                drop_sorted = self._top_p(sorted_logits)
                logits = logits.masked_fill(
                    torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted), float("-inf")
                )
            vocab = torch.arange(logits.shape[-1], dtype=torch.int64, device=logits.device)[None, :]
            choice = torch.argmax(logits + self._gumbel(step, vocab), dim=-1, keepdim=True)
        one_hot = torch.full_like(scores, float("-inf")).scatter(1, choice, 0.0)
        return torch.where(self.sampled, one_hot, scores)


class LoopStop(StoppingCriteria):
    """Ends each row (with ``stop_loops`` on) whose new tokens close a verbatim loop (``ends_in_loop``)."""

    def __init__(self, flags: Sequence[bool], prompt_len: int) -> None:
        self.flags, self.prompt_len = list(flags), prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        new = input_ids.shape[1] - self.prompt_len
        if new < LOOP.min_pattern * LOOP.count:
            return done
        tail = input_ids[:, -min(new, LOOP.max_pattern * LOOP.count) :].tolist()
        for i, on in enumerate(self.flags):
            if on and ends_in_loop(tail[i]):
                done[i] = True
        return done


class StopRequested(StoppingCriteria):
    """Ends every row once a stop was asked for (SIGTERM/SIGINT), so a long CPU batch does not hold a stop for minutes;
    the caller's ``check_stop`` then raises and the cut batch is never written."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), stop_requested(), dtype=torch.bool, device=input_ids.device)


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
        from selflen.models import check_adapter

        check_adapter(path)  # a missing or corrupt folder: one clear error, before anything is loaded
        if not self._adapters:
            self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
        else:
            if name in self._adapters:
                self.model.delete_adapter(name)
            self.model.load_adapter(str(path), adapter_name=name)
        self.model.eval()
        self._adapters[name] = str(path)

    def _activate(self, adapter: str | None):  # a context manager
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
        return in_order(self.stream(requests, desc), len(requests))

    def stream(self, requests: Sequence[Request], desc: str | None = None) -> Iterator[tuple[int, Result]]:
        """Requests grouped by adapter, budget and stop strings, in batches of similar prompt length; a request is
        yielded once its last sample's batch is done."""
        rows: list[_Row] = []
        prompt_tokens: list[int] = []
        for r_i, req in enumerate(requests):
            ids = self.render(req)
            prompt_tokens.append(len(ids))
            for s in range(req.params.n):
                rows.append(_Row(r_i, s, ids, req.params, row_seed(req.params.seed, s), req.adapter))
        outputs: dict[tuple[int, int], Completion] = {}
        left = [req.params.n for req in requests]  # samples still to generate, per request
        groups: dict[tuple, list[_Row]] = defaultdict(list)
        for row in rows:
            groups[(row.adapter or "", row.params.max_new_tokens, row.params.stop)].append(row)
        with tqdm(total=len(rows), desc=desc or "generate", disable=desc is None, unit="seq") as bar:
            for (_, max_new, stop), group in groups.items():
                group.sort(key=lambda r: len(r.ids))
                for start in range(0, len(group), self.batch_size):
                    chunk = group[start : start + self.batch_size]
                    for row, completion in zip(chunk, self._generate_chunk(chunk, max_new, stop), strict=True):
                        outputs[(row.request, row.sample)] = completion
                        left[row.request] -= 1
                        if not left[row.request]:
                            i = row.request
                            yield i, Result([outputs[(i, s)] for s in range(requests[i].params.n)],
                                            prompt_tokens=prompt_tokens[i])
                    bar.update(len(chunk))
                    check_stop()  # SIGTERM/SIGINT: stop between batches (a journal keeps the requests finished so far)

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
        sampler = RowSampler(
            [r.params for r in chunk], [r.seed for r in chunk], self.device, batch["input_ids"].shape[1],
            eos_ids=self.stop_ids,
        )
        loops = [r.params.stop_loops for r in chunk]
        criteria = StoppingCriteriaList([StopRequested(), *([LoopStop(loops, batch["input_ids"].shape[1])]
                                                            if any(loops) else [])])
        with self._activate(chunk[0].adapter):
            out = self.model.generate(
                **batch,
                generation_config=config,
                logits_processor=LogitsProcessorList([sampler]),
                stopping_criteria=criteria,
                tokenizer=self.tokenizer if stop else None,
            )
        new = out[:, batch["input_ids"].shape[1] :].tolist()
        return [self._completion(tokens, max_new, stop, on) for tokens, on in zip(new, loops, strict=True)]

    def _completion(self, tokens: list[int], max_new: int, stop: tuple[str, ...], stop_loops: bool = False
                    ) -> Completion:
        n = len(tokens)
        hit_eos = False
        for i, t in enumerate(tokens):
            if t in self.stop_ids:
                n, hit_eos = i, True
                break
        pad = self.tokenizer.pad_token_id
        end = n
        while end and tokens[end - 1] == pad and pad not in self.stop_ids:  # a row stopped early is padded
            end -= 1
        text = self.tokenizer.decode(tokens[:end], skip_special_tokens=True)
        text, hit_stop = truncate_at_stop(text, stop)
        # LoopStop ended it: a loop is caught at the token that closes it, so an EOS never follows one
        if stop_loops and not hit_stop and ends_in_loop(tokens[:end]):
            return Completion(text=text, tokens=end, finish_reason="loop")
        reason = "stop" if (hit_eos or hit_stop or n < max_new) else "length"
        return Completion(text=text, tokens=n + int(hit_eos), finish_reason=reason)

    def close(self) -> None:
        if getattr(self, "model", None) is None:
            return
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
