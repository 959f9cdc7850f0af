"""Which attention kernel to train with: flash-attn 2 when it is installed and usable, sdpa otherwise."""

from __future__ import annotations

import importlib.util

from ..errors import StargateError
from ..log import get_logger

log = get_logger(__name__)


def flash_attn_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def choose_attn_implementation(requested: str, on_gpu: bool, bf16: bool) -> tuple[str, str]:
    """(implementation, reason). `auto` picks flash_attention_2 only with flash-attn importable, a CUDA
    device in use and bf16 weights (FlashAttention has no fp32 kernels); sdpa otherwise."""
    if requested == "auto":
        if not flash_attn_installed():
            choice, why = "sdpa", "flash-attn is not installed"
        elif not on_gpu:
            choice, why = "sdpa", "training on CPU"
        elif not bf16:
            choice, why = "sdpa", "bf16 is off (flash-attn needs fp16/bf16)"
        else:
            choice, why = "flash_attention_2", "flash-attn is installed and a CUDA GPU is in use"
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
    log.info("attention implementation: %s (%s)", choice, why)
    return choice, why
