"""A role's backend in a worker process of its own, which sees only the GPUs given to it.

The simulate stage holds two models at once; on GPUs each needs its own devices, and two vLLM engines (or a
vLLM engine and a transformers device map) in one process would share one CUDA context and device list. The
worker sets CUDA_VISIBLE_DEVICES before anything imports torch, loads the backend once and answers
`generate` calls over a pipe; the parent sees a Backend.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from collections.abc import Sequence
from typing import Any

from ..backends import Backend, GenerationStats, Prompt, Sampling
from ..backends.base import PromptTooLong
from ..errors import StargateError


def _serve(conn, role: dict[str, Any], model: str, gpus: int, stage: str, visible: str | None) -> None:
    if visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible  # before the backend imports torch / vLLM
    try:
        from ..backends import load_backend

        backend = load_backend(role, model, gpus=gpus, stage=stage)
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", getattr(getattr(backend, "tokenizer", None), "name_or_path", None)))
    with backend:
        while (msg := conn.recv()) is not None:
            prompts, sampling, seeds = msg
            backend.stats = GenerationStats()
            try:
                conn.send(("ok", (backend.generate(prompts, sampling, seeds), backend.stats)))
            except PromptTooLong as exc:  # raised as it is: the stage names the item (stages/generation.py)
                conn.send(("too_long", exc))
            except BaseException:  # noqa: BLE001
                conn.send(("error", traceback.format_exc()))


class RoleProcess(Backend):
    """The parent's handle on a worker: `generate` runs there, its counters are added here."""

    name = "process"

    def __init__(self, role: dict[str, Any], model: str, gpus: int, stage: str, visible: str | None) -> None:
        super().__init__()
        ctx = mp.get_context("spawn")  # a fresh interpreter: no CUDA state inherited
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, role, model, gpus, stage, visible), daemon=True)
        self._proc.start()
        child.close()
        kind, payload = self._recv(stage)
        self.tokenizer = None
        if payload and os.path.isdir(str(payload)):
            from transformers import AutoTokenizer  # for the artifact's provenance (tokenizer hash) only

            self.tokenizer = AutoTokenizer.from_pretrained(payload)
        self.stage = stage

    def _recv(self, stage: str):
        try:
            kind, payload = self._conn.recv()
        except EOFError:
            raise StargateError(f"{stage}: the role's worker process died (exit {self._proc.exitcode})") from None
        if kind == "error":
            raise StargateError(f"{stage}: the role's worker process failed:\n{payload}")
        if kind == "too_long":
            raise payload
        return kind, payload

    def generate(
        self, prompts: Sequence[Prompt], sampling: Sampling, seeds: Sequence[int] | None = None
    ) -> list[list[str | None]]:
        self._conn.send((list(prompts), sampling, None if seeds is None else list(seeds)))
        _, (outputs, stats) = self._recv(self.stage)
        self.stats = self.stats.merged(stats)
        return outputs

    def close(self) -> None:
        if self._proc.is_alive():
            self._conn.send(None)
            self._proc.join(timeout=120)
        if self._proc.is_alive():
            self._proc.terminate()
