"""After `kill -9` of the snakemake head process, the same command resumes (no --unlock), and its
results are byte-identical to an uninterrupted run; a second head in the same directory is still refused."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .workflow import REPO, copy_data, env, snakemake, tiny_config, write_config

TARGETS = ["results/data/personas/A.jsonl", "results/data/personas/B.jsonl", "results/data/tasks/test.jsonl"]


def checkout(work: Path) -> Path:
    work.mkdir(parents=True)
    copy_data(work)
    (work / "model").mkdir()
    write_config(work / "cfg.yaml", tiny_config(work / "model"))
    return work


def outputs(work: Path) -> dict[str, bytes]:
    return {t: (work / t).read_bytes() for t in TARGETS}


def kill_head_while_locked(work: Path) -> None:
    """Start the run, wait until Snakemake holds its locks (jobs running), then SIGKILL the head and its jobs."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *TARGETS, "--cores", "1", "--configfile", "cfg.yaml"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=work, env=env(work), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    locks = work / ".snakemake" / "locks"
    deadline = time.time() + 120
    while time.time() < deadline and not (locks.is_dir() and any(locks.glob("*.lock"))):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the head and the job it runs: a crashed machine or session
    proc.wait()
    assert any(locks.glob("*.lock")), "the run was killed holding its Snakemake locks"


@pytest.mark.slow
def test_same_command_resumes_after_kill_9(tmp_path):
    clean = checkout(tmp_path / "clean")
    r = snakemake(*TARGETS, "--cores", "1", "--configfile", "cfg.yaml", cwd=clean)
    assert r.returncode == 0, r.stderr[-3000:]

    crashed = checkout(tmp_path / "crashed")
    kill_head_while_locked(crashed)
    r = snakemake(*TARGETS, "--cores", "1", "--configfile", "cfg.yaml", cwd=crashed)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "removed a stale Snakemake lock" in r.stderr
    assert outputs(crashed) == outputs(clean)
    # nothing left that a later run trips over or a user takes for a result
    assert not list((crashed / "results").rglob(".*.tmp"))
    for meta in (crashed / "results").rglob("*.meta.json"):
        assert meta.with_name(meta.name.removesuffix(".meta.json")).exists()


def test_a_live_head_keeps_its_locks(tmp_path):
    """While another head holds the kernel lock, Snakemake's lock files are live and a second run is
    refused (concurrent runs in one directory stay safe)."""
    work = checkout(tmp_path / "w")
    locks = work / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    # the lock files of a running head whose outputs overlap ours
    (locks / "0.output.lock").write_text("\n".join(TARGETS) + "\n")
    (locks / "0.input.lock").write_text("")
    fd = os.open(work / ".snakemake" / "stargate.head.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the live head
    os.write(fd, json.dumps({"pid": 4242, "started_at": time.time(), "argv": ["snakemake", "--cores", "2"]}).encode())
    try:
        r = snakemake(*TARGETS, "--cores", "1", "--configfile", "cfg.yaml", cwd=work, timeout=300)
        out = r.stdout + r.stderr
        assert r.returncode != 0 and "another snakemake run is live in this directory (pid 4242" in out, out
        assert "kill 4242" in out and "--unlock argument" not in out  # Snakemake's advice, wrong here
        assert (locks / "0.output.lock").exists()
    finally:
        os.close(fd)  # the other head ends (or dies): its locks are now stale
    r = snakemake(*TARGETS, "--cores", "1", "--configfile", "cfg.yaml", cwd=work, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "removed a stale Snakemake lock" in r.stderr


def test_a_model_folder_finished_before_the_kill_is_kept_and_the_whole_run_planned(tmp_path, tiny_model_dir):
    """A kill after prepare-model renamed its folder into place but before the job ended leaves the folder
    whole and marked incomplete. The next head must plan the rest of the workflow, not prepare_model alone
    (Snakemake 9 masks the jobs behind a forced job that reads it through ancient(): stargate/runlock.py)."""
    work = tmp_path / "work"
    work.mkdir()
    copy_data(work)
    write_config(work / "cfg.yaml", tiny_config(tiny_model_dir))
    r = snakemake("resources/models/tiny", "--cores", "1", "--configfile", "cfg.yaml", cwd=work)
    assert r.returncode == 0, r.stderr[-3000:]
    # the marker Snakemake's file persistence writes when a job starts (removed when it ends)
    from stargate.runlock import _incomplete_marker

    marker = _incomplete_marker(work / ".snakemake" / "incomplete", "resources/models/tiny")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text('{"external_jobid": null}')
    r = snakemake("--cores", "1", "--configfile", "cfg.yaml", "-n", cwd=work)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resources/models/tiny was finished when its job was killed" in r.stderr
    planned = set(re.findall(r"^rule (\w+):", r.stdout, re.M))
    assert {"simulate", "train", "judge", "all"} <= planned and "prepare_model" not in planned, planned
    # a folder the kill left unfinished (no stargate_source.json: the rename never happened) is rebuilt
    marker.write_text('{"external_jobid": null}')
    (work / "resources/models/tiny/stargate_source.json").unlink()
    r = snakemake("--cores", "1", "--configfile", "cfg.yaml", "-n", cwd=work)
    assert r.returncode == 0 and "prepare_model" in set(re.findall(r"^rule (\w+):", r.stdout, re.M))
