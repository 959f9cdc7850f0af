# Helpers shared by every stage: config loading, path conventions, input functions, params.
# No rules live here. Each rule gets only the config slice it uses, as recorded `params` (plain
# values or `lambda wildcards:` functions, both recorded by Snakemake), plus the fingerprint of the
# package code its stage runs, so a change reruns that stage and what follows it, nothing before it.

import json
import os
import re
import shlex
import sys
from pathlib import Path

from stargate.evaluation import variants as winrate_variants
from stargate.config import (
    CONDITIONS_CONTROL,
    CONDITIONS_PER_ITERATION,
    SELECTION_CONDITION,
    check_config,
    check_data_files,
    check_model_paths,
    fill_defaults,
    read_yaml,
    train_split,
)
from stargate.errors import StargateError
from stargate.fingerprint import code_fingerprint
from stargate.plan import check_fit, resources_of_workflow
from stargate.prompts import stage_template_digest
from stargate.released import data_path, per_split_file
from stargate.runlock import (
    claim_head_lock,
    clear_orphan_sidecars,
    live_head,
    live_head_message,
)


def config_problem(exc):
    """A config error as a few lines and exit 1: no Python traceback of the Snakefile (stargate/errors.py)."""
    files = (
        ", ".join(str(f) for f in workflow.overwrite_configfiles)
        or "config/config.yaml"
    )
    # values given with --config override the file's
    if workflow.config_settings.config:
        files += " with --config " + " ".join(sorted(workflow.config_settings.config))
    raise SystemExit(f"stargate: error in the config ({files}):\n{exc}")


def repo_path(path):
    """Config paths are relative to the working directory, else to the repository."""
    return path if os.path.isabs(path) or os.path.exists(path) else str(REPO / path)


def resolved_data_file(kind, split):
    if kind == "seeds":
        return repo_path(config["data"]["personas"]["seeds"])
    return data_path(config["data"], kind, split, repo_path)


# The schema (config/schema.yaml) defines and defaults every key; after this, config[...] is complete.
REPO = Path(workflow.basedir)
try:
    # Snakemake's loader keeps the last of two equal keys; ours refuses them, naming both lines
    for _file in workflow.overwrite_configfiles:
        read_yaml(_file)
    fill_defaults(config, "config")
    check_config(config)
    check_data_files(config, resolved_data_file)
    check_model_paths(config)
except StargateError as exc:
    config_problem(exc)

# A GPU job that cannot fit its card stops the workflow here, dry-run included, when the profile declares the
# card's memory (resource gpu_memory_gb, e.g. profiles/slurm); CPU runs declare none. stargate/plan/fit.py;
# `stargate plan --profile ...` prints every figure.
if workflow.is_main_process:
    try:
        check_fit(config, resources_of_workflow(workflow.resource_settings))
    except StargateError as exc:
        raise SystemExit(f"stargate: {exc}")

# `--cores 0` would wait forever for a free core ("Provided cores: 0"); a dry-run needs none.
if (
    workflow.is_main_process
    and not workflow.dryrun
    and getattr(workflow.resource_settings, "cores", None) == 0
):
    raise SystemExit(
        "stargate: --cores 0 gives the jobs no core, so nothing would ever start; use --cores N (N >= 1)"
    )

# A crashed head's stale Snakemake locks are removed when no other head runs here (stargate/runlock.py).
# While another head is alive, Snakemake's own refusal would say "remove the lock with --unlock", the one
# thing not to do: its message names the live run instead.
if workflow.is_main_process:
    _head = live_head()
    if _head is not None:
        import snakemake.exceptions

        _live_text = live_head_message(_head)

        def _live_lock_exception(self, _text=_live_text):
            snakemake.exceptions.WorkflowError.__init__(self, f"stargate: {_text}")

        snakemake.exceptions.LockException.__init__ = _live_lock_exception
    for stale in claim_head_lock():
        print(
            f"stargate: removed a stale Snakemake lock left by a killed run: {stale}",
            file=sys.stderr,
        )


onstart:
    clear_orphan_sidecars()


onerror:
    clear_orphan_sidecars()


T = int(config["iterations"])
SIM = config["simulation"]


def split_shards(split):
    """Shard indices of a split's simulation (simulation.shards: one number for every split, or one per split)."""
    n = SIM["shards"]
    return list(range(int(n[split] if isinstance(n, dict) else n)))


