"""The engines' dtype choice, apart from any engine (``selflen.models`` merges adapters in the dtype an engine
will load, without importing one)."""

from __future__ import annotations


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 matmul instructions (AVX512-BF16 or AMX); False on AVX2-only machines."""
    try:
        import torch

        if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
            return True
    except Exception:  # an older torch without these probes: read the flags
        pass
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        return " avx512_bf16" in flags or " amx_bf16" in flags
    except OSError:
        return False


def resolve_dtype(dtype: str) -> str:
    """``"bf16_if_supported"`` becomes ``"bfloat16"`` on a CPU with native bf16 (or any GPU), else ``"float32"``."""
    if dtype != "bf16_if_supported":
        return dtype
    import torch

    return "bfloat16" if torch.cuda.is_available() or cpu_has_bf16() else "float32"
