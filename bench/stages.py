"""Where each stage's time goes, from a finished run: model load, forward passes, and the rest.

    python bench/stages.py /tmp/run              # a working directory `snakemake --cores 2` finished in
    python bench/stages.py /tmp/run --imports    # also: import cost of each stage in a fresh interpreter

Per rule: jobs, wall and CPU seconds (Snakemake's benchmarks/*.tsv: `s`, `cpu_time` = user+sys of the job),
the seconds the hf backend logged for loading the model ("loaded ... in X s") and for its forward passes
("generated ... in X s", "scored ... in X s"), and the rest (wall - load - forward: interpreter start and
imports, tokenisation and prompt rendering, reading and writing files). Training is logged differently:
its forward/backward time counts as "rest". Overhead = load + rest of the model-calling jobs; on a shared
machine compare CPU seconds, wall seconds grow with the other processes.
"""

from __future__ import annotations

import argparse
import csv
import re
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

LOADED = re.compile(r"stargate\.backends\.hf: loaded .* in ([\d.]+)s")
FORWARD = re.compile(r"stargate\.backends\.hf: (?:generated|scored) .* in ([\d.]+)s")


def rule_of(path: Path, root: Path) -> str:
    return path.relative_to(root).parts[0]


def collect(run: Path) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for tsv in sorted((run / "benchmarks").rglob("*.tsv")):
        with tsv.open() as fh:
            rec = next(csv.DictReader(fh, delimiter="\t"))
        r = rows[rule_of(tsv, run / "benchmarks")]
        r["jobs"] += 1
        r["wall"] += float(rec["s"])
        r["cpu"] += float(rec["cpu_time"])
        log = run / "logs" / tsv.relative_to(run / "benchmarks").with_suffix(".log")
        text = log.read_text(errors="replace") if log.exists() else ""
        r["load"] += sum(float(x) for x in LOADED.findall(text))
        r["forward"] += sum(float(x) for x in FORWARD.findall(text))
        r["loads"] += len(LOADED.findall(text))
    return rows


def import_cost(stage: str) -> tuple[float, float]:
    """(wall, CPU) of importing a stage module and the hf backend (torch, transformers) in a fresh python."""
    code = f"import stargate.stages.{stage}, stargate.backends.hf, transformers, torch"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="the working directory of a finished run")
    ap.add_argument("--imports", action="store_true", help="measure each stage's import cost")
    args = ap.parse_args()
    rows = collect(args.run)
    if not rows:
        sys.exit(f"no benchmarks/*.tsv under {args.run}")
    head = f"{'rule':<16}{'jobs':>5}{'wall s':>9}{'CPU s':>8}{'loads':>6}{'load s':>8}{'fwd s':>8}{'rest s':>8}{'fwd %':>7}"
    print(head)
    tot = defaultdict(float)
    for rule, r in sorted(rows.items(), key=lambda kv: -kv[1]["wall"]):
        rest = r["wall"] - r["load"] - r["forward"]
        share = 100 * r["forward"] / r["wall"] if r["wall"] else 0
        print(
            f"{rule:<16}{int(r['jobs']):>5}{r['wall']:>9.1f}{r['cpu']:>8.1f}{int(r['loads']):>6}"
            f"{r['load']:>8.1f}{r['forward']:>8.1f}{rest:>8.1f}{share:>6.0f}%"
        )
        for k, v in r.items():
            tot[k] += v
    rest = tot["wall"] - tot["load"] - tot["forward"]
    print(
        f"{'total':<16}{int(tot['jobs']):>5}{tot['wall']:>9.1f}{tot['cpu']:>8.1f}{int(tot['loads']):>6}"
        f"{tot['load']:>8.1f}{tot['forward']:>8.1f}{rest:>8.1f}{100 * tot['forward'] / tot['wall']:>6.0f}%"
    )
    calling = [r for r in rows.values() if r["loads"]]  # jobs that load a model through a backend
    wall = sum(r["wall"] for r in calling)
    overhead = sum(r["wall"] - r["forward"] for r in calling)
    if wall:
        print(
            f"model-calling jobs: overhead (load + rest) {overhead:.1f} s = {100 * overhead / wall:.0f}% of their wall time"
        )
    if args.imports:
        print(f"\n{'stage':<16}{'import wall s':>14}{'import CPU s':>13}")
        for stage in ("simulate", "score", "oracle", "regularize", "winrate_answer", "judge", "pool"):
            wall, cpu = import_cost(stage)
            print(f"{stage:<16}{wall:>14.2f}{cpu:>13.2f}")


if __name__ == "__main__":
    main()
