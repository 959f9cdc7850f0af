"""Give a job exactly the GPUs it asked for, before torch or vLLM is imported.

Under SLURM the scheduler sets CUDA_VISIBLE_DEVICES. Locally (profiles/local-gpu) Snakemake only
counts the `gpu` resource and never assigns devices, so two jobs would both land on GPU 0: here a job
claims N free device indices with non-blocking file locks held for the life of the process. A job
with `--gpus 0` sees no GPU at all, so a CPU job never silently takes one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import StargateError

_held: list = []  # open lock files: the locks last as long as the process


def _device_count() -> int:
    try:
        import subprocess

        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
        return sum(1 for line in out.splitlines() if line.startswith("GPU "))
    except (OSError, subprocess.SubprocessError):
        return 0


def claim_gpus(n: int, lock_dir: str | None = None, total: int | None = None) -> str:
    """Set CUDA_VISIBLE_DEVICES for this process; returns its value."""
    if n <= 0:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        # DeepSpeed (imported by transformers' Trainer) would warn "Setting accelerator to CPU. If you have
        # GPU ... we were unable to detect it" in every CPU job: here CPU is the choice, not a failed detection
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        return ""
    if os.environ.get("CUDA_VISIBLE_DEVICES") or os.environ.get("SLURM_JOB_ID"):
        return os.environ.get("CUDA_VISIBLE_DEVICES", "")  # the scheduler already chose
    total = _device_count() if total is None else total
    if total < n:
        raise StargateError(f"this job asks for {n} GPU(s) but the machine shows {total}")
    folder = Path(lock_dir or os.environ.get("STARGATE_GPU_LOCK_DIR", "/tmp/stargate-gpu-locks"))
    folder.mkdir(parents=True, exist_ok=True)
    chosen = []
    for idx in range(total):
        fh = open(folder / f"gpu{idx}.lock", "w")  # noqa: SIM115 - held until exit
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        _held.append(fh)
        chosen.append(str(idx))
        if len(chosen) == n:
            break
    if len(chosen) < n:
        raise StargateError(
            f"only {len(chosen)} of {total} GPUs are free, this job needs {n}; "
            "run fewer GPU jobs at once (profiles/local-gpu sets resources: gpu)"
        )
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
    return os.environ["CUDA_VISIBLE_DEVICES"]
