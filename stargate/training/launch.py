"""Process layout: CPU, one GPU, or N GPUs through `accelerate launch`, with or without DeepSpeed.

`stargate train --gpus N` with N > 1 re-executes itself as ``python -m accelerate.commands.launch
--multi_gpu --num_processes N --module stargate.stages.train <same arguments>``, so the Snakemake rule
stays one shell line whatever the GPU count. The child processes see LOCAL_RANK/WORLD_SIZE and train.
The HF Trainer reads the DeepSpeed config itself (TrainingArguments.deepspeed), so accelerate needs no
config file. A single process with DeepSpeed (CPU smoke tests, one GPU) gets a one-rank
torch.distributed environment (env-notes §5).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from ..errors import StargateError
from ..log import get_logger

log = get_logger(__name__)


def is_launched() -> bool:
    """True inside a process started by accelerate/torchrun/deepspeed (one of several ranks)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def single_process_dist_env() -> None:
    """A world of one, as DeepSpeed needs a process group even on one device."""
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")


def check_gpus(gpus: int) -> None:
    if gpus < 0:
        raise StargateError(f"--gpus must be >= 0, got {gpus}")
    if gpus == 0:
        return
    import torch

    if not torch.cuda.is_available():
        raise StargateError(f"--gpus {gpus} given but no CUDA device is visible (use --gpus 0 to train on CPU)")
    if torch.cuda.device_count() < gpus:
        raise StargateError(f"--gpus {gpus} given but only {torch.cuda.device_count()} CUDA device(s) are visible")


def launch_command(num_processes: int, argv: list[str], port: int | None = None) -> list[str]:
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", str(num_processes), "--num_machines", "1",
        "--mixed_precision", "no",  # the Trainer sets bf16 from training.bf16
        "--dynamo_backend", "no",
        "--main_process_port", str(port or free_port()),
        "--module", "stargate.stages.train", *argv,
    ]  # fmt: skip


def relaunch(num_processes: int, argv: list[str]) -> None:
    cmd = launch_command(num_processes, argv)
    log.info("launching %d processes: %s", num_processes, " ".join(cmd[:12]) + " ...")
    rc = subprocess.call(cmd)
    if rc != 0:
        raise SystemExit(rc)
