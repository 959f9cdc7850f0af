"""A kill at a random moment of each stage kind, then the same command again: the results are byte-identical
to an uninterrupted run's, and nothing is left that a later run trips over or a user takes for a result.

One crashed run: the whole workflow (a cut-down tiny config: every stage kind, 1 iteration) is started;
when the first job of the next stage kind on the list starts (its log file appears), the process group
(head and jobs) is SIGKILLed after a seeded random delay within that job's duration in the clean run;
then the same command is started again, until it finishes. The stage kinds are killed in the order they
first ran in the clean run, so each one is met running.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .workflow import REPO, copy_data, env, snakemake, tiny_config, write_config

KINDS = ["prepare_model", "oracle", "simulate", "pool", "score", "shuffle", "topk", "regularize", "sft_data",
         "train", "winrate_answer", "judge", "summarize"]  # fmt: skip
CMD = ["--cores", "2", "--configfile", "cfg.yaml"]
# What legitimately differs between two uninterrupted runs (checked: everything else under results/, model
# weights included, is byte-identical on CPU): times in the sidecars (`written_at`, a backend's `seconds`),
# a trained model's card and metrics (training speed, the W&B run folder) and the report's wall-time table.
VOLATILE_META = {"written_at", "seconds"}
TIMED_FILES = {"README.md", "train_metrics.json", "tables.html"}


def config(model: Path) -> dict:
    cfg = tiny_config(model, iterations=1)
    cfg["evaluation"]["conditions"] = ["qa-experimental", "shuffled", "neg-control"]
    cfg["evaluation"]["winrate"]["variants"] = [
        {"conversation": "random", "answerer": "mt", "positions": "randomized"},
        {"conversation": "top1", "answerer": "mt", "positions": "mt_b"},
    ]
    return cfg


def checkout(work: Path, model: Path) -> Path:
    work.mkdir(parents=True)
    copy_data(work)
    write_config(work / "cfg.yaml", config(model))
    return work


def timeless(obj):
    if isinstance(obj, dict):
        return {k: timeless(v) for k, v in obj.items() if k not in VOLATILE_META}
    return obj


def artifacts(work: Path) -> dict[str, bytes]:
    """Every file under results/ by relative path (sidecars without their times; timed files: names only)."""
    out = {}
    for p in sorted((work / "results").rglob("*")):
        if not p.is_file():
            continue
        data = b"" if p.name in TIMED_FILES else p.read_bytes()
        if p.name.endswith(".meta.json"):
            data = json.dumps(timeless(json.loads(data)), sort_keys=True).encode()
        out[str(p.relative_to(work))] = data
    return out


def first_starts(work: Path) -> list[str]:
    """Stage kinds in the order their first job started (the log file's creation: its birth time is not
    portable, so the earliest mtime among the kind's logs, close enough for short jobs)."""
    firsts = {k: min(p.stat().st_mtime for p in (work / "logs" / k).glob("*.log")) for k in KINDS}
    return sorted(KINDS, key=firsts.get)


def durations(work: Path) -> dict[str, float]:
    """The longest job of each kind in the clean run (its benchmark), 4 s for rules without one."""
    out = {}
    for k in KINDS:
        secs = [float(p.read_text().splitlines()[1].split("\t")[0]) for p in (work / "benchmarks" / k).glob("*.tsv")]
        out[k] = max(secs, default=4.0)
    return out


def started_since(work: Path, kind: str, t0: float) -> bool:
    return any(p.stat().st_mtime >= t0 for p in (work / "logs" / kind).glob("*.log"))


def group_gone(pgid: int, wait: float = 10.0) -> bool:
    deadline = time.time() + wait
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def crashed_run(work: Path, order: list[str], window: dict[str, float], rng: random.Random) -> list[tuple]:
    """Run the command, killing it once per kind in `order`; returns (kind, delay) of each kill."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *CMD]
    kills, pending = [], list(order)
    for _attempt in range(len(order) + 1):
        t0 = time.time() - 0.5  # mtime granularity
        with open(work / f"attempt{_attempt}.log", "w") as log:
            proc = subprocess.Popen(cmd, cwd=work, env=env(work), stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        while proc.poll() is None:
            if pending and started_since(work, pending[0], t0):
                delay = rng.uniform(0, window[pending[0]])
                time.sleep(delay)
                os.killpg(proc.pid, signal.SIGKILL)  # the head and every job it runs
                proc.wait()
                assert group_gone(proc.pid), "a job outlived the killed head"
                kills.append((pending.pop(0), round(delay, 2)))
                break
            time.sleep(0.05)
        else:
            assert proc.returncode == 0, (work / f"attempt{_attempt}.log").read_text()[-4000:]
            return kills
    raise AssertionError(f"the run did not finish after {len(order)} kills: {kills}")


@pytest.mark.slow
def test_a_kill_in_every_stage_kind_then_the_same_command_gives_identical_results(tmp_path, tiny_model_dir):
    clean = checkout(tmp_path / "clean", tiny_model_dir)
    r = snakemake(*CMD, cwd=clean, timeout=1800)
    assert r.returncode == 0, r.stderr[-4000:]

    crashed = checkout(tmp_path / "crashed", tiny_model_dir)
    kills = crashed_run(crashed, first_starts(clean), durations(clean), random.Random(11))
    print(f"killed: {kills}")
    # every kind was met running (a kind missed: all its jobs ran between two kills, still a clean resume)
    assert len(kills) >= len(KINDS) - 2, kills

    want, got = artifacts(clean), artifacts(crashed)
    assert sorted(got) == sorted(want)
    assert [p for p in want if got[p] != want[p]] == []
    # nothing a later run trips over or a user takes for a result
    results, models = crashed / "results", crashed / "resources" / "models"
    assert not [
        p for p in (*results.rglob(".*"), *models.glob(".*")) if p.name.endswith((".tmp", ".partial", ".work"))
    ]
    assert not list((crashed / ".snakemake" / "incomplete").rglob("*"))
    r = snakemake("-n", *CMD, cwd=crashed, timeout=600)
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr
