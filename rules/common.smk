# Helpers shared by every stage: config validation, path conventions, input functions.
# No rules live here. Each rule gets only the config slice it uses, as `params`, so a
# change to one stage's settings reruns that stage and what follows it, nothing before it.

import json
import os
import shlex
from pathlib import Path

from snakemake.utils import validate

from stargate.config import check_config
from stargate.released import data_path, per_split_file
from stargate.prompts import template_files

validate(config, "../config/schema.yaml")
check_config(config)

SPLITS = ["A", "B", "test"]
T = int(config["iterations"])
SIM = config["simulation"]
SHARDS = list(range(int(SIM["shards"])))
TURNS = list(range(1, int(SIM["max_turns"]) + 1))
ENV = "../envs/stargate.yaml"
REPO = Path(workflow.basedir)
PROMPTS = config["prompts"]
PROMPT_FILES = template_files(PROMPTS)


def repo_path(path):
    """Config paths are relative to the working directory, else to the repository."""
    return path if os.path.isabs(path) or os.path.exists(path) else str(REPO / path)


def train_split(t):
    """Iteration t simulates split A when t is even, B when odd (spec §1.3)."""
    return "A" if int(t) % 2 == 0 else "B"


def model_dir(name):
    return f"resources/models/{name}"


def base_model_dir():
    return model_dir(config["base_model"])


def is_api_model(name):
    return "api" in config["models"][name]["source"]


def questioner_model(t):
    """m0 is the prepared base model; m_t (t >= 1) is the fine-tune trained on m_{t-1}'s data."""
    return base_model_dir() if int(t) == 0 else f"results/models/m{t}"


def role_spec(role):
    """The role's config as JSON (backend, options, sampling): a params value, so edits rerun the role."""
    spec = dict(config["roles"][role])
    spec.pop("model", None)
    if spec["backend"] == "openai":  # api: holds defaults for every API role
        spec["options"] = {**config.get("api", {}), **spec.get("options", {})}
    return json.dumps(spec, sort_keys=True)


def role_model_input(role):
    """Input files of a role bound to a named model: its prepared folder, or nothing for an API model."""
    name = config["roles"][role].get("model", config["base_model"])
    return [] if is_api_model(name) else [model_dir(name)]


def role_model_arg(role):
    """`--model` of a role: its input folder (taken from `input`, lint-clean) or the API model name."""
    name = config["roles"][role].get("model", config["base_model"])
    if is_api_model(name):
        api = config["models"][name]["source"]["api"]
        return lambda wc, input: api
    # a role that this config does not use (e.g. names by regex) declares no model input: pass "none"
    return lambda wc, input: input.model if isinstance(input.model, str) else (input.model or ["none"])[0]


def data_inputs(split):
    return {
        "tasks": f"results/data/tasks/{split}.jsonl",
        "personas": f"results/data/personas/{split}.jsonl",
    }


def sim_dir(wc):
    return f"results/m{wc.t}/sim/{wc.split}/shard{wc.shard}"


def conversations(t, split):
    return f"results/m{t}/conversations/{split}.jsonl"


def summary_inputs():
    ev = config["evaluation"]
    per_t = [c for c in ev["conditions"] if c in ("qa-experimental", "pos-control-1", "shuffled")]
    ctrl = [c for c in ev["conditions"] if c in ("neg-control", "pos-control-2")]
    return {
        "logprobs": [f"results/m{t}/logprobs/test.{c}.jsonl" for t in range(T + 1) for c in per_t],
        "controls": [f"results/controls/test.{c}.jsonl" for c in ctrl],
        "judge": [f"results/eval/winrate/m{t}_vs_m0.judge.jsonl" for t in range(1, T + 1)],
        "conversations": [conversations(t, "test") for t in range(T + 1)],
    }


def tagged(paths):
    """'T=PATH' arguments for the summarize stage, T read from the m{T} folder of each path."""
    out = []
    for p in paths:
        t = Path(p).parts[1][1:] if Path(p).parts[1].startswith("m") else Path(p).name.split("_")[0][1:]
        out.append(f"{t}={p}")
    return " ".join(out)


def questioner_turn_inputs(wc):
    inputs = {**data_inputs(wc.split), "model": questioner_model(wc.t), "prompts": PROMPT_FILES}
    if int(wc.k) > 1:
        inputs["open"] = f"{sim_dir(wc)}/turn{int(wc.k) - 1}.open.jsonl"
    return inputs


# Data files named in config (rules/data.smk).
def data_file(kind, split):
    """The file data.<kind>.path names for a split ({split}, data.released_dir: stargate/released.py)."""
    return data_path(config["data"], kind, split, repo_path)


def data_from_file(kind):
    spec = config["data"].get(kind)
    return isinstance(spec, dict) and spec.get("source") == "file"


def file_spec(kind, input):
    """data.<kind> as the stage's --spec: the resolved file, and whether it holds this split only."""
    spec = {**config["data"][kind]}
    if spec["source"] == "file":
        spec.update(path=input.source[0], per_split=per_split_file(config["data"], kind))
    return json.dumps(spec)


def source_arg(flag, input):
    """'FLAG FILE' when the rule reads a data file (input.source), else nothing."""
    return f"{flag} {shlex.quote(input.source[0])}" if input.source else ""
