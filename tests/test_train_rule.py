"""rules/train.smk inside the real workflow (dry run): every m_t is trained from m0 on m_{t-1}'s split."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def dry_run(workdir: Path, training: dict, *extra: str) -> subprocess.CompletedProcess:
    cfg = yaml.safe_load((REPO / "tests/config/tiny.yaml").read_text())
    cfg["models"]["tiny"]["source"]["path"] = str(workdir)
    cfg["iterations"] = 3
    cfg["run_name"] = "my-run"
    cfg["training"] = training
    (workdir / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-n",
            "-p",
            "--configfile",
            "cfg.yaml",
            "--workflow-profile",
            "none",
            *extra,
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )


def train_commands(stdout: str) -> dict[str, str]:
    return {m.group(1): m.group(0) for m in re.finditer(r"stargate train .*--output results/models/(m\d+).*", stdout)}


def test_train_rule_trains_every_model_from_m0(tmp_path):
    training = {"method": "sft", "learning_rate": 2e-5, "deepspeed": None}
    proc = dry_run(tmp_path, training)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    cmds = train_commands(proc.stdout)
    assert set(cmds) == {"m1", "m2", "m3"}
    for t, split in ((1, "A"), (2, "B"), (3, "A")):  # the workflow's own train_split, not a copy
        cmd = cmds[f"m{t}"]
        assert f"--base-model resources/models/tiny --data results/m{t - 1}/sft/{split}.jsonl" in cmd
        assert f"--iteration {t} " in cmd and "--gpus 0" in cmd and "results/models/m" not in cmd.split("--output")[0]
        assert f"> logs/train/m{t}.log 2>&1" in cmd
        spec = json.loads(re.search(r"--spec '(\{.*?\})'", cmd).group(1))
        assert spec["learning_rate"] == 2e-5 and spec["warmup_ratio"] == 0.1  # the schema's default, filled in
    assert "--run-name my-run" in cmds["m1"]


def test_train_rule_gpus_deepspeed_input_and_no_m0(tmp_path):
    proc = dry_run(tmp_path, {"method": "sft", "deepspeed": "zero3"}, "--set-resources", "train:gpu=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "config/deepspeed/zero3.json" in proc.stdout  # a declared input: editing it reruns training
    assert "--gpus 4" in train_commands(proc.stdout)["m2"]
    proc = dry_run(tmp_path, {"method": "sft"}, "results/models/m0")  # m0 is the base model, never trained
    assert proc.returncode != 0
