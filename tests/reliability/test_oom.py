"""A GPU out-of-memory error halves the batch and retries; results are those of an unbatched run."""

from __future__ import annotations

import logging

import pytest
import torch

from stargate.backends.oom import run_halving
from stargate.errors import StargateError


def fake_gpu(limit: int, calls: list[int]):
    def run_batch(chunk):
        calls.append(len(chunk))
        if len(chunk) > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 10 for x in chunk]

    return run_batch


def test_oom_halves_the_batch_retries_and_says_so(caplog):
    calls: list[int] = []
    caplog.set_level(logging.WARNING)
    assert run_halving(list(range(11)), 8, fake_gpu(3, calls), "score") == [x * 10 for x in range(11)]
    assert calls[:3] == [8, 4, 2]  # 8 and 4 ran out of memory; 2 kept for the rest
    assert set(calls[3:]) <= {2, 1} and sum(calls[2:]) == 11
    assert "GPU out of memory with a batch of 8; retrying with 4" in caplog.text


def test_oom_at_batch_one_is_a_clean_error():
    with pytest.raises(StargateError, match="out of memory with a batch of 1"):
        run_halving([1, 2], 4, fake_gpu(0, []), "generate")


def test_other_errors_are_not_retried():
    def broken(chunk):
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        run_halving([1, 2], 2, broken, "score")