TURNS = list(range(1, int(SIM["max_turns"]) + 1))
# Software environments, one per kind of rule (envs/*.yaml), used with `snakemake --sdm conda`; without it
# (the tested path) every rule runs in the environment snakemake was started from, and these change nothing.
# vLLM pins its own torch and a transformers range; the training stack (TRL, DeepSpeed, flash-attn) has pins
# of its own. Each rule gets the environment its stage needs (docs/vllm.md, docs/training.md).
#   stargate  bookkeeping, API and hf-backend stages                  envs/stargate.yaml
#   vllm      a stage running a role bound to the vllm backend         envs/vllm.yaml (GPU; CPU twin vllm-cpu.yaml)
#   train     the train rule (transformers Trainer, TRL, DeepSpeed)    envs/train.yaml
CONDA_ENVS = {
    "stargate": "../envs/stargate.yaml",
    "vllm": "../envs/vllm.yaml",
    "train": "../envs/train.yaml",
}


def conda_env(kind="stargate", roles=()):
    """The `conda:` env file of a rule: `kind` ("train" for training); a rule whose stage runs `roles` gets the
    vLLM env when one of them is bound to the vllm backend in the config (the vLLM env also holds stargate's
    own dependencies, so its other roles run there too)."""
    if kind == "stargate" and any(
        config["roles"][r]["backend"] == "vllm" for r in roles
    ):
        kind = "vllm"
    return CONDA_ENVS[kind]


ENV = conda_env()
PROMPTS = config["prompts"]
EVAL = config["evaluation"]
PER_T_CONDITIONS = [c for c in EVAL["conditions"] if c in CONDITIONS_PER_ITERATION]
CONTROL_CONDITIONS = [c for c in EVAL["conditions"] if c in CONDITIONS_CONTROL]
METHOD = config["training"]["method"]
REGULARIZER = config["training"]["regularizer"]


# A job that calls a model uses every core it is given: the loop is mostly a chain (simulate -> score ->
# train -> simulate ...), so a lone job on 1 thread would leave a laptop's other cores idle. Snakemake caps
# threads at --cores and exports OMP_NUM_THREADS={threads}, which torch reads; profiles/slurm sets its own.
MODEL_THREADS = 8


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
    try:
        return stage_template_digest(PROMPTS, stage)
    except StargateError as exc:
        config_problem(exc)


# Each run keeps its own summary: results/summary/<run_name>/ (the learning world's and the all-LLM
# default's summaries never overwrite each other; every file in it names the config that made it).
SUMMARY = f"results/summary/{config['run_name']}"


def model_dir(name):
    return f"resources/models/{name}"


def base_model_dir():
    return model_dir(config["base_model"])


# Re-preparing a model identically must rerun nothing (a forced prepare_model, a re-copied folder: only
# its mtime changes), while a real change of the model reruns everything that loads it. So a prepared
# folder is an input through `ancient()` (its mtime is ignored), together with its recipe file, an
# ordinary input that the rule model_recipe rewrites only when what determines the folder's content
# changes (models.NAME.source, the prepare_model code): rules/models.smk. Trained models are plain inputs.
PREPARED = "resources/models/"


def model_recipe_file(name):
    return f"resources/model_recipes/{name}.json"


def model_input(path):
    """The inputs standing for a model folder: an ancient prepared folder and its recipe, or a trained one."""
    if str(path).startswith(PREPARED):
        return [ancient(path), model_recipe_file(str(path)[len(PREPARED) :])]
    return [path]


def base_model_input():
    return model_input(base_model_dir())


def is_api_model(name):
    return "api" in config["models"][name]["source"]


# Extra questioners (evaluation.questioners) take iteration numbers from EXTRA_T on: the i-th one's test
# conversations, log-probs and win-rate files are those of "m{EXTRA_T + i}", made by the same rules as m_t's.
EXTRA_T = 1000
EXTRA_QUESTIONERS = {EXTRA_T + i: q for i, q in enumerate(EVAL["questioners"])}
for _i, _q in enumerate(EVAL["questioners"]):
    if (
        _q["model"] not in config["models"]
        or "api" in config["models"][_q["model"]]["source"]
    ):
        raise ValueError(
            f"evaluation.questioners[{_i}].model: '{_q['model']}' must name a local model of `models`"
            " (source hf or path)"
        )
EVAL_T = [
    *range(T + 1),
    *EXTRA_QUESTIONERS,
]  # every questioner evaluated on the test split


def questioner_model(t):
    """m0 is the prepared base model; m_t (t >= 1) is the fine-tune trained on m_{t-1}'s data; t >= EXTRA_T
    is an extra questioner's prepared model."""
    t = int(t)
    if t in EXTRA_QUESTIONERS:
        return model_dir(EXTRA_QUESTIONERS[t]["model"])
    return base_model_dir() if t == 0 else f"results/models/m{t}"


