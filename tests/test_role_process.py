"""Role worker processes (stages/role_process.py, the simulate stage's GPU split) can host a vLLM engine, which
starts child processes, and none is left behind on any exit path: normal close, SIGTERM to the stage (SLURM,
Snakemake), the stage killed outright. The engine is played by scripted-backend programs (tests/role_workers.py);
tests/test_vllm_simulate.py runs the real vLLM engine in these workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stargate.backends import Sampling
from stargate.stages.role_process import RoleProcess

TESTS = Path(__file__).resolve().parent


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has exited


def wait_gone(pids, timeout: float) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if alive(p)]


def test_a_role_worker_can_start_child_processes():
    """vLLM's LLM(...) starts its EngineCore as a child process: a daemonic worker could not (vllm#18308)."""
    worker = RoleProcess(
        {"backend": "scripted", "options": {"program": "role_workers:start_child"}}, "m", 0, "questioner_turn", ""
    )
    try:
        assert not worker._proc.daemon
        assert worker.generate(["hi"], Sampling(max_tokens=2)) == [["child exited 0"]]
    finally:
        worker.close()
    assert not worker._proc.is_alive() and worker._proc.exitcode == 0
    worker.close()  # idempotent


@pytest.fixture
def busy_stage(tmp_path):
    """A stage process whose role worker runs an engine child and is busy on a request: (process, pids)."""
    pids = tmp_path / "pids.json"
    env = dict(os.environ, ROLE_WORKER_PIDS=str(pids), PYTHONPATH=os.pathsep.join([str(TESTS), *sys.path]))
    proc = subprocess.Popen(
        [sys.executable, str(TESTS / "role_workers.py")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    end = time.monotonic() + 120
    while not pids.exists() and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.2)
    if not pids.exists():
        proc.kill()
        pytest.fail(f"the worker did not start: {proc.communicate()[0].decode()[-3000:]}")
    started = json.loads(pids.read_text())
    yield proc, [started["worker"], started["engine"]]
    for pid in [proc.pid, *started.values()]:  # nothing outlives the test, whatever it asserted
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    proc.wait(10)


def test_sigterm_to_the_stage_ends_its_busy_worker_and_the_engine(busy_stage):
    """SLURM (scancel, time limit) and Snakemake stop a job with SIGTERM: the stage's `finally` closes its workers
    (a busy one is terminated) before it exits, and the worker ends its engine."""
    proc, pids = busy_stage
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "terminating its role worker process" in out, out
    assert wait_gone(pids, 15) == [], out


def test_a_killed_stage_leaves_no_worker_behind(busy_stage):
    """SIGKILL (OOM killer, SLURM after KillWait) gives the stage no chance to clean up: the kernel sends the
    worker SIGTERM (PR_SET_PDEATHSIG), which ends it and its engine."""
    proc, pids = busy_stage
    proc.kill()
    proc.wait(10)
    assert wait_gone(pids, 30) == []
