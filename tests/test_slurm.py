"""SLURM support (issue 5): the profiles dry-run the paper DAG with its resources, the bare profile name
resolves after scripts/install-profiles.sh, and a real single-node SLURM cluster runs the workflow.

Fast tests (default run) need only Snakemake. The `slow` tests start a real SLURM cluster with
scripts/slurm/start-cluster.sh (root + apt; Debian packages slurmctld slurmd munge slurmdbd mariadb)
and submit through real `sbatch`:

    .venv/bin/python -m pytest -m slow tests/test_slurm.py -s     # -s prints the measured times

Environment:
    STARGATE_SLURM_TEST_CONFIG   config for the end-to-end run (default: config/config.yaml, the
                                 embedded CPU default), relative to the repository or absolute
    STARGATE_SLURM_TEST_TIMEOUT  seconds before the end-to-end snakemake is SIGKILLed (default 1200)
    STARGATE_SLURM_KEEP=1        leave the cluster running after the tests even if they started it

Every snakemake call is wrapped in `timeout -s KILL`: the SLURM executor ignores SIGTERM and waits
forever when its `sacct` polls fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake") if (BIN / "snakemake").exists() else shutil.which("snakemake")
SLURM_PROFILE = REPO / "profiles" / "slurm"
PAPER_CONFIG = REPO / "config" / "paper.yaml"
START = REPO / "scripts" / "slurm" / "start-cluster.sh"
STOP = REPO / "scripts" / "slurm" / "stop-cluster.sh"
INSTALL = REPO / "scripts" / "install-profiles.sh"

# Rules that run on GPUs in the paper (spec §8); the API roles (oracle, personas, judge) do not.
PAPER_GPU_RULES = {"simulate", "score", "regularize", "train", "winrate_answer"}

pytestmark = pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed")


# ----------------------------------------------------------------------------- helpers
def run(cmd: list[str], *, cwd: Path, timeout: int, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command under `timeout -s KILL` (a hung SLURM executor ignores SIGTERM)."""
    return subprocess.run(
        ["timeout", "-s", "KILL", str(timeout), *cmd], cwd=cwd, env=env, capture_output=True, text=True
    )


def snakemake(args: list[str], *, cwd: Path, timeout: int = 180, env: dict | None = None):
    return run([SNAKEMAKE, *args], cwd=cwd, timeout=timeout, env=env)


