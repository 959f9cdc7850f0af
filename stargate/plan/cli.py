"""`stargate plan`: GPU memory fit and GPU-hours of a config on a profile's GPUs, before submitting.

    stargate plan --configfile config/paper.yaml --profile profiles/slurm

Prints, per GPU rule, the peak memory of one GPU of each engine or training process it runs, term by term,
against the card (`gpu_memory_gb` in the profile, or --gpu-memory-gb), and the GPU-hours per rule and in total
from the throughput table (stargate/plan/throughput.yaml; measured figures from docs/gpu-runs.md replace its
figures), as configured (GPUs held for each job's wall time) and at the floor (every GPU busy, one load per
model per iteration). The jobs are those of a dry-run of the workflow with the same config and profile.
Exit status 1 when a job does not fit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from ..config import load_config
from ..errors import StargateError
from .fit import (
    GPU_SHARING,
    SKIP_ENV,
    gpu_sharing,
    plan_fit,
    require_card,
    resources_of_profile,
    rule_memory,
)
from .hours import Hours, Job, estimate, load_table, parse_dry_run
from .memory import GiB

MEASURED = Path("docs") / "gpu-runs.md"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--configfile", default=None, help="experiment config (default: the profile's configfile)")
    p.add_argument("--profile", default=None, help="Snakemake profile folder whose resources the jobs get")
    p.add_argument("--gpu-memory-gb", type=float, default=None, help="the card's memory (overrides the profile's)")
    p.add_argument("--snakefile", default="Snakefile", help="the workflow whose DAG is planned (default: ./Snakefile)")
    p.add_argument(
        "--measured", default=str(MEASURED), help="docs/gpu-runs.md: measured figures (default: %(default)s)"
    )
    p.add_argument("--no-hours", action="store_true", help="memory only: no dry-run, no GPU-hours")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def read_profile(folder: str | None) -> dict:
    if not folder:
        return {}
    path = Path(folder) / "config.yaml"
    if not path.is_file():
        raise StargateError(f"{folder}: no config.yaml in the profile folder")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def dry_run_jobs(snakefile: Path, configfile: Path, profile: str | None) -> list:
    """Every job of the whole DAG (a fresh working directory): `snakemake -n` with the config and profile."""
    with tempfile.TemporaryDirectory() as wd:
        cmd = [sys.executable, "-m", "snakemake", "-n", "-s", str(snakefile.resolve()), "-d", wd]
        cmd += ["--configfile", str(configfile.resolve())]
        if profile:
            cmd += ["--profile", str(Path(profile).resolve())]
        env = {**os.environ, SKIP_ENV: "1"}  # the fit is printed here; a job that does not fit is no reason to stop
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=snakefile.resolve().parent, env=env)
    if proc.returncode:
        raise StargateError(f"the dry-run failed ({' '.join(cmd)}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return parse_dry_run(proc.stdout)


def gib(x: float) -> str:
    return f"{x / GiB:.1f}"


def format_memory(fits) -> list[str]:
    lines = ["GPU memory per GPU (GiB), per job kind"]
    for f in fits:
        res = f.resources
        if res.gpu <= 0:
            lines.append(f"  {f.rule:<15} CPU job (no gpu resource)")
            continue
        for m in f.engines:
            lines.append(f"  {f.rule:<15} {m.what}: {m.fit_text()}")
            lines.append(f"  {'':<15}   {m.term_text()}")
            if "activations_without_checkpointing" in m.extra:
                ex = m.extra
                lines.append(
                    f"  {'':<15}   activations with checkpointing {gib(ex['activations_with_checkpointing'])},"
                    f" without {gib(ex['activations_without_checkpointing'])}; backward peak {gib(ex['backward'])},"
                    f" optimizer step {gib(ex['step'])} (a foreach AdamW step would be {gib(ex['foreach_step'])})"
                )
            for note in m.notes:
                lines.append(f"  {'':<15}   {note}")
            for p in m.problems:
                lines.append(f"  {'':<15}   problem: {p}")
        for note in f.notes:
            lines.append(f"  {f.rule:<15} {note}")
    return lines


def format_hours(hours: Hours, table: dict) -> list[str]:
    lines = [
        "GPU-hours per rule (throughput: stargate/plan/throughput.yaml; every figure's source is listed below)",
        f"  {'rule':<16}{'jobs':>6}{'loads':>7}{'GPU-h held (as configured)':>28}{'GPU-h busy (floor)':>20}",
    ]
    for rule, r in sorted(hours.per_rule.items(), key=lambda kv: -kv[1]["held"]):
        lines.append(
            f"  {rule:<16}{int(r['jobs']):>6}{int(r['loads']):>7}{r['held'] / 3600:>28.1f}{r['busy'] / 3600:>20.1f}"
        )
    n_loads = len(hours.floor_load_list)
    lines.append(f"  {'model loads at the floor':<29}{n_loads:>7}{'':>28}{hours.floor_loads / 3600:>20.1f}")
    lines.append(f"  {'total':<29}{'':>7}{hours.held / 3600:>28.1f}{hours.floor / 3600:>20.1f}")
    lines.append(
        "  as configured: each job holds its GPUs for its wall time (its loads + each role's work on its GPUs);"
    )
    lines.append(
        "  floor: the work's GPU-seconds alone + one load per model per iteration on the fewest GPUs that hold it"
    )
    kinds = sorted({fig.get("kind", "") for fig in table.values()})
    measured = [k for k, fig in table.items() if fig.get("kind") == "measured-here"]
    lines.append("Throughput figures (kinds: " + ", ".join(kinds) + ")")
    if not measured:
        lines.append(
            "  none was measured on a GPU by this project yet (docs/gpu-runs.md): paper-run and assumption figures"
        )
    for key, fig in table.items():
        lines.append(f"  {key}: {fig['value']} {fig.get('unit', '')} [{fig.get('kind')}] {fig.get('source', '')}")
    for note in hours.notes:
        lines.append(f"note: {note}")
    return lines


def with_gpus(jobs: list[Job], rule: str, gpus: int) -> list[Job]:
    """The jobs with `rule`'s GPU count replaced (what a profile's set-resources `rule: gpu: N` would give)."""
    return [
        Job(j.rule, j.wildcards, {**j.resources, "gpu": str(gpus)}, j.threads) if j.rule == rule else j for j in jobs
    ]


def sharing_modes(config: dict, resources: dict, root: Path, jobs: list[Job] | None, table: dict | None, card_gb):
    """Each simulation.gpu_sharing mode of the simulate job: its memory fit on the job's GPUs and, with the
    dry-run's jobs, the GPU-hours held by simulate and in total; a shared mode that does not fit on the job's
    GPUs is also tried on fewer (the fewest on which it fits, as a profile change to consider)."""
    res = resources.get("simulate")
    if res is None or res.gpu <= 0:
        return []
    rows = []
    for mode in GPU_SHARING:
        cfg = {**config, "simulation": {**config["simulation"], "gpu_sharing": mode}}
        tries = [res.gpu] + ([g for g in range(1, res.gpu)] if mode != "separate" else [])
        for gpus in tries:
            r = type(res)(**{**res.__dict__, "gpu": gpus})
            fit = rule_memory(cfg, "simulate", r, root)
            row = {"mode": mode, "gpus": gpus, "as_configured": gpus == res.gpu, "fits": not fit.problems}
            row["problems"] = fit.problems
            row["notes"] = fit.notes + [
                f"{m.what.split(', gpu_sharing')[0]}: {n}" for m in fit.engines for n in m.notes
            ]
            if jobs is not None and table is not None and (row["fits"] or gpus == res.gpu):
                hours = estimate(with_gpus(jobs, "simulate", gpus), cfg, root, table, card_gb)
                row["simulate_held_gpu_h"] = hours.per_rule.get("simulate", {}).get("held", 0.0) / 3600
                row["simulate_busy_gpu_h"] = hours.per_rule.get("simulate", {}).get("busy", 0.0) / 3600
                row["held_gpu_h"] = hours.held / 3600
            if gpus == res.gpu or row["fits"]:
                rows.append(row)
            if row["fits"] and gpus != res.gpu:
                break  # the fewest GPUs on which it fits
    return rows


def cheapest(rows: list[dict]) -> dict | None:
    """The mode that holds the fewest GPU-hours among those that fit on the job's GPUs as configured."""
    ok = [r for r in rows if r["as_configured"] and r["fits"] and "simulate_held_gpu_h" in r]
    return min(ok, key=lambda r: r["simulate_held_gpu_h"]) if ok else None


