"""The paper's ablations and the Llama-3 follow-up (config/ablations/*.yaml, overlays on config/paper.yaml):
each names its paper result, validates, and dry-runs into the DAG its switch implies."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from test_workflow import snakemake

from stargate.config import load_config
from stargate.training.spec import TrainingSpec

REPO = Path(__file__).resolve().parents[1]
ABLATIONS = sorted((REPO / "config" / "ablations").glob("*.yaml"))
PAPER = REPO / "config" / "paper.yaml"


def merged(overlay: Path) -> dict:
    """paper.yaml updated by the overlay, key by key, as Snakemake merges several --configfile files."""

    def update(base: dict, new: dict) -> dict:
        for k, v in new.items():
            base[k] = update(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        return base

    return update(yaml.safe_load(PAPER.read_text()), yaml.safe_load(overlay.read_text()))


def test_the_five_ablations_exist_and_name_their_paper_result():
    assert {p.stem for p in ABLATIONS} == {
        "no-regularizer",
        "gold-regularizer",
        "mistral-roleplayer",
        "gemma-roleplayer",
        "llama3-base",
    }
    for p in ABLATIONS:
        header = "".join(line for line in p.read_text().splitlines(keepends=True) if line.startswith("#"))
        assert "Paper result:" in header and ("2403.19154" in header or "llama3-8b-stargate-m1" in header), p.name
        assert f"--configfile config/paper.yaml config/ablations/{p.name}" in header, p.name


@pytest.mark.parametrize("overlay", ABLATIONS, ids=lambda p: p.stem)
def test_ablation_validates(overlay):
    cfg = load_config(copy.deepcopy(merged(overlay)), str(overlay))
    TrainingSpec.from_dict(cfg["training"])  # the combinations the schema cannot check
    paper = load_config(yaml.safe_load(PAPER.read_text()), str(PAPER))
    changed = {k for k in cfg if cfg[k] != paper[k]} - {"run_name"}
    assert changed, "an ablation must change something beyond its name"
    expect = {
        "no-regularizer": lambda c: c["training"]["regularizer"] == "none",
        "gold-regularizer": lambda c: c["training"]["regularizer"] == "gold",
        "mistral-roleplayer": lambda c: c["roles"]["roleplayer"]["model"] == "mistral-7b-instruct-v0.2",
        "gemma-roleplayer": lambda c: (
            c["models"][c["roles"]["roleplayer"]["model"]]["source"]["hf"] == "google/gemma-7b-it"
        ),
        "llama3-base": lambda c: (
            c["iterations"] == 1
            and c["models"][c["base_model"]]["source"]["hf"] == "meta-llama/Meta-Llama-3-8B-Instruct"
            and c["prompts"] == "fixed_v1"
        ),
    }[overlay.stem]
    assert expect(cfg)
    # the roleplayer keeps the paper's decoding when only its model changes
    assert cfg["roles"]["roleplayer"]["sampling"] == paper["roles"]["roleplayer"]["sampling"]


DRY_RUN_CHECKS = {
    # (in the plan, not in the plan)
    "no-regularizer": (["--regularizer none"], ["rule regularize:"]),
    "gold-regularizer": (["--regularizer gold", "--responses results/data/oracle/A.jsonl"], ["rule regularize:"]),
    "mistral-roleplayer": (["resources/models/mistral-7b-instruct-v0.2"], ["resources/models/mixtral"]),
    "gemma-roleplayer": (["resources/models/gemma-7b-it"], ["resources/models/mixtral"]),
    "llama3-base": (["--base-model resources/models/llama-3-8b-instruct", "results/models/m1"], ["results/models/m2"]),
}


@pytest.mark.parametrize(
    "overlay",
    [pytest.param(p, marks=[] if p.stem == "no-regularizer" else [pytest.mark.slow]) for p in ABLATIONS],
    ids=lambda p: p.stem,
)
def test_ablation_dry_runs(overlay, tmp_path):
    r = snakemake("-n", "-p", "--configfile", str(PAPER), str(overlay), cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    plan = r.stdout + r.stderr
    present, absent = DRY_RUN_CHECKS[overlay.stem]
    for needle in present:
        assert needle in plan, needle
    for needle in absent:
        assert needle not in plan, needle
