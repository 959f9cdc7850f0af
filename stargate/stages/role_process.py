"""A role's backend in a worker process of its own, which sees only the GPUs given to it.

The simulate stage holds two models at once; on GPUs each needs its own devices, and two vLLM engines (or a
vLLM engine and a transformers device map) in one process would share one CUDA context and device list. The
worker sets CUDA_VISIBLE_DEVICES before anything imports torch, loads the backend once and answers
`generate` calls over a pipe; the parent sees a Backend.

Workers are not daemonic processes: vLLM's `LLM(...)` starts its EngineCore (and, with tensor parallelism, its
GPU workers) as child processes (`vllm/v1/engine/utils.py`, CoreEngineProcManager), and multiprocessing refuses
children to a daemonic process ("daemonic processes are not allowed to have children", vllm-project/vllm#18308).
A non-daemonic worker is not ended for us, so every exit path ends it here:

- normal: `close()` asks the worker to stop; it closes its backend (vLLM shuts its engine down) and is joined;
- an exception in the stage, or a worker busy on a request or still loading: `close()` terminates it (SIGTERM:
  the worker raises SystemExit, closes its backend and ends any child process left), then kills it if it has not
  exited within `TERM_GRACE_S` (SLURM waits 30 s, KillWait, between SIGTERM and SIGKILL);
- SIGTERM to the stage (scancel, a SLURM time limit, Snakemake stopping a job): while a worker lives, SIGTERM
  raises SystemExit in the stage, so its `finally` closes the workers, and an atexit hook closes any worker left
  open (before multiprocessing's own exit hook, which would join a worker that waits for its next request);
- the stage killed outright (SIGKILL, OOM killer): the kernel sends each worker SIGTERM (Linux PR_SET_PDEATHSIG),
  so it closes its backend and exits as above.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import Any

from ..backends import Backend, GenerationStats, Prompt, Sampling
from ..backends.base import PromptTooLong
from ..errors import StargateError
from ..log import get_logger

log = get_logger(__name__)

STOP_TIMEOUT_S = 120.0  # a worker asked to stop closes its backend (a vLLM engine shutdown takes seconds)
TERM_GRACE_S = 20.0  # after SIGTERM, before SIGKILL


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _die_with_parent(parent_pid: int) -> None:
    """Linux: SIGTERM to this process when the parent dies, however it dies (PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the pipe's EOF still ends an idle worker
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        raise SystemExit(128 + signal.SIGTERM)


def _end_children(grace: float = 10.0) -> None:
    """End the child processes a backend left behind (e.g. a vLLM EngineCore whose shutdown failed)."""
    children = mp.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(grace)
        if child.is_alive():
            child.kill()
            child.join(grace)


def _serve(
    conn, role: dict[str, Any], model: str, gpus: int, stage: str, visible: str | None, prompt_set, parent: int
) -> None:
    signal.signal(signal.SIGTERM, _exit_on_signal)  # SystemExit: the `with backend` below closes the engine
    _die_with_parent(parent)
    if visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible  # before the backend imports torch / vLLM
    try:
        try:
            from ..backends import load_backend

            backend = load_backend(role, model, gpus=gpus, stage=stage, prompt_set=prompt_set)
        except Exception:  # noqa: BLE001 - reported to the parent, which raises
            conn.send(("error", traceback.format_exc()))
            return
        conn.send(("ready", getattr(getattr(backend, "tokenizer", None), "name_or_path", None)))
        with backend:
            while (msg := conn.recv()) is not None:
                if msg in ("sleep", "wake_up"):  # simulation.gpu_sharing: sleep (vLLM sleep mode)
                    try:
                        getattr(backend, msg, lambda: None)()
                        conn.send(("ok", None))
                    except Exception:  # noqa: BLE001
                        conn.send(("error", traceback.format_exc()))
                    continue
                prompts, sampling, seeds = msg
                backend.stats = GenerationStats()
                try:
                    conn.send(("ok", (backend.generate(prompts, sampling, seeds), backend.stats)))
                except PromptTooLong as exc:  # raised as it is: the stage names the item (stages/generation.py)
                    conn.send(("too_long", exc))
                except Exception:  # noqa: BLE001 - SystemExit (SIGTERM) is not caught: it ends the worker
                    conn.send(("error", traceback.format_exc()))
    except (EOFError, BrokenPipeError):  # the parent is gone
        pass
    finally:
        _end_children()


# ------------------------------------------------------------------------------------------------ the parent
_live: set[RoleProcess] = set()
_lock = threading.Lock()
_previous_sigterm: Any = None
_sigterm_installed = False


def _on_sigterm(signum, frame) -> None:  # no logging here: a handler may interrupt a logging call
    raise SystemExit(128 + signum)


def _register(worker: RoleProcess) -> None:
    """While a worker lives, SIGTERM to this process raises SystemExit (the stage's `finally` then closes the
    workers) instead of ending it on the spot and leaving the workers behind."""
    global _previous_sigterm, _sigterm_installed
    with _lock:
        _live.add(worker)
        if _sigterm_installed or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            _previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
            _sigterm_installed = True


def _unregister(worker: RoleProcess) -> None:
    global _sigterm_installed
    with _lock:
        _live.discard(worker)
        if _live or not _sigterm_installed or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, _previous_sigterm if _previous_sigterm is not None else signal.SIG_DFL)
        _sigterm_installed = False