def output_of(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def workdir_for_repo(tmp_path: Path) -> Path:
    """A fresh working directory for the repo's Snakefile (`-s REPO/Snakefile`): config/ is linked in, so
    `config/paper.yaml` (the slurm profile's configfile) resolves, and no result of the checkout is reused."""
    wd = tmp_path / "work"
    wd.mkdir()
    (wd / "config").symlink_to(REPO / "config")
    return wd


def dry_run_jobs(text: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) for every job block of `snakemake -n` output."""
    jobs: list[tuple[str, dict[str, str]]] = []
    rule = None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            rule = m.group(1)
            jobs.append((rule, {}))
            continue
        m = re.match(r"^\s+resources: (.*)$", line)
        if m and rule is not None:
            for item in m.group(1).split(", "):
                key, _, value = item.partition("=")
                jobs[-1][1][key] = value
    return jobs


def expected_value(value, attempt: int = 1) -> str:
    """A set-resources value as Snakemake evaluates it on the first attempt (quoted expressions allowed)."""
    if isinstance(value, str):
        return str(eval(value, {"__builtins__": {}}, {"attempt": attempt}))  # noqa: S307 - our own profile
    return str(value)


def slurm_profile() -> dict:
    return yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())


# ----------------------------------------------------------------------------- fast: profiles
def test_profiles_are_valid_yaml_and_every_key_commented():
    for name in ("default", "local-gpu", "slurm"):
        path = REPO / "profiles" / name / "config.yaml"
        data = yaml.safe_load(path.read_text())
        assert isinstance(data, dict) and data, path
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if re.match(r"^[a-z][\w-]*:", line):  # a top-level key: a comment must sit right above it
                assert i > 0 and lines[i - 1].lstrip().startswith("#"), f"{path}: key without comment: {line}"


def test_default_profile_sets_no_platform_keys():
    """profiles/default is applied after --profile and wins on shared keys, so it must not set these."""
    data = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    platform_keys = set(slurm_profile()) | set(yaml.safe_load((REPO / "profiles/local-gpu/config.yaml").read_text()))
    assert not set(data) & platform_keys, set(data) & platform_keys


def test_slurm_profile_dry_run_prints_paper_dag_with_resources(tmp_path):
    if not PAPER_CONFIG.exists():
        pytest.fail("config/paper.yaml is missing: profiles/slurm runs the paper config")
    wd = workdir_for_repo(tmp_path)
    proc = snakemake(["-s", str(REPO / "Snakefile"), "-n", "--profile", str(SLURM_PROFILE)], cwd=wd)
    out = output_of(proc)
    assert proc.returncode == 0, out[-4000:]
    assert f"Using profiles {SLURM_PROFILE}" in out
    jobs = dry_run_jobs(out)
    rules = {rule for rule, _ in jobs}
    missing = PAPER_GPU_RULES - rules
    assert not missing, f"paper DAG lacks GPU rules {missing}"
    paper = yaml.safe_load(PAPER_CONFIG.read_text())
    n_train = sum(1 for rule, _ in jobs if rule == "train")
    assert n_train == int(paper["iterations"]), (n_train, paper["iterations"])
    # Every job shows its resources, and the profile's per-rule sizes are what the jobs get.
    set_resources = slurm_profile()["set-resources"]
    for rule, res in jobs:
        if rule == "all":
            continue
        assert {"mem_mb", "runtime", "gpu"} <= set(res), (rule, res)
        for key, value in set_resources.get(rule, {}).items():
            assert res.get(key) == expected_value(value), (rule, key, res.get(key), value)
    for rule in PAPER_GPU_RULES:
        assert all(int(res["gpu"]) >= 1 for r, res in jobs if r == rule), rule
    assert all(int(res["gpu"]) == 0 for r, res in jobs if r in {"oracle", "judge", "personas", "pool", "topk"})


def test_local_gpu_profile_dry_run(tmp_path):
    wd = workdir_for_repo(tmp_path)
    profile = REPO / "profiles" / "local-gpu"
    args = ["-s", str(REPO / "Snakefile"), "-n", "--workflow-profile", str(profile), "--configfile", str(PAPER_CONFIG)]
    proc = snakemake(args, cwd=wd)
    out = output_of(proc)
    assert proc.returncode == 0, out[-4000:]
    jobs = dry_run_jobs(out)
    # one simulate job holds both models: Mistral-7B on 1 GPU + Mixtral-8x7B on 2 (rules/simulate.smk)
    assert any(r == "simulate" and res["gpu"] == "3" and res["questioner_gpu"] == "1" for r, res in jobs)


# ----------------------------------------------------------------------------- fast: sbatch lines
PLUGIN = "snakemake-executor-plugin-slurm"


class _Resources(dict):
    """A job's resources as the plugin reads them: `.get(name)` and attribute access."""

    def __getattr__(self, name):
        return self[name] if name in self else None


def plugin_sbatch_line(rule: str, resources: dict[str, str], threads: int) -> list[str]:
    """The sbatch command the installed plugin builds for a job with these resources and threads (its own
    get_submit_command + set_gres_string, the two calls of its run_job), split as the shell splits it."""
    import shlex
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    values = _Resources({k: int(v) if re.fullmatch(r"-?\d+", v) else v for k, v in resources.items()})
    job = SimpleNamespace(resources=values, threads=threads, name=rule)
    params = {"run_uuid": "stargate_x", "slurm_logfile": "x.log", "comment_str": f"rule_{rule}", "account": "",
              "partition": "", "workdir": "/w"}  # fmt: skip
    return shlex.split(get_submit_command(job, params) + set_gres_string(job))


def assert_one_task_line(argv: list[str], gpus: int, cpus: int, mem_mb: int, minutes: int) -> None:
    """One task with N GPUs, the rule's threads as --cpus-per-task, its memory and its time."""
    assert f"--gpus={gpus}" in argv, argv
    assert f"--cpus-per-task={cpus}" in argv, argv
    assert argv[argv.index("--mem") + 1] == str(mem_mb), argv
    assert argv[argv.index("-t") + 1] == str(minutes), argv
    # no task geometry: SLURM's default of one task (plugin 2.6.1 adds --ntasks-per-gpu=1 unless tasks_per_gpu: 0)
    assert not [a for a in argv if a.startswith(("--ntasks", "-n"))], argv


def test_slurm_profile_submits_every_gpu_rule_as_one_task(tmp_path):
    """Every GPU job of the paper DAG, as the pinned plugin would submit it through profiles/slurm."""
    wd = workdir_for_repo(tmp_path)
    proc = snakemake(["-s", str(REPO / "Snakefile"), "-n", "--profile", str(SLURM_PROFILE)], cwd=wd)
    assert proc.returncode == 0, output_of(proc)[-4000:]
    from stargate.plan.hours import parse_dry_run

    profile = slurm_profile()
    seen = set()
    for job in parse_dry_run(proc.stdout):
        if job.rule == "all" or int(job.resources.get("gpu", 0)) == 0 or job.rule in seen:
            continue
        rule = job.rule
        seen.add(rule)
        # a dry-run through the slurm executor prints no threads: the job gets set-threads (rule threads otherwise)
        argv = plugin_sbatch_line(rule, job.resources, job.threads or profile["set-threads"][rule])
        want = profile["set-resources"][rule]
        assert_one_task_line(
            argv, want["gpu"], profile["set-threads"][rule], want["mem_mb"], int(expected_value(want["runtime"]))
        )
    assert seen == PAPER_GPU_RULES | {"score_control"}, seen


def test_the_slurm_plugin_is_pinned_to_the_version_installed():
    """The sbatch lines above depend on the plugin's version (2.6.1 adds --ntasks-per-gpu=1 by default)."""
    from importlib.metadata import version

    text = (REPO / "pyproject.toml").read_text()
    pin = re.search(rf'"{PLUGIN}==([\d.]+)"', text)
    assert pin, f"{PLUGIN} is not pinned with == in pyproject.toml"
    assert version(PLUGIN) == pin.group(1)


# ----------------------------------------------------------------------------- fast: bare profile name
def isolated_env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env["HOME"] = str(tmp_path / "home")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-home")
    env["XDG_CONFIG_DIRS"] = str(tmp_path / "xdg-sys")  # keep /etc/xdg/snakemake out of the search
    return env


def test_bare_profile_name_resolves_after_install(tmp_path):
    env = isolated_env(tmp_path)
    wd = workdir_for_repo(tmp_path)
    args = ["-s", str(REPO / "Snakefile"), "-n", "--profile", "slurm"]

    before = snakemake(args, cwd=wd, env=env)
    assert before.returncode != 0
    assert "profile directory given (slurm)" in output_of(before)

    inst = run(["bash", str(INSTALL)], cwd=REPO, timeout=60, env=env)
    assert inst.returncode == 0, output_of(inst)
    link = tmp_path / "xdg-home" / "snakemake" / "slurm"
    assert link.is_symlink() and link.resolve() == SLURM_PROFILE.resolve()

    after = snakemake(args, cwd=wd, env=env)
    out = output_of(after)
    assert after.returncode == 0, out[-4000:]
    assert "Using profiles slurm" in out
    # the slurm profile's per-rule resources were applied
    jobs = dry_run_jobs(out)
    gpu = slurm_profile()["set-resources"]["simulate"]["gpu"]
    assert any(r == "simulate" and res["gpu"] == str(gpu) for r, res in jobs)


def test_install_profiles_is_idempotent_and_never_clobbers(tmp_path):
    env = isolated_env(tmp_path)
    dest = tmp_path / "xdg-home" / "snakemake"
    dest.mkdir(parents=True)
    (dest / "local-gpu").mkdir()  # a user's own profile of the same name
    (dest / "local-gpu" / "config.yaml").write_text("cores: 1\n")

    first = run(["bash", str(INSTALL)], cwd=tmp_path, timeout=60, env=env)
    assert first.returncode == 1 and "--force" in output_of(first)
    assert (dest / "slurm").is_symlink()
    assert (dest / "local-gpu" / "config.yaml").read_text() == "cores: 1\n"

    second = run(["bash", str(INSTALL)], cwd=tmp_path, timeout=60, env=env)
    assert "already installed" in output_of(second)

    forced = run(["bash", str(INSTALL), "--force"], cwd=tmp_path, timeout=60, env=env)
    assert forced.returncode == 0, output_of(forced)
    assert (dest / "local-gpu").is_symlink()
    assert list(dest.glob("local-gpu.bak.*")), "the replaced folder is kept aside"

    gone = run(["bash", str(INSTALL), "--uninstall"], cwd=tmp_path, timeout=60, env=env)
    assert gone.returncode == 0
    assert not (dest / "slurm").exists() and not (dest / "local-gpu").exists()


# ----------------------------------------------------------------------------- slow: a real cluster
def sacct_jobs(job_name: str) -> list[dict[str, str]]:
    """Top-level allocations (-X) of one Snakemake run, from the accounting database."""
    fields = ["JobID", "JobName", "Comment", "State", "ReqTRES", "AllocTRES"]
    proc = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", "now-1days", "--name", job_name, "-o", ",".join(fields)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [dict(zip(fields, line.split("|"), strict=False)) for line in proc.stdout.splitlines() if line]
    for row in rows:
        m = re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", row["Comment"])
        row["rule"] = m.group(1) if m else ""
    return rows


def cancel_run(job_name: str | None) -> None:
    if job_name:
        subprocess.run(["scancel", "--name", job_name], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def slurm_cluster():
    """Start the project's single-node cluster (or reuse a running one); stop it afterwards if we started it."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM cluster test needs root (it installs Debian packages and starts daemons)")
    have_pkgs = shutil.which("slurmctld") or Path("/usr/sbin/slurmctld").exists()
    if not have_pkgs and not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and apt-get is unavailable to install it")
    was_running = subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0 if have_pkgs else False
    t0 = time.monotonic()
    proc = run(["bash", str(START)], cwd=REPO, timeout=600)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, output_of(proc)[-4000:]
    print(f"\n[slurm] start-cluster.sh: {elapsed:.1f} s (already running: {was_running})")
    yield {"start_s": elapsed}
    if not was_running and os.environ.get("STARGATE_SLURM_KEEP") != "1":
        run(["bash", str(STOP)], cwd=REPO, timeout=180)


def slurm_run_args(job_prefix: str) -> list[str]:
    """Command-line overrides that fit the profile onto a 2-CPU, 1-fake-GPU test node.

    Command-line keys replace the profile's whole entry: these drop the paper's per-rule sizes (64-128 GB,
    1-2 GPUs) and keep everything else of profiles/slurm (executor, retries, requeue, latency...).
    """
    return [
        "--profile",
        str(SLURM_PROFILE),
        "--jobs",
        "4",
        "--latency-wait",
        "5",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-jobname-prefix",
        job_prefix,
        "--slurm-keep-successful-logs",
        "--retries",
        "0",
    ]


def job_name_from(out: str) -> str | None:
    m = re.search(r"SLURM run ID: (\S+)", out)
    return m.group(1) if m else None


def recording_sbatch(tmp_path: Path) -> tuple[Path, Path]:
    """A `sbatch` first on PATH that runs the real one and records what the plugin submitted: its argv, the job
    id and `scontrol show job` of the job just queued (one JSON line per submission)."""
    real = shutil.which("sbatch") or "/usr/bin/sbatch"
    folder, record = tmp_path / "sbatch-recorder", tmp_path / "sbatch.jsonl"
    folder.mkdir()
    script = f"""#!{sys.executable}
import json, subprocess, sys
proc = subprocess.run([{real!r}, *sys.argv[1:]], stdin=sys.stdin, capture_output=True, text=True)
sys.stdout.write(proc.stdout)
sys.stderr.write(proc.stderr)
job = proc.stdout.strip().split(";")[0]
shown = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True).stdout if job else ""
with open({str(record)!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "rc": proc.returncode, "job": job, "scontrol": shown}}) + "\\n")
sys.exit(proc.returncode)
"""
    (folder / "sbatch").write_text(script)
    (folder / "sbatch").chmod(0o755)
    return folder, record


def submissions(record: Path, rule: str) -> list[dict]:
    """The recorded sbatch calls of one rule (the plugin's --comment is rule_<rule>[_wildcards_...])."""
    rows = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    out = []
    for row in rows:
        argv = row["argv"]
        comment = argv[argv.index("--comment") + 1] if "--comment" in argv else ""
        if re.match(rf"rule_{rule}(_wildcards_|$)", comment):
            out.append(row)
    return out


@pytest.mark.slow
def test_slurm_cluster_runs_cpu_and_gpu_jobs(slurm_cluster, tmp_path):
    """A throwaway two-rule workflow through the project's slurm profile: the quickest proof of the path."""
    (tmp_path / "Snakefile").write_text(
        'rule all:\n    input: "cpu.txt", "gpu.txt"\n    localrule: True\n\n'
        'rule tasks:\n    output: "cpu.txt"\n    threads: 1\n'
        "    resources: gpu=0, mem_mb=500, runtime=5\n"
        '    shell: "echo job=$SLURM_JOB_ID cvd=${{CUDA_VISIBLE_DEVICES:-none}} > {output}"\n\n'
        'rule questioner_turn:\n    output: "gpu.txt"\n    threads: 2\n'
        "    resources: gpu=1, mem_mb=500, runtime=5\n"
        '    shell: "echo job=$SLURM_JOB_ID gpus={resources.gpu} cvd=$CUDA_VISIBLE_DEVICES > {output}"\n'
    )
    (tmp_path / "tiny.yaml").write_text("{}\n")
    recorder, record = recording_sbatch(tmp_path)
    env = dict(os.environ, PATH=f"{recorder}:{BIN}:{os.environ['PATH']}")
    args = [
        *slurm_run_args("stargatesmoke"),
        "--workflow-profile",
        "none",
        "--configfile",
        "tiny.yaml",
        "--set-resources",
        "questioner_turn:gpu=1",
        "--set-threads",
        "tasks=1",
    ]
    t0 = time.monotonic()
    proc = snakemake(args, cwd=tmp_path, timeout=300, env=env)
    elapsed = time.monotonic() - t0
    out = output_of(proc)
    name = job_name_from(out)
    cancel_run(name)
    assert proc.returncode == 0, out[-5000:]
    print(f"[slurm] two-job smoke workflow: {elapsed:.1f} s")
    assert "cvd=0" in (tmp_path / "gpu.txt").read_text()  # SLURM gave the job its own device
    assert "cvd=none" in (tmp_path / "cpu.txt").read_text()
    rows = {r["rule"]: r for r in sacct_jobs(name)}
    assert set(rows) == {"tasks", "questioner_turn"}, rows
    assert all(r["State"] == "COMPLETED" for r in rows.values()), rows
    assert "gres/gpu=1" in rows["questioner_turn"]["ReqTRES"] and "gres/gpu=1" in rows["questioner_turn"]["AllocTRES"]
    assert "gres/gpu" not in rows["tasks"]["AllocTRES"]
    # what the plugin submitted for the GPU rule: one task with its GPU, its 2 threads as CPUs, its memory and time
    (gpu_job,) = submissions(record, "questioner_turn")
    print(f"[slurm] GPU rule submitted as: {' '.join(gpu_job['argv'][:-1])} <command>")
    assert_one_task_line(gpu_job["argv"], gpus=1, cpus=2, mem_mb=500, minutes=5)
    assert re.search(r"\bNumTasks=1\b", gpu_job["scontrol"]) and re.search(r"\bNumCPUs=2\b", gpu_job["scontrol"]), (
        gpu_job
    )


TINY_OVERLAY = {
    # Merged into config/config.yaml: the embedded default with fewer pairs, one iteration, one turn and
    # short generations, so the run fits in minutes on 2 CPUs.
    "run_name": "slurm-test",
    "iterations": 1,
    "data": {
        "tasks": {"source": "file", "path": "tiny/tasks.json"},
        "personas": {"source": "file", "path": "tiny/personas.json"},
    },
    "simulation": {"conversations_per_pair": 2, "min_turns": 1, "max_turns": 1},
    "roles": {
        role: {"sampling": {"max_tokens": 12}} for role in ("questioner", "roleplayer", "oracle", "answerer", "judge")
    },
    "training": {"max_length": 256},
    # one scored condition per conversation set, one conversation-free control (5 fewer GPU jobs)
    "evaluation": {"conditions": ["qa-experimental", "neg-control"]},
}


def write_tiny_config(wd: Path) -> Path:
    """The tiny overlay plus 2 tasks x 2 personas per split cut from the embedded default data."""
    (wd / "tiny").mkdir()
    for name in ("tasks", "personas"):
        full = json.loads((REPO / "data" / "default" / f"{name}.json").read_text())
        tiny = {split: full[split][:2] for split in ("A", "B", "test")}
        (wd / "tiny" / f"{name}.json").write_text(json.dumps(tiny, indent=1))
    # A complete config (config/config.yaml with the overlay merged in), so the run does not depend on
    # whether Snakemake merges a --configfile into the Snakefile's configfile or replaces it.
    config = merged(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), TINY_OVERLAY)
    path = wd / "tiny" / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def merged(base: dict, overlay: dict) -> dict:
    out = dict(base)
    for key, value in overlay.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.mark.slow
