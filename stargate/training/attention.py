"""Which attention kernel to train with: flash-attn 2 when it really imports (and, on the GPU, runs), sdpa otherwise.

A package's metadata is not enough: a flash-attn wheel built for another torch, CUDA or C++ ABI is "installed"
and then fails at load ("undefined symbol"), so it is imported and, on CUDA, one tiny kernel is run first."""

from __future__ import annotations

import importlib.util
import os

from ..errors import StargateError
from ..log import get_logger

log = get_logger(__name__)


def flash_attn_installed() -> bool:
    """Whether a `flash_attn` package is on the path (metadata only: it may still fail to import)."""
    return importlib.util.find_spec("flash_attn") is not None


def flash_attn_usable(on_gpu: bool) -> tuple[bool, str]:
    """(usable, reason): flash-attn is imported for real (its CUDA extension loads: a wheel built for another
    torch, CUDA or C++ ABI fails here with "undefined symbol") and, on a CUDA GPU, one tiny kernel runs on this
    process's device (an unsupported GPU, e.g. pre-Ampere, fails here). Never raises."""
    if not flash_attn_installed():
        return False, "flash-attn is not installed"
    try:
        import flash_attn
        from flash_attn import flash_attn_func
    except Exception as exc:  # noqa: BLE001 - ImportError (undefined symbol), OSError (missing libcudart), ...
        return False, f"flash-attn is installed but does not import ({type(exc).__name__}: {_short(exc)})"
    version = getattr(flash_attn, "__version__", "?")
    if not on_gpu:
        return True, f"flash-attn {version} imports"
    try:
        import torch

        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))  # this process's GPU
        q = torch.randn(1, 8, 2, 64, device=device, dtype=torch.bfloat16)  # (batch, seq, heads, head_dim)
        out = flash_attn_func(q, q, q, causal=True)
        torch.cuda.synchronize(device)
        if not bool(torch.isfinite(out).all()):
            return False, f"flash-attn {version} imports but its kernel returned non-finite values"
    except Exception as exc:  # noqa: BLE001 - no kernel image for this GPU, CUDA errors, ...
        return False, f"flash-attn {version} imports but its kernel failed ({type(exc).__name__}: {_short(exc)})"
    return True, f"flash-attn {version} imports and its kernel runs on a CUDA GPU"


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def choose_attn_implementation(requested: str, on_gpu: bool, bf16: bool) -> tuple[str, str]:
    """(implementation, reason). `auto` picks flash_attention_2 only with flash-attn really usable (it imports
    and, on the GPU, a tiny kernel runs: `flash_attn_usable`), a CUDA device in use and bf16 weights
    (FlashAttention has no fp32 kernels); sdpa otherwise, with the reason logged."""
    if requested == "auto":
        if not flash_attn_installed():
            choice, why = "sdpa", "flash-attn is not installed"
        elif not on_gpu:
            choice, why = "sdpa", "training on CPU"
        elif not bf16:
            choice, why = "sdpa", "bf16 is off (flash-attn needs fp16/bf16)"
        else:
            usable, why = flash_attn_usable(on_gpu=True)
            choice = "flash_attention_2" if usable else "sdpa"
            if not usable:
                log.warning("flash-attn is not usable, falling back to sdpa: %s", why)
    else:
        choice, why = requested, "set in training.attn_implementation"
        if requested == "flash_attention_2":
            if not flash_attn_installed():
                raise StargateError(
                    "training.attn_implementation: flash_attention_2 requested but flash-attn is not installed "
                    "(see docs/training.md), or use auto/sdpa"
                )
            if not on_gpu:
                raise StargateError("training.attn_implementation: flash_attention_2 needs a CUDA GPU (--gpus >= 1)")
            usable, reason = flash_attn_usable(on_gpu=True)
            if not usable:
                raise StargateError(
                    f"training.attn_implementation: flash_attention_2 requested but {reason} "
                    "(reinstall flash-attn for this torch/CUDA, see docs/training.md), or use auto/sdpa"
                )
            why = f"set in training.attn_implementation; {reason}"
    log.info("attention implementation: %s (%s)", choice, why)
    return choice, why