@atexit.register  # runs before multiprocessing's exit hook (registered earlier), which would join the workers
def _close_all() -> None:
    for worker in list(_live):
        worker.close(abort=True)


class RoleProcess(Backend):
    """The parent's handle on a worker: `generate` runs there, its counters are added here."""

    name = "process"

    def __init__(
        self,
        role: dict[str, Any],
        model: str,
        gpus: int,
        stage: str,
        visible: str | None,
        prompt_set: str | None = None,
    ) -> None:
        super().__init__()
        self.stage = stage
        self.tokenizer = None
        self._closed = False
        self._busy = True  # loading: a close now terminates the worker
        ctx = mp.get_context("spawn")  # a fresh interpreter: no CUDA state inherited
        self._conn, child = ctx.Pipe()
        # not daemonic: a vLLM engine starts child processes (module docstring)
        self._proc = ctx.Process(
            target=_serve,
            args=(child, role, model, gpus, stage, visible, prompt_set, os.getpid()),
            daemon=False,
            name=f"{stage}-worker",
        )
        self._proc.start()
        child.close()
        _register(self)
        try:
            _, payload = self._recv(stage)
            if payload and os.path.isdir(str(model)):  # the worker's tokenizer, for the artifact's provenance only
                from ..tokenization import load_tokenizer

                choice = (role.get("options") or {}).get("tokenizer", "prompt_set")
                self.tokenizer = load_tokenizer(model, prompt_set, choice)
        except BaseException:  # a failed load, SIGTERM while loading: no worker is left behind
            self.close(abort=True)
            raise

    def _recv(self, stage: str):
        try:
            kind, payload = self._conn.recv()
        except EOFError:
            self._proc.join(5)
            raise StargateError(f"{stage}: the role's worker process died (exit {self._proc.exitcode})") from None
        self._busy = False
        if kind == "error":
            raise StargateError(f"{stage}: the role's worker process failed:\n{payload}")
        if kind == "too_long":
            raise payload
        return kind, payload

    def generate(
        self, prompts: Sequence[Prompt], sampling: Sampling, seeds: Sequence[int] | None = None
    ) -> list[list[str | None]]:
        if self._closed:
            raise StargateError(f"{self.stage}: the role's worker process is closed")
        self._busy = True
        self._conn.send((list(prompts), sampling, None if seeds is None else list(seeds)))
        _, (outputs, stats) = self._recv(self.stage)
        self.stats = self.stats.merged(stats)
        return outputs

    def _control(self, what: str) -> None:
        if self._closed:
            raise StargateError(f"{self.stage}: the role's worker process is closed")
        self._busy = True
        self._conn.send(what)
        self._recv(self.stage)

    def sleep(self) -> None:
        """The worker's engine to sleep (vLLM sleep mode; nothing for a backend without one)."""
        self._control("sleep")

    def wake_up(self) -> None:
        self._control("wake_up")

    def close(self, abort: bool = False) -> None:
        """Stop the worker and wait for it: asked to stop when idle, terminated (then killed) when busy, still
        loading, or `abort`. Idempotent; the worker is never left running."""
        if self._closed:
            return
        self._closed = True
        proc = self._proc
        try:
            if proc.is_alive() and not (abort or self._busy):
                try:
                    self._conn.send(None)
                except OSError:
                    pass
                proc.join(STOP_TIMEOUT_S)
            if proc.is_alive():
                log.warning("%s: terminating its role worker process (pid %s)", self.stage, proc.pid)
                proc.terminate()
                proc.join(TERM_GRACE_S)
            if proc.is_alive():
                log.warning("%s: killing its role worker process (pid %s)", self.stage, proc.pid)
                proc.kill()
                proc.join(10)
        finally:
            self._conn.close()
            _unregister(self)