def format_sharing(rows: list[dict], configured: str) -> list[str]:
    lines = ["simulate: GPU sharing of the two engines (simulation.gpu_sharing; configured: " + configured + ")"]
    for r in rows:
        where = f"on {r['gpus']} GPU(s)" + ("" if r["as_configured"] else " (set-resources simulate gpu)")
        hours = ""
        if "simulate_held_gpu_h" in r:
            hours = (
                f"; simulate {r['simulate_held_gpu_h']:.1f} GPU-h held ({r['simulate_busy_gpu_h']:.1f} busy),"
                f" total {r['held_gpu_h']:.1f}"
            )
        lines.append(f"  {r['mode']:<14}{where}: {'fits' if r['fits'] else 'DOES NOT FIT'}{hours}")
        for note in r["notes"]:
            lines.append(f"  {'':<14}  {note}")
        for p in r["problems"]:
            lines.append(f"  {'':<14}  why not: {p}")
    best = cheapest(rows)
    if best is not None:
        lines.append(f"  cheapest that fits as configured: {best['mode']}")
    lines.append(
        "  (the throughput table takes a GPU's rate as the same whatever its KV cache: shared_memory's smaller"
        " caches may decode slower than these hours say; sleep adds each turn's weight moves, assumption"
        " sleep.offload_gb_per_s)"
    )
    return lines


