"""The figures the README states about the configs are the configs' own: job counts of the dry-runs, and the
sizes of the two runs a newcomer starts (a doc that drifts from the code is caught here, not by a reader)."""

from __future__ import annotations

import json
import re

import pytest
from test_workflow import REPO, job_counts, snakemake

from stargate.config import load_config

README = (REPO / "README.md").read_text()


def sizes(config: str) -> dict:
    cfg = load_config(REPO / config)
    tasks = json.loads((REPO / cfg["data"]["tasks"]["path"]).read_text())
    personas = json.loads((REPO / cfg["data"]["personas"]["path"]).read_text())
    return {
        "iterations": cfg["iterations"],
        "train": (len(tasks["A"]), len(personas["A"])),
        "test": (len(tasks["test"]), len(personas["test"])),
        "conversations": cfg["simulation"]["conversations_per_pair"],
    }


@pytest.mark.parametrize(
    ("config", "start"),
    [("config/world.yaml", "`make run` runs the whole STaR-GATE loop"), ("config/config.yaml", "`make run-llm` runs")],
)
def test_the_readme_states_each_runs_own_sizes(config, start):
    text = " ".join(README[README.index(start) :][:2500].split())
    s = sizes(config)
    assert f"{s['iterations']} iterations" in text
    assert f"{s['train'][0]} tasks × {s['train'][1]} personas per training split" in text
    assert f"{s['test'][0]} × {s['test'][1]} test pairs" in text
    assert f"{s['conversations']} conversations per pair" in text


@pytest.mark.slow
def test_the_readme_states_the_paper_dags_job_count(tmp_path):
    (n,) = re.findall(r"the whole paper DAG \((\d+) jobs\)", README)
    r = snakemake("-n", "--configfile", str(REPO / "config/paper.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    counts = job_counts(r.stdout)
    counts.pop("total", None)
    assert sum(counts.values()) == int(n)
