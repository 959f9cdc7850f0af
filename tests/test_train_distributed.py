"""Slow CPU runs of the distributed paths: 2-step DeepSpeed ZeRO-2 and ZeRO-3 in one process (env-notes §5), and
two processes through the same `accelerate launch` command `stargate train --gpus N` uses. All go through the
stage's own entry (`python -m stargate.stages.train`, what `accelerate launch` runs per process). The first
DeepSpeed run on a machine JIT-builds its shm comm op (1-2 minutes, cached in ~/.cache/torch_extensions)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from test_train import base_dir as base_dir  # noqa: F401  (the session fixture)
from test_train import spec_for_test, state, write_sft

from stargate.training import launch

pytestmark = pytest.mark.slow
needs_deepspeed = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed"
)


def stage_argv(base_dir, data, out, spec) -> list[str]:
    return [
        "--base-model",
        str(base_dir),
        "--data",
        str(data),
        "--output",
        str(out),
        "--spec",
        json.dumps(spec.to_dict()),
        "--iteration",
        "1",
        "--run-name",
        "dist",
        "--gpus",
        "0",
    ]


def run_cmd(cmd: list[str]) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WANDB_", "MASTER_", "RANK", "LOCAL_RANK", "WORLD_SIZE"))
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]


@needs_deepspeed
@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_deepspeed_two_steps_on_cpu(zero, base_dir, tmp_path):
    data = write_sft(tmp_path / "A.jsonl", 8)
    out = tmp_path / "m1"
    spec = spec_for_test(deepspeed=zero, wandb_project=None)
    run_cmd([sys.executable, "-m", "stargate.stages.train", *stage_argv(base_dir, data, out, spec)])
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert metrics["runtime"]["deepspeed_config"].endswith(f"config/deepspeed/{zero}.json")
    assert metrics["results"]["global_step"] == 2
    before, after = state(base_dir), state(out)
    assert before.keys() == after.keys()  # ZeRO-3 gathered the full weights on save
    assert all(before[k].shape == after[k].shape for k in before)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert f"DeepSpeed config | {metrics['runtime']['deepspeed_config']}" in (out / "README.md").read_text()


def test_two_processes_keep_the_effective_batch(base_dir, tmp_path):
    """`accelerate launch` with 2 processes (gloo on CPU) halves the accumulation steps: same effective batch, so
    the same losses as one process; only rank 0 writes the folder."""
    data = write_sft(tmp_path / "A.jsonl", 12)
    spec = spec_for_test(per_device_batch_size=2, gradient_accumulation_steps=2, wandb_project=None)
    one, two = tmp_path / "one" / "m1", tmp_path / "two" / "m1"
    run_cmd([sys.executable, "-m", "stargate.stages.train", *stage_argv(base_dir, data, one, spec)])
    cmd = launch.launch_command(2, stage_argv(base_dir, data, two, spec))  # what --gpus 2 runs, minus CUDA
    run_cmd(cmd)
    m1, m2 = (json.loads((p / "train_metrics.json").read_text()) for p in (one, two))
    assert (m1["runtime"]["world_size"], m2["runtime"]["world_size"]) == (1, 2)
    assert (
        m1["runtime"]["gradient_accumulation_per_process"],
        m2["runtime"]["gradient_accumulation_per_process"],
    ) == (2, 1)
    assert m1["runtime"]["effective_batch"] == m2["runtime"]["effective_batch"] == 4
    losses = [[h["loss"] for h in m["log_history"] if "loss" in h] for m in (m1, m2)]
    assert len(losses[0]) == 2 and losses[0] == pytest.approx(losses[1], rel=1e-4)
    assert m1["results"]["train_tokens_seen"] == m2["results"]["train_tokens_seen"]
    assert sorted(p.name for p in two.parent.iterdir()) == ["m1"]  # no partial folder left by any rank


def test_gpu_bench_script_runs_on_cpu(base_dir, tmp_path):
    """The throughput script for a lent GPU (docs/training.md, "GPU measurement"), at toy size on CPU."""
    from stargate.training import bench

    summary = bench.main(
        ["--tokenizer", str(base_dir), "--out", str(tmp_path / "b"), "--hidden", "64", "--layers", "2", "--heads",
         "4", "--kv-heads", "2", "--intermediate", "128", "--seq", "64", "--batch", "2", "--steps", "2"]
    )  # fmt: skip
    assert summary["steps"] == 2 and summary["tokens_per_s"] > 0 and summary["attn"] == "sdpa"
    assert json.loads((tmp_path / "b" / "bench.json").read_text()) == summary