def run(args: argparse.Namespace) -> None:
    profile = read_profile(args.profile)
    configfile = args.configfile or profile.get("configfile")
    if not configfile:
        raise StargateError("no config: pass --configfile (or a --profile that names one)")
    config = load_config(configfile)
    resources = resources_of_profile(profile)
    require_card(resources, args.gpu_memory_gb)
    root = Path.cwd()
    fits = plan_fit(config, resources, root)
    card_gb = next((r.gpu_memory_gb for r in resources.values() if r.gpu_memory_gb), None)
    out = {"configfile": str(configfile), "profile": args.profile, "gpu_memory_gb": card_gb}
    where = f" on {args.profile}" if args.profile else ""
    lines = [f"stargate plan: {configfile}{where} (cards of {card_gb:g} GB, read as GiB)"]
    lines += format_memory(fits)
    out["memory"] = [
        {
            "rule": f.rule,
            "gpus": f.resources.gpu,
            "engines": [
                {
                    "what": m.what,
                    "peak_gib": m.peak / GiB,
                    "fits": m.fits,
                    "terms": {t.name: t.bytes / GiB for t in m.terms},
                    "problems": m.problems,
                }
                for m in f.engines
            ],
        }
        for f in fits
    ]
    jobs = table = None
    if not args.no_hours:
        table = load_table(Path(args.measured))
        jobs = dry_run_jobs(Path(args.snakefile), Path(configfile), args.profile)
        hours = estimate(jobs, config, root, table, card_gb)
        lines += format_hours(hours, table)
        out["hours"] = {
            "per_rule": {
                k: {**v, "held_gpu_h": v["held"] / 3600, "busy_gpu_h": v["busy"] / 3600}
                for k, v in hours.per_rule.items()
            },
            "held_gpu_h": hours.held / 3600,
            "floor_gpu_h": hours.floor / 3600,
            "floor_loads_gpu_h": hours.floor_loads / 3600,
        }
    rows = sharing_modes(config, resources, root, jobs, table, card_gb)
    if rows:
        lines += format_sharing(rows, gpu_sharing(config))
        best = cheapest(rows)
        out["gpu_sharing"] = {"configured": gpu_sharing(config), "cheapest": best and best["mode"], "modes": rows}
    print(json.dumps(out, indent=1) if args.json else "\n".join(lines))
    if any(f.problems for f in fits):
        raise SystemExit(1)