def test_default_workflow_through_slurm(slurm_cluster, tmp_path):
    """The real workflow (embedded default config, cut down) through executor: slurm and real sbatch; the
    Questioner and scorer rules request a (fake) GPU and SLURM schedules them against it."""
    wd = workdir_for_repo(tmp_path)
    config = os.environ.get("STARGATE_SLURM_TEST_CONFIG")
    if config:  # e.g. config/config.yaml: the full embedded default (about 30 min on 2 busy CPUs)
        config_path = Path(config) if Path(config).is_absolute() else REPO / config
    else:
        config_path = write_tiny_config(wd)
    # Reuse the checkout's converted SmolLM2 when there is one (`make test-slow` prepares it): saves a
    # minute-long prepare_model job; on a bare checkout that job runs through SLURM like the others.
    prepared = REPO / "resources" / "models" / "smollm2"
    recipe = REPO / "resources" / "model_recipes" / "smollm2.json"  # what the folder was made from
    reused_model = (prepared / "config.json").exists() and recipe.exists()
    if reused_model:
        (wd / "resources" / "models").mkdir(parents=True)
        (wd / "resources" / "models" / "smollm2").symlink_to(prepared)
        (wd / "resources" / "model_recipes").mkdir(parents=True)
        (wd / "resources" / "model_recipes" / "smollm2.json").symlink_to(recipe)
    timeout = int(os.environ.get("STARGATE_SLURM_TEST_TIMEOUT", "1200"))
    recorder, record = recording_sbatch(tmp_path)
    env = dict(os.environ, PATH=f"{recorder}:{BIN}:{os.environ['PATH']}", HF_HUB_OFFLINE="1", WANDB_MODE="offline")
    gpu_rules = ["simulate", "score"]  # hf backend: `--gpus 1` without CUDA falls back to CPU
    args = [
        "-s",
        str(REPO / "Snakefile"),
        *slurm_run_args("stargatee2e"),
        "--configfile",
        str(config_path),
        "--set-resources",
        *[f"{r}:gpu=1" for r in gpu_rules],
        "--set-threads",
        "train=2",
        "--max-threads",  # the rules' MODEL_THREADS (8) would ask a 2-CPU node for 8 cores
        "2",
    ]
    t0 = time.monotonic()
    proc = snakemake(args, cwd=wd, timeout=timeout, env=env)
    elapsed = time.monotonic() - t0
    out = output_of(proc)
    name = job_name_from(out)
    cancel_run(name)
    assert proc.returncode == 0, out[-6000:]
    print(f"[slurm] workflow ({config or 'tiny overlay on config/config.yaml'}) through SLURM: {elapsed:.1f} s")
    assert list((wd / "results" / "summary").glob("*/summary.json"))  # results/summary/<run_name>/

    rows = sacct_jobs(name)
    by_rule: dict[str, list[dict]] = {}
    for r in rows:
        by_rule.setdefault(r["rule"], []).append(r)
    print(f"[slurm] sacct: {len(rows)} jobs: " + ", ".join(f"{k}={len(v)}" for k, v in sorted(by_rule.items())))
    assert all(r["State"] == "COMPLETED" for r in rows), [r for r in rows if r["State"] != "COMPLETED"]
    # everything except the local rules went through sbatch
    expected = ["tasks", "simulate", "pool", "score", "train", "winrate_answer", "judge"]
    for rule in expected + ([] if reused_model else ["prepare_model"]):
        assert rule in by_rule, f"no SLURM job for {rule}: {sorted(by_rule)}"
    assert "summarize" not in by_rule and "all" not in by_rule  # localrule: True
    for rule in gpu_rules:
        for r in by_rule[rule]:
            assert "gres/gpu=1" in r["ReqTRES"] and "gres/gpu=1" in r["AllocTRES"], r
    for r in by_rule["train"]:
        assert "gres/gpu" not in r["AllocTRES"], r
    # the project's GPU rule as the plugin submitted it: one task, its GPU, its threads (capped at 2 by
    # --max-threads) as CPUs, and the memory and time the workflow gives the rule
    dry = snakemake([*args, "-n", "--forceall"], cwd=wd, env=env)
    from stargate.plan.hours import parse_dry_run

    planned = [j for j in parse_dry_run(dry.stdout) if j.rule == "simulate"]
    sims = submissions(record, "simulate")
    assert planned and sims, (output_of(dry)[-3000:], sims)
    res = planned[0].resources
    for sub in sims:
        assert_one_task_line(sub["argv"], gpus=1, cpus=2, mem_mb=int(res["mem_mb"]), minutes=int(res["runtime"]))
        assert re.search(r"\bNumTasks=1\b", sub["scontrol"]), sub
