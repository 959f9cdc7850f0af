# Helpers shared by every stage: config loading, path conventions, input functions, params.
# No rules live here. Each rule gets only the config slice it uses, as recorded `params` (plain
# values or `lambda wildcards:` functions, both recorded by Snakemake), plus the fingerprint of the
# package code its stage runs, so a change reruns that stage and what follows it, nothing before it.

import json
import os
import shlex
from pathlib import Path

from stargate.config import (
    CONDITIONS_CONTROL,
    CONDITIONS_PER_ITERATION,
    SELECTION_CONDITION,
    check_config,
    fill_defaults,
    train_split,
)
from stargate.fingerprint import code_fingerprint
from stargate.prompts import stage_template_digest
from stargate.released import data_path, per_split_file

# The schema (config/schema.yaml) defines and defaults every key; after this, config[...] is complete.
fill_defaults(config, "config")
check_config(config)

T = int(config["iterations"])
SIM = config["simulation"]
SHARDS = list(range(int(SIM["shards"])))
TURNS = list(range(1, int(SIM["max_turns"]) + 1))
ENV = "../envs/stargate.yaml"
REPO = Path(workflow.basedir)
PROMPTS = config["prompts"]
EVAL = config["evaluation"]
PER_T_CONDITIONS = [c for c in EVAL["conditions"] if c in CONDITIONS_PER_ITERATION]
CONTROL_CONDITIONS = [c for c in EVAL["conditions"] if c in CONDITIONS_CONTROL]
METHOD = config["training"]["method"]
REGULARIZER = config["training"]["regularizer"]


def res(**special):
    """A rule's resources: CPU-only and small unless it says otherwise (profiles/slurm sets GPUs)."""
    return {"gpu": 0, "mem_mb": 2000, "runtime": 30, **special}


def code(stage):
    """Fingerprint of the package code `stargate <stage>` runs: a param, so code edits rerun the stage."""
    return code_fingerprint(f"stargate.stages.{stage}")


def prompt_digest(stage):
    """sha256 of the prompt templates `stage` reads (names relative to the prompt folder, contents): a
    param, so editing one reruns only its users while a moved checkout (other absolute paths) does not.
    """
    return stage_template_digest(PROMPTS, stage)


def repo_path(path):
    """Config paths are relative to the working directory, else to the repository."""
    return path if os.path.isabs(path) or os.path.exists(path) else str(REPO / path)


def model_dir(name):
    return f"resources/models/{name}"


def base_model_dir():
    return model_dir(config["base_model"])


def is_api_model(name):
    return "api" in config["models"][name]["source"]


def questioner_model(t):
    """m0 is the prepared base model; m_t (t >= 1) is the fine-tune trained on m_{t-1}'s data."""
    return base_model_dir() if int(t) == 0 else f"results/models/m{t}"


def role_model_name(role):
    return config["roles"][role].get("model", config["base_model"])


def loads_a_model(role):
    """hf and vllm roles load a prepared folder; openai calls an API and scripted replies from rules."""
    return config["roles"][role]["backend"] in ("hf", "vllm")


def role_model_input(role):
    """Input of a role bound to a named model: its prepared folder, or nothing for an API/scripted role."""
    name = role_model_name(role)
    return [model_dir(name)] if loads_a_model(role) and not is_api_model(name) else []


def role_cli(role, model=None):
    """`--role JSON --model M --prompts SET` of a role-using stage, as one recorded param string.

    The role JSON is the role's config with every default filled in (see stargate.config.fill_defaults). M is the local model folder (also an input of the rule) or the API model name.
    """
    spec = dict(config["roles"][role])
    spec.pop("model", None)
    if model is None:
        name = role_model_name(role)
        if is_api_model(name):
            model = config["models"][name]["source"]["api"]
        else:
            model = model_dir(name) if loads_a_model(role) else name
    args = [
        "--role",
        json.dumps(spec, sort_keys=True),
        "--model",
        model,
        "--prompts",
        PROMPTS,
    ]
    return " ".join(shlex.quote(a) for a in args)


def data_inputs(split):
    return {
        "tasks": f"results/data/tasks/{split}.jsonl",
        "personas": f"results/data/personas/{split}.jsonl",
    }


def split_data(wc):
    """The tasks and named personas of the job's split."""
    return data_inputs(wc.split)


def sim_dir(wc):
    return f"results/m{wc.t}/sim/{wc.split}/shard{wc.shard}"


def conversations(t, split):
    return f"results/m{t}/conversations/{split}.jsonl"


def summary_manifest():
    """What summarize reads, by iteration and condition: passed as structure, never parsed from paths."""
    return {
        "logprobs": {
            str(t): {
                c: f"results/m{t}/logprobs/test.{c}.jsonl" for c in PER_T_CONDITIONS
            }
            for t in range(T + 1)
        },
        "controls": {c: f"results/controls/test.{c}.jsonl" for c in CONTROL_CONDITIONS},
        "judge": {
            str(t): f"results/eval/winrate/m{t}_vs_m0.judge.jsonl"
            for t in range(1, T + 1)
        },
        "conversations": {str(t): conversations(t, "test") for t in range(T + 1)},
    }


def summary_inputs():
    m = summary_manifest()
    return {
        "logprobs": [p for by_c in m["logprobs"].values() for p in by_c.values()],
        "controls": list(m["controls"].values()),
        "judge": list(m["judge"].values()),
        "conversations": list(m["conversations"].values()),
    }


def questioner_turn_inputs(wc):
    inputs = {
        **data_inputs(wc.split),
        "model": questioner_model(wc.t),
    }
    if int(wc.k) > 1:
        inputs["open"] = f"{sim_dir(wc)}/turn{int(wc.k) - 1}.open.jsonl"
    return inputs


# Data files named in config (rules/data.smk).
def data_from_file(kind):
    spec = config["data"][kind]
    return isinstance(spec, dict) and spec["source"] == "file"


def data_files(kind, split):
    """The file data.<kind>.path names for a split ({split} and data.released_dir resolved by
    stargate/released.py), as an input of the job; nothing when data.<kind> is not read from a file.
    """
    return (
        [data_path(config["data"], kind, split, repo_path)]
        if data_from_file(kind)
        else []
    )


def file_spec(kind, split):
    """data.<kind> as the stage's --spec: the resolved file, and whether it holds this split only."""
    spec = {**config["data"][kind]}
    if spec["source"] == "file":
        spec.update(
            path=data_files(kind, split)[0],
            per_split=per_split_file(config["data"], kind),
        )
    return json.dumps(spec, sort_keys=True)


def file_arg(flag, kind, split):
    """'FLAG FILE' for a stage reading data.<kind> from a file."""
    return f"{flag} {shlex.quote(data_files(kind, split)[0])}"


# Training data by training.method and training.regularizer (rules/sft.smk).
def used_conversations(wc):
    """The conversations m_{t+1} trains on: top-k (sft) or the select stage's (dpo, rwr)."""
    if METHOD == "sft":
        return f"results/m{wc.t}/topk/{wc.split}.jsonl"
    return f"results/m{wc.t}/selected/{wc.split}.{METHOD}.jsonl"


def final_answers(wc):
    """The regularizer file sft_data reads: m_t's answers, the gold responses, or nothing."""
    if REGULARIZER == "self":
        return [f"results/m{wc.t}/regularizer/{wc.split}.jsonl"]
    if REGULARIZER == "gold":
        return [f"results/data/oracle/{wc.split}.jsonl"]
    return []
