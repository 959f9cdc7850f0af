"""Dry-run a config's DAG: `snakemake -n` wall and CPU time, jobs, model loads and held GPU-hours per rule.

    python bench/dag.py                                   # config/paper.yaml on profiles/slurm, this checkout
    python bench/dag.py --snakefile /other/checkout/Snakefile --repeat 3
    python bench/dag.py --configfile before.yaml          # e.g. the paper config as it was, for before/after

A model load is a job's `--model`, `--questioner-model` or `--roleplayer-model` argument naming a local
folder (resources/models/..., results/models/...): API roles and scripted roles load nothing.
Held GPU-hours are `stargate plan`'s (stargate/plan/hours.py): each job holds the GPUs the profile gives
it for its wall time, from the throughput table; the floor column is the work's GPU-hours alone.
CPU time is user+sys of the snakemake process (resource.getrusage of children), which a shared machine
does not inflate the way it inflates wall time.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOAD = re.compile(r"--(?:questioner-|roleplayer-)?model (?:resources|results)/models/")


def dry_run(snakefile: Path, configfile: Path, profile: Path | None = None) -> tuple[float, float, str]:
    with tempfile.TemporaryDirectory() as wd:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "-n",
                "-p",
                "-s",
                str(snakefile),
                "--configfile",
                str(configfile),
                "-d",
                wd,
                *(["--profile", str(profile)] if profile else []),
            ],
            capture_output=True,
            text=True,
            cwd=snakefile.parent,
            env={**os.environ, "STARGATE_SKIP_FIT_CHECK": "1"},  # a "before" config may not fit: count it anyway
        )
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def jobs_and_loads(out: str) -> tuple[Counter, Counter]:
    jobs, loads, rule = Counter(), Counter(), None
    for line in out.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            rule = m.group(1)
            jobs[rule] += 1
        elif rule and "stargate " in line:
            loads[rule] += len(LOAD.findall(line))
    return jobs, loads


def held_gpu_hours(
    out: str, configfile: Path, profile: Path | None
) -> tuple[dict[str, dict[str, float]], float, float]:
    """Per rule {held, busy} GPU-hours of the dry-run's jobs (stargate plan's estimate), and the totals."""
    sys.path.insert(0, str(ROOT))
    from stargate.config import load_config
    from stargate.plan.cli import read_profile
    from stargate.plan.fit import resources_of_profile
    from stargate.plan.hours import estimate, load_table, parse_dry_run

    config = load_config(configfile)
    table = load_table(ROOT / "docs" / "gpu-runs.md")
    cards = [r.gpu_memory_gb for r in resources_of_profile(read_profile(profile)).values() if r.gpu_memory_gb]
    hours = estimate(parse_dry_run(out), config, ROOT, table, card_gb=cards[0] if cards else None)
    per_rule = {r: {"held": v["held"] / 3600, "busy": v["busy"] / 3600} for r, v in hours.per_rule.items()}
    return per_rule, hours.held / 3600, hours.floor / 3600


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snakefile", type=Path, default=ROOT / "Snakefile")
    ap.add_argument("--configfile", type=Path, default=ROOT / "config" / "paper.yaml")
    ap.add_argument("--profile", type=Path, default=ROOT / "profiles" / "slurm", help="'none': no profile, no GPUs")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    profile = None if str(args.profile) == "none" else args.profile.resolve()
    runs = [dry_run(args.snakefile, args.configfile.resolve(), profile) for _ in range(args.repeat)]
    jobs, loads = jobs_and_loads(runs[0][2])
    gpu_h, held, floor = held_gpu_hours(runs[0][2], args.configfile.resolve(), profile)
    print(f"snakemake -n {args.configfile.name} ({args.snakefile}, profile {profile}):")
    for i, (wall, cpu, _) in enumerate(runs, 1):
        print(f"  run {i}: {wall:.2f} s wall, {cpu:.2f} s CPU (user+sys)")
    print(f"  best: {min(r[0] for r in runs):.2f} s wall, {min(r[1] for r in runs):.2f} s CPU")
    print(f"{'rule':<16}{'jobs':>6}{'model loads':>13}{'held GPU-h':>12}{'floor GPU-h':>13}")
    for rule, n in jobs.most_common():
        h = gpu_h.get(rule)
        cols = f"{h['held']:>12.1f}{h['busy']:>13.1f}" if h else f"{'-':>12}{'-':>13}"
        print(f"{rule:<16}{n:>6}{loads[rule]:>13}{cols}")
    print(f"{'total':<16}{sum(jobs.values()):>6}{sum(loads.values()):>13}{held:>12.1f}{floor:>13.1f}")
    print("(floor total: the work's GPU-hours + one load per model per iteration; GPU-hours from stargate plan)")


if __name__ == "__main__":
    main()