def role_model_name(role):
    return config["roles"][role].get("model", config["base_model"])


def loads_a_model(role):
    """hf and vllm roles load a prepared folder; openai calls an API and scripted replies from rules."""
    return config["roles"][role]["backend"] in ("hf", "vllm")


def role_model_input(role):
    """Input of a role bound to a named model: its prepared folder, or nothing for an API/scripted role."""
    name = role_model_name(role)
    return (
        model_input(model_dir(name))
        if loads_a_model(role) and not is_api_model(name)
        else []
    )


def json_param(obj):
    """JSON for a params string: a `{word}` inside a string value (a scripted reply's "{last}") is written
    `\\u007bword}` (the same JSON), or Snakemake would take it for a wildcard and fail to build the DAG.
    """
    return re.sub(
        r"\{(?=\s*\w)", r"\\u007b", json.dumps(obj, sort_keys=True, default=str)
    )


# Backend options that set how fast a role's job runs, not what it computes: the role's rules pass the
# whole role through an unrecorded param (`lambda wildcards, input:`) and record it without these
# (`role_cli(..., recorded=True)`), and the summary's config leaves them out, so changing one reruns
# nothing. Only the hf scorer's batch size: rows per forward pass of per-row sums (a row's score does not
# depend on its batch beyond float rounding). A generation role's batch size stays recorded: a sampled
# text can change with the batch it runs in (docs/reliability.md, "Reruns are exactly right").
SPEED_ONLY_OPTIONS = {("scorer", "hf"): ("batch_size",)}


def role_cli(role, model=None, prefix="", recorded=False):
    """`--role JSON --model M --prompts SET` of a role-using stage, as one param string
    (`prefix`: `--{prefix}role`, `--{prefix}model` and no --prompts, for a stage running two roles).

    The role JSON is the role's config with every default filled in (see stargate.config.fill_defaults). M is the local model folder (also an input of the rule) or the API model name.
    `recorded`: the same without the role's SPEED_ONLY_OPTIONS (what a rule records beside the whole role).
    """
    spec = dict(config["roles"][role])
    spec.pop("model", None)
    speed_only = SPEED_ONLY_OPTIONS.get((role, spec["backend"]), ())
    if recorded and speed_only:
        options = spec.get("options") or {}
        spec["options"] = {k: v for k, v in options.items() if k not in speed_only}
    if model is None:
        name = role_model_name(role)
        if is_api_model(name):
            model = config["models"][name]["source"]["api"]
        else:
            model = model_dir(name) if loads_a_model(role) else name
    args = [
        f"--{prefix}role",
        json_param(spec),
        f"--{prefix}model",
        model,
    ]
    if not prefix:
        args += ["--prompts", PROMPTS]
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


# Win-rate variants (evaluation.winrate.variants): answers and judge files per (conversation, answerer).
WINRATE_VARIANTS = winrate_variants.configured(EVAL["winrate"])
ANSWER_SETS = winrate_variants.answer_sets(WINRATE_VARIANTS)


def winrate_answers(selection, t, answerer):
    """m_t's answers (answerer mt) or m0's answers on m_t's conversations (answerer m0); m0's are one file."""
    answerer = "mt" if int(t) == 0 else answerer
    return f"results/eval/winrate/{selection}/m{t}.{answerer}.answers.jsonl"


def answering_model(wc):
    """m_t answers its own conversations; with answerer m0 the base model answers m_t's."""
    return questioner_model(wc.t if wc.answerer == "mt" else 0)


def judge_file(selection, answerer, t):
    return f"results/eval/winrate/{selection}/m{t}.{answerer}_vs_m0.judge.jsonl"


def summary_manifest():
    """What summarize reads, by iteration and condition: passed as structure, never parsed from paths."""
    return {
        "logprobs": {
            str(t): {
                c: f"results/m{t}/logprobs/test.{c}.jsonl" for c in PER_T_CONDITIONS
            }
            for t in EVAL_T
        },
        "controls": {c: f"results/controls/test.{c}.jsonl" for c in CONTROL_CONDITIONS},
        "judge": {
            f"{c}-{a}": {str(t): judge_file(c, a, t) for t in EVAL_T if t}
            for c, a in ANSWER_SETS
        },
        "answers": {
            f"{c}-{a}": {str(t): winrate_answers(c, t, a) for t in EVAL_T}
            for c, a in ANSWER_SETS
        },
        "conversations": {str(t): conversations(t, "test") for t in EVAL_T},
        "questioners": {str(t): q["name"] for t, q in EXTRA_QUESTIONERS.items()},
    }


