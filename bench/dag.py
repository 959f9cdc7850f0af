"""Dry-run a config's DAG: `snakemake -n` wall and CPU time, jobs per rule and model loads per rule.

    python bench/dag.py                                   # config/paper.yaml with this checkout
    python bench/dag.py --snakefile /other/checkout/Snakefile --repeat 3

A model load is a job's `--model`, `--questioner-model` or `--roleplayer-model` argument naming a local
folder (resources/models/..., results/models/...): API roles and scripted roles load nothing.
CPU time is user+sys of the snakemake process (resource.getrusage of children), which a shared machine
does not inflate the way it inflates wall time.
"""

from __future__ import annotations

import argparse
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


def dry_run(snakefile: Path, configfile: Path) -> tuple[float, float, str]:
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
            ],
            capture_output=True,
            text=True,
            cwd=snakefile.parent,
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snakefile", type=Path, default=ROOT / "Snakefile")
    ap.add_argument("--configfile", type=Path, default=ROOT / "config" / "paper.yaml")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    runs = [dry_run(args.snakefile, args.configfile) for _ in range(args.repeat)]
    jobs, loads = jobs_and_loads(runs[0][2])
    print(f"snakemake -n {args.configfile.name} ({args.snakefile}):")
    for i, (wall, cpu, _) in enumerate(runs, 1):
        print(f"  run {i}: {wall:.2f} s wall, {cpu:.2f} s CPU (user+sys)")
    print(f"  best: {min(r[0] for r in runs):.2f} s wall, {min(r[1] for r in runs):.2f} s CPU")
    print(f"{'rule':<16}{'jobs':>6}{'model loads':>13}")
    for rule, n in jobs.most_common():
        print(f"{rule:<16}{n:>6}{loads[rule]:>13}")
    print(f"{'total':<16}{sum(jobs.values()):>6}{sum(loads.values()):>13}")


if __name__ == "__main__":
    main()
