"""Scripted-backend programs (`program: "role_workers:<name>"`) that behave like a vLLM engine inside a role
worker process, for tests/test_role_process.py. Not a test module: the worker process imports it."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path


def start_child(prompt, k, seed) -> str:
    """What vLLM's `LLM(...)` does in the worker: start a child process (its EngineCore)."""
    child = mp.get_context("fork").Process(target=time.sleep, args=(0,))
    child.start()
    child.join()
    return f"child exited {child.exitcode}"


def busy_engine(prompt, k, seed) -> str:
    """An engine child process and a request that never ends: writes both pids to $ROLE_WORKER_PIDS, then works.
    (The child is daemonic: the worker's exit ends it, as vLLM's shutdown ends its EngineCore.)"""
    child = mp.get_context("fork").Process(target=time.sleep, args=(600,), daemon=True)
    child.start()
    pids = Path(os.environ["ROLE_WORKER_PIDS"])
    tmp = pids.with_suffix(".tmp")
    tmp.write_text(json.dumps({"worker": os.getpid(), "engine": child.pid}))
    tmp.rename(pids)
    time.sleep(600)
    return "never"


if __name__ == "__main__":  # the stage: one busy worker, closed in `finally` (what stages/simulate.py does)
    from stargate.backends import Sampling
    from stargate.stages.role_process import RoleProcess

    worker = RoleProcess(
        {"backend": "scripted", "options": {"program": "role_workers:busy_engine"}}, "m", 0, "questioner_turn", ""
    )
    try:
        worker.generate(["Plan a trip."], Sampling(max_tokens=2))
    finally:
        worker.close()
