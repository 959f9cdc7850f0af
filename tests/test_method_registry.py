"""The training-method registry (stargate/training/methods/): the schema and the registry agree, a method
added in one place is used by selection, data building, the rules' helpers and the load-time checks, and each
method's own behaviour reaches the training loss (RWR's weights: a run that dropped them would train as SFT)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from test_methods import scored_files, write_method_data
from test_train import clean_env, run_args, spec_for_test, state  # noqa: F401  (fixtures and helpers)

from stargate.config import fill_defaults
from stargate.records import read_jsonl, read_meta, write_jsonl
from stargate.stages import select as selection
from stargate.stages import sft_data
from stargate.training.methods.base import TrainingMethod
from stargate.training.methods.offline import OFFLINE_METHODS
from stargate.training.methods.registry import (
    METHODS,
    get_method,
    method_blocks,
    selecting_methods,
    training_for_method,
)
from stargate.training.spec import TrainingSpec

REPO = Path(__file__).resolve().parents[1]


def training_schema() -> dict:
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    return schema["properties"]["training"]


def test_schema_and_registry_name_the_same_methods_and_blocks():
    training = training_schema()
    assert training["properties"]["method"]["enum"] == list(METHODS)
    for name, method in METHODS.items():
        assert method.name == name and method.card
        if method.block:
            assert method.block in training["properties"], f"training.{method.block} missing in the schema"
    # a knob block of the schema belongs to a method
    blocks = {k for k, v in training["properties"].items() if v.get("type") == "object"}
    assert blocks == set(method_blocks())


def test_only_the_selected_methods_block_is_recorded():
    filled = TrainingSpec.from_dict({"method": "dpo"}).to_dict()
    blocks = set(method_blocks())
    assert {"dpo", "rwr", "grpo"} <= blocks <= set(filled)  # the spec keeps every block, as configured
    assert set(training_for_method(filled)) == set(filled) - (blocks - {"dpo"})
    assert set(training_for_method({**filled, "method": "sft"})) == set(filled) - blocks
    assert TrainingSpec.from_dict({"method": "dpo", "dpo": {"beta": 0.3}}).knobs.beta == 0.3
    assert TrainingSpec.from_dict({"method": "sft"}).knobs is None


class BestOnly(TrainingMethod):
    """A method a researcher might add: the single best conversation of a pair, marked."""

    name = "best_only"
    selects = True
    min_conversations_per_pair = 3
    card = "the best conversation of m{p} per pair"

    def knobs(self, block):
        return block

    def select(self, convs, scores, knobs, source):
        out = []
        for pair in sorted(scores):
            lp, conv = max(scores[pair], key=lambda v: (v[0], -v[1]))
            out.append({**convs[(pair, conv)], "logprob": lp, "mark": knobs["mark"]})
        return out, {"n_pairs": len(out)}

    def records(self, examples, source):
        return [{"pair": c["pair"], "conv": c["conv"], "messages": m, "mark": c["mark"]} for c, m in examples]


def test_a_method_added_to_the_registry_is_used_without_other_edits(tmp_path, data_files, monkeypatch):
    # an offline method is listed in methods/offline.py (the stages of the loop's data ask that list)
    monkeypatch.setitem(METHODS, "best_only", BestOnly())
    monkeypatch.setitem(OFFLINE_METHODS, "best_only", METHODS["best_only"])
    assert "best_only" in selecting_methods() and get_method("best_only").selects
    scores = {"A-t0000|A-p00": [-3.0, -1.0, -2.0], "A-t0001|A-p01": [-2.0, -5.0, -4.0]}
    c, lp = scored_files(tmp_path, scores)
    used = tmp_path / "selected.best_only.jsonl"
    selection.run(
        argparse.Namespace(
            method="best_only", conversations=str(c), logprobs=str(lp), knobs='{"mark": 7}', output=str(used)
        )
    )
    picked = read_jsonl(used)
    assert [(r["pair"], r["conv"], r["mark"]) for r in picked] == [("A-t0000|A-p00", 1, 7), ("A-t0001|A-p01", 0, 7)]
    assert read_meta(used)["method"] == "best_only"
    out = tmp_path / "data.jsonl"
    sft_data.run(
        argparse.Namespace(
            topk=str(used),
            method="best_only",
            regularizer="none",
            responses=None,
            tasks=str(data_files["tasks"]),
            personas=str(data_files["personas"]),
            prompts="fixed_v1",
            output=str(out),
        )
    )
    recs = read_jsonl(out)
    assert [r["mark"] for r in recs] == [7, 7] and read_meta(out)["method"] == "best_only"
    # its load-time constraint is reported like every other config problem
    config = {"training": {"method": "best_only"}, "simulation": {"conversations_per_pair": 2}}
    assert "at least 3 conversations per pair" in get_method("best_only").check_config(config)[0]


def test_dpo_needs_two_conversations_per_pair_at_load():
    config = yaml.safe_load((REPO / "tests" / "config" / "tiny.yaml").read_text())
    config["training"] = {"method": "dpo"}
    config["simulation"]["conversations_per_pair"] = 1
    fill_defaults(config, "config")
    problems = get_method("dpo").check_config(config)
    assert problems and "simulation.conversations_per_pair is 1" in problems[0]
    assert get_method("sft").check_config(config) == []


def test_rwr_weights_reach_the_loss(tiny_model_dir, tmp_path, clean_env):  # noqa: F811
    """Every weight 0: RWR's loss is exactly 0 and no parameter moves (no weight decay). A trainer that dropped
    the weights would train as plain SFT: a positive loss and changed weights."""
    from stargate.stages import train

    data = write_method_data(tmp_path / "A.jsonl", "rwr")
    recs = [{**r, "weight": 0.0} for r in read_jsonl(data)]
    write_jsonl(data, recs, {"stage": "sft_data", "method": "rwr"})
    out = tmp_path / "m1"
    spec = spec_for_test(method="rwr", wandb_project=None, validation_fraction=0.0, weight_decay=0.0)
    train.run(run_args(tiny_model_dir, data, out, spec))
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert metrics["results"]["train_loss"] == 0.0
    before, after = state(tiny_model_dir), state(out)
    assert all((before[k] == after[k]).all() for k in before)
