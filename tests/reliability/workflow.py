"""Helpers of the reliability tests: the real workflow run by `snakemake` (a subprocess, as a user runs
it) and many cheap dry-runs in one process (plan_driver.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "config" / "tiny.yaml"


def env(tmp: Path, **extra: str) -> dict[str, str]:
    """The test environment: `stargate` from this interpreter, and an `scontrol` that answers at once
    (the SLURM executor plugin runs `scontrol show config` on import, 9 s where no controller answers)."""
    fake = tmp / ".fakebin"
    fake.mkdir(parents=True, exist_ok=True)
    (fake / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (fake / "scontrol").chmod(0o755)
    path = os.pathsep.join([str(fake), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {
        **os.environ,
        "PATH": path,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        **extra,
    }


def snakemake(*args: str, cwd: Path, timeout: float = 900, snakefile: Path = REPO / "Snakefile", extra_env=None, **kw):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), *args]
    return subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env(cwd, **(extra_env or {})), **kw
    )


def plans(workdir: Path, steps: list[tuple], snakefile: Path = REPO / "Snakefile") -> list[dict]:
    """Run dry-run steps (op, config[, forcerun rules]) (see plan_driver.py) in one process; one result per
    step."""
    spec = {
        "snakefile": str(snakefile),
        "workdir": str(workdir),
        "steps": [{"op": s[0], "config": str(s[1]), "forcerun": list(s[2:][0]) if s[2:] else []} for s in steps],
    }
    r = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("plan_driver.py"))],
        input=json.dumps(spec), cwd=workdir, capture_output=True, text=True, timeout=900, env=env(workdir),
    )  # fmt: skip
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == len(steps), r.stdout[-2000:] + r.stderr[-4000:]
    return lines


def tiny_config(model_dir: Path | str, **changes) -> dict:
    cfg = yaml.safe_load(TINY.read_text())
    cfg["models"]["tiny"]["source"]["path"] = str(model_dir)
    cfg.update(changes)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def copy_data(dest: Path) -> None:
    """The default data files under `dest`, at the same relative paths the tiny config names."""
    for name in ("data/default/tasks.json", "data/default/personas.json", "data/paper/prodigy_seeds.json"):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
