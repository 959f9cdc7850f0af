"""rules/train.smk on its own (stub helpers, dry run): every m_t is trained from m0 on m_{t-1}'s split."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")

SNAKEFILE = """
import json

config = {config}
ENV = "../envs/stargate.yaml"


def base_model_dir():
    return "resources/models/base"


def train_split(t):
    return "A" if int(t) % 2 == 0 else "B"


def repo_path(path):
    return path


include: "{rule}"
"""


def dry_run(workdir: Path, training: dict, targets: list[str], *extra: str) -> subprocess.CompletedProcess:
    config = {"run_name": "my run", "training": training}
    (workdir / "Snakefile").write_text(SNAKEFILE.format(config=repr(config), rule=REPO / "rules" / "train.smk"))
    for f in (
        "results/m0/sft/A.jsonl",
        "results/m1/sft/B.jsonl",
        "results/m2/sft/A.jsonl",
        "resources/models/base/config.json",
    ):
        (workdir / f).parent.mkdir(parents=True, exist_ok=True)
        (workdir / f).touch()
    return subprocess.run(
        [str(SNAKEMAKE), "-n", "-p", "--workflow-profile", "none", *targets, *extra],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def shell_commands(stdout: str) -> dict[str, str]:
    return {m.group(1): m.group(0) for m in re.finditer(r"stargate train .*--output results/models/(m\d+).*", stdout)}


@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed in this environment")
def test_train_rule_trains_every_model_from_m0(tmp_path):
    training = {"method": "sft", "learning_rate": 2e-5, "deepspeed": None}
    proc = dry_run(tmp_path, training, ["results/models/m1", "results/models/m2", "results/models/m3"])
    assert proc.returncode == 0, proc.stderr + proc.stdout
    cmds = shell_commands(proc.stdout)
    assert set(cmds) == {"m1", "m2", "m3"}
    for t, split in ((1, "A"), (2, "B"), (3, "A")):
        cmd = cmds[f"m{t}"]
        assert f"--base-model resources/models/base --data results/m{t - 1}/sft/{split}.jsonl" in cmd
        assert f"--iteration {t} " in cmd and "--gpus 0" in cmd and "results/models/m" not in cmd.split("--output")[0]
        assert f"> logs/train/m{t}.log 2>&1" in cmd
        spec = re.search(r"--spec '(\{.*?\})'", cmd).group(1)
        assert json.loads(spec) == training
    assert "--run-name 'my run'" in cmds["m1"]


@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed in this environment")
def test_train_rule_gpus_deepspeed_input_and_no_m0(tmp_path):
    (tmp_path / "config" / "deepspeed").mkdir(parents=True)
    shutil.copy(REPO / "config" / "deepspeed" / "zero3.json", tmp_path / "config" / "deepspeed")
    proc = dry_run(
        tmp_path, {"method": "sft", "deepspeed": "zero3"}, ["results/models/m2"], "--set-resources", "train:gpu=4"
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "config/deepspeed/zero3.json" in proc.stdout  # a declared input: editing it reruns training
    assert "--gpus 4" in shell_commands(proc.stdout)["m2"]
    proc = dry_run(tmp_path, {"method": "sft"}, ["results/models/m0"])  # m0 is the base model, never trained
    assert proc.returncode != 0
