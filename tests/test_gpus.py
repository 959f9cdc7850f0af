"""Local GPU claiming: jobs get disjoint devices; a CPU job sees none."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stargate.errors import StargateError
from stargate.gpus import claim_gpus


def test_cpu_job_sees_no_gpu(monkeypatch):
    """A CPU job must hide every device from CUDA, even ones a scheduler exported."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    claim_gpus(0)
    assert __import__("os").environ["CUDA_VISIBLE_DEVICES"] == ""
    code = "import torch; from stargate.gpus import claim_gpus; claim_gpus(0); print(torch.cuda.device_count())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_jobs_claim_disjoint_devices(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    code = (
        "import sys, time; from stargate.gpus import claim_gpus; "
        f"print(claim_gpus(2, lock_dir={str(tmp_path)!r}, total=4), flush=True); time.sleep(3)"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    first = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    got_first = first.stdout.readline().strip()
    # while the first job holds its locks, the next one gets the other two devices
    assert claim_gpus(2, lock_dir=str(tmp_path), total=4) != got_first
    assert set(got_first.split(",")).isdisjoint(__import__("os").environ["CUDA_VISIBLE_DEVICES"].split(","))
    with pytest.raises(StargateError, match="free"):
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
        claim_gpus(1, lock_dir=str(tmp_path), total=4)
    first.wait()


def test_scheduler_choice_is_kept(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert claim_gpus(1) == "3"
