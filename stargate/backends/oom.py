"""Run a batched computation, halving the batch on a GPU out-of-memory error and retrying.

Results are per item, so a smaller batch changes nothing but speed (scores are computed per row; the
hf backend's sampling seeds are per row). The halved size is kept for the rest of the call: an OOM
at one size will recur at the next batch of similar length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from ..errors import StargateError
from ..log import get_logger
from ..progress import Progress

log = get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def is_oom(exc: BaseException) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of the hf backend
        return False
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, oom)


def run_halving(
    items: Sequence[T], batch_size: int, run_batch: Callable[[Sequence[T]], list[R]], what: str, unit: str = "items"
) -> list[R]:
    """`run_batch` over `items` in batches of at most `batch_size`, in order; on out-of-memory the
    batch is retried at half the size (down to 1, then the error is raised naming the fix)."""
    out: list[R] = []
    size, start = max(1, batch_size), 0
    progress = Progress(what, len(items), unit)
    while start < len(items):
        chunk = items[start : start + size]
        try:
            results = run_batch(chunk)
        except Exception as exc:
            if not is_oom(exc):
                raise
            _free_cache()
            if size == 1:
                raise StargateError(
                    f"{what}: GPU out of memory with a batch of 1 (fix: a GPU with more memory, a smaller "
                    "max_tokens or shorter inputs, or dtype bfloat16)"
                ) from None
            size = max(1, size // 2)
            log.warning("%s: GPU out of memory with a batch of %d; retrying with %d", what, len(chunk), size)
            continue
        out.extend(results)
        start += len(chunk)
        progress.advance(len(chunk))
    return out


def _free_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