def summary_inputs():
    m = summary_manifest()
    return {
        "logprobs": [p for by_c in m["logprobs"].values() for p in by_c.values()],
        "controls": list(m["controls"].values()),
        "judge": [p for by_t in m["judge"].values() for p in by_t.values()],
        "answers": sorted({p for by_t in m["answers"].values() for p in by_t.values()}),
        "conversations": list(m["conversations"].values()),
    }


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


def gpu_sharing_cli():
    """` --gpu-sharing MODE ...` of the simulate job, only for a mode other than the default `separate`
    (docs/vllm.md); questioner_memory_share only under shared_memory, the one mode that reads it.
    """
    mode = SIM.get("gpu_sharing", "separate")
    if mode == "separate":
        return ""
    out = f" --gpu-sharing {mode}"
    if mode == "shared_memory":
        out += f" --questioner-memory-share {SIM.get('questioner_memory_share', 0.25)}"
    return out


def config_without_run_name():
    """The effective config as recorded by the summary rules (its digest) and shown by the report: what
    the results depend on. Left out, so changing them reruns nothing: the run's name (it only labels the
    run); the roles no stage runs (the oracle when the gold responses come from files, the
    persona_generator when personas are read from files and names are not asked of it, the judge without
    win-rate variants, the answerer without them and without the self regularizer); the models only such
    roles (or none) name; `api` when no role left calls an API; the other training methods' knobs (as
    rules/train.smk); the speed-only options (SPEED_ONLY_OPTIONS); and simulation.gpu_sharing when it is the
    default `separate`, questioner_memory_share unless it is shared_memory (rules/simulate.smk passes them
    only then)."""
    data = config["data"]
    unused = set()
    if data_from_file("oracle"):
        unused.add("oracle")
    if data["personas"]["source"] != "generate" and data["names"] != "llm":
        unused.add("persona_generator")
    if not WINRATE_VARIANTS:
        if not EVAL[
            "specificity_rating"
        ]:  # the specificity stage is the judge's other job
            unused.add("judge")
        if REGULARIZER != "self":
            unused.add("answerer")
    roles = {}
    for role, spec in config["roles"].items():
        if role not in unused:
            speed_only = SPEED_ONLY_OPTIONS.get((role, spec["backend"]), ())
            options = {
                k: v
                for k, v in (spec.get("options") or {}).items()
                if k not in speed_only
            }
            roles[role] = {**spec, "options": options}
    models = {config["base_model"], *(q["model"] for q in EVAL["questioners"])}
    models |= {spec["model"] for spec in roles.values() if "model" in spec}
    out = {
        k: v
        for k, v in config.items()
        if k not in ("run_name", "roles", "models", "api")
    }
    out["roles"] = roles
    out["models"] = {k: v for k, v in config["models"].items() if k in models}
    if "api" in config and any(s["backend"] == "openai" for s in roles.values()):
        out["api"] = config["api"]
    out["training"] = {
        k: v
        for k, v in config["training"].items()
        if k not in ("dpo", "rwr") or k == METHOD
    }
    sharing = config["simulation"].get("gpu_sharing", "separate")
    out["simulation"] = {
        k: v
        for k, v in config["simulation"].items()
        if not (k == "gpu_sharing" and sharing == "separate")
        and not (k == "questioner_memory_share" and sharing != "shared_memory")
    }
    return out


def config_digest():
    """sha256 of the effective config (config_without_run_name: what the results depend on): recorded by
    the summary rules, so the digest a summary names is always that of the config its results came from,
    and a key no stage reads (an unused model or role) does not restate it."""
    import hashlib

    text = json.dumps(config_without_run_name(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def config_identity(wildcards, input):
    """Which config produced a run: its name, the files given (relative to the working directory where
    inside it), the training method and regularizer (so summaries of several methods tell themselves
    apart) and the digest. An unrecorded param (`wildcards, input`): renaming the run or the config file
    reruns nothing; the digest, recorded on its own, changes with the content."""
    files = [
        os.path.relpath(f) if not os.path.relpath(f).startswith("..") else str(f)
        for f in workflow.overwrite_configfiles
    ]
    return json.dumps(
        {
            "run_name": config.get("run_name"),
            "configfiles": files or ["config/config.yaml"],
            "training": {"method": METHOD, "regularizer": REGULARIZER},
            "config_sha256": config_digest(),
        },
        sort_keys=True,
    )


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
