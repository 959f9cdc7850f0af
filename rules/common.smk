# Helpers shared by every stage: input functions and params over the loaded config. No rules live here;
# loading and checking the config, the path scheme, CLI rendering and the config digest are in
# stargate/workflow/. Each rule gets only the config slice it uses, as recorded `params` (plain
# values or `lambda wildcards:` functions, both recorded by Snakemake), plus the fingerprint of the
# package code its stage runs, so a change reruns that stage and what follows it, nothing before it.

import json
import shlex
from pathlib import Path

from stargate.config import (
    CONDITIONS_CONTROL,
    CONDITIONS_PER_ITERATION,
    SELECTION_CONDITION,
    train_split,
)
from stargate.errors import StargateError
from stargate.evaluation import variants as winrate_variants
from stargate.fingerprint import code_fingerprint
from stargate.prompts import stage_template_digest
from stargate.released import data_path, per_split_file
from stargate.runlock import clear_orphan_sidecars
from stargate.training.methods.registry import (
    METHODS,
    get_method,
    offline_methods,
    online_methods,
    selecting_methods,
    training_for_method,
)
from stargate.workflow import digest, paths, startup
from stargate.workflow.cli_args import json_param, role_args, with_trial_seed


def config_problem(exc):
    """A config error as a few lines and exit 1 (stargate/workflow/startup.py)."""
    raise startup.config_problem(workflow, exc)


REPO = Path(workflow.basedir)


def repo_path(path):
    return startup.repo_path(REPO, path)


def resolved_data_file(kind, split):
    if kind == "seeds":
        return repo_path(config["data"]["personas"]["seeds"])
    return data_path(config["data"], kind, split, repo_path)


# The schema (config/schema.yaml) defines and defaults every key; after this, config[...] is complete.
startup.load_config(workflow, config, resolved_data_file)
startup.guard_head(workflow, config)


onstart:
    clear_orphan_sidecars()


onerror:
    clear_orphan_sidecars()


def config_provider(*keys):
    """The one way a rule's `params:` reads the config (PyPSA's pattern): a function of the wildcards giving
    config[k1][k2]..., so Snakemake records the value and a change of that key reruns that rule only.
    """

    def value(wildcards):
        out = config
        for key in keys:
            out = out[key]
        return out

    return value


T = int(config["iterations"])
SIM = config["simulation"]


def split_shards(split):
    """Shard indices of a split's simulation (simulation.shards: one number for every split, or one per split;
    a repeated trial's split has the test split's)."""
    n = SIM["shards"]
    return list(range(int(n[paths.base_split(split)] if isinstance(n, dict) else n)))


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
    """Fingerprint of the package code `stargate <stage>` runs, with the modules its roles' `program:`
    options name (the learning world's users): a param, so code edits rerun the stage.
    """
    from stargate.fingerprint import program_modules

    return code_fingerprint(
        f"stargate.stages.{stage}", *program_modules(stage, config["roles"])
    )


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
SUMMARY = paths.summary(config["run_name"])


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
    return base_model_dir() if t == 0 else paths.model(t)


def role_model_name(role):
    return config["roles"][role].get("model", config["base_model"])


def loads_a_model(role):
    """Whether the role's backend loads a prepared model folder (hf, vllm; not openai, scripted): each
    backend says so in stargate.backends.BACKENDS."""
    from stargate.backends import loads_local_model

    return loads_local_model(config["roles"][role]["backend"])


def role_model_input(role):
    """Input of a role bound to a named model: its prepared folder, or nothing for an API/scripted role."""
    name = role_model_name(role)
    return (
        model_input(model_dir(name))
        if loads_a_model(role) and not is_api_model(name)
        else []
    )


def role_cli(role, model=None, prefix="", recorded=False, trial=1):
    """`--role JSON --model M --prompts SET` of a role-using stage (stargate/workflow/cli_args.py); M defaults
    to the role's local model folder (also an input of the rule) or its API model name. `trial`: a repeated
    trial's sampling seed (evaluation.trials; trial 1 is the role's own).
    """
    if model is None:
        name = role_model_name(role)
        if is_api_model(name):
            model = config["models"][name]["source"]["api"]
        else:
            model = model_dir(name) if loads_a_model(role) else name
    spec = with_trial_seed(config["roles"][role], trial)
    return role_args(role, spec, model, PROMPTS, prefix, recorded)


def data_inputs(split):
    """The tasks and named personas of a split (a repeated trial's split reads the test split's)."""
    split = paths.base_split(split)
    return {
        "tasks": paths.tasks(split),
        "personas": paths.personas(split),
    }


def split_data(wc):
    """The tasks and named personas of the job's split."""
    return data_inputs(wc.split)


def sim_dir(wc):
    return paths.sim_dir(wc.t, wc.split, wc.shard)


def conversations(t, split):
    return paths.conversations(t, split)


# Win-rate variants (evaluation.winrate.variants): answers and judge files per (conversation, answerer).
WINRATE_VARIANTS = winrate_variants.configured(EVAL["winrate"])
ANSWER_SETS = winrate_variants.answer_sets(WINRATE_VARIANTS)
# Repeated trials (evaluation.trials): trial 1 is the split `test`, trial j the split `test_trial{j}` (the
# same pairs, other sampling seeds); every trial is simulated, scored, answered and judged alike.
TRIALS = int(EVAL["trials"])
# the Roleplayer audit: its optional judge pass (evaluation.roleplayer_audit.judge)
AUDIT = EVAL["roleplayer_audit"]
TRIAL_SPLITS = [paths.trial_split(j) for j in range(1, TRIALS + 1)]
# The judge panel (evaluation.judges): role names, each judging every answer set of every trial.
JUDGES = list(EVAL["judges"])


def wc_split(wc):
    """The split of a job, `test` for a win-rate job of trial 1 (those have no split wildcard)."""
    return getattr(wc, "split", "test")


def wc_trial(wc):
    return paths.trial_of(wc_split(wc))


def wc_judge(wc):
    """The judge role of a judge job (the `judge` role's own files carry no judge wildcard)."""
    return getattr(wc, "judge", "judge")


def judge_mode(role):
    """evaluation.winrate.verdict for the `judge` role (config.py refuses logprob with an API one); another
    panel member on the openai backend always writes its verdict (an API gives no log-probs of the lines).
    """
    if role != "judge" and config["roles"][role]["backend"] == "openai":
        return "generate"
    return EVAL["winrate"]["verdict"]


def judge_repeats(role):
    """evaluation.winrate.judge_repeats for a judge that writes its verdict; a forced choice is deterministic."""
    return EVAL["winrate"]["judge_repeats"] if judge_mode(role) == "generate" else 0


def winrate_answers(selection, t, answerer, split="test"):
    """m_t's answers (answerer mt) or m0's answers on m_t's conversations (answerer m0); m0's are one file."""
    answerer = "mt" if int(t) == 0 else answerer
    return paths.winrate_answers(selection, t, answerer, split)


def answering_model(wc):
    """m_t answers its own conversations; with answerer m0 the base model answers m_t's."""
    return questioner_model(wc.t if wc.answerer == "mt" else 0)


def judge_file(selection, answerer, t, split="test", judge="judge"):
    return paths.judge(selection, answerer, t, split, judge)


def trial_manifest(split, judges):
    """One trial's files by iteration and condition / answer set (and judge, for a panel)."""
    out = {
        "logprobs": {
            str(t): {c: paths.logprobs(t, split, c) for c in PER_T_CONDITIONS}
            for t in EVAL_T
        },
        "judge": {
            f"{c}-{a}": {
                str(t): judge_file(c, a, t, split, judges[0]) for t in EVAL_T if t
            }
            for c, a in ANSWER_SETS
        },
        "answers": {
            f"{c}-{a}": {str(t): winrate_answers(c, t, a, split) for t in EVAL_T}
            for c, a in ANSWER_SETS
        },
        "conversations": {str(t): conversations(t, split) for t in EVAL_T},
        # the simulation's turn files: their .meta.json hold each role's tokens (and an API role's USD); its
        # benchmarks the wall seconds (read when present, no input)
        "simulation": {
            str(t): {
                **{
                    kind: [
                        paths.sim_turn(kind, k, t, split, shard)
                        for shard in split_shards(split)
                        for k in TURNS
                    ]
                    for kind in ("asked", "done")
                },
                "benchmarks": [
                    paths.sim_benchmark(t, split, shard)
                    for shard in split_shards(split)
                ],
            }
            for t in EVAL_T
        },
    }
    if judges != ["judge"]:
        out["panel"] = {
            j: {
                f"{c}-{a}": {str(t): judge_file(c, a, t, split, j) for t in EVAL_T if t}
                for c, a in ANSWER_SETS
            }
            for j in judges
        }
    return out


def summary_manifest():
    """What summarize reads, by iteration and condition: passed as structure, never parsed from paths.
    Trial 1's files at the top level (as before repeated trials), trials 2..k under `trials`.
    """
    out = {
        **trial_manifest("test", JUDGES),
        "controls": {c: paths.controls("test", c) for c in CONTROL_CONDITIONS},
        "questioners": {str(t): q["name"] for t, q in EXTRA_QUESTIONERS.items()},
    }
    if AUDIT["judge"]:  # the Roleplayer audit's judge pass (trial 1)
        out["audit_judge"] = {str(t): paths.audit_judge(t) for t in EVAL_T}
    if TRIALS > 1:
        out["trials"] = {
            str(j): trial_manifest(split, JUDGES)
            for j, split in enumerate(TRIAL_SPLITS, start=1)
            if j > 1
        }
    return out


def _manifest_files(m):
    files = [p for by_c in m["logprobs"].values() for p in by_c.values()]
    files += [p for by_t in m["judge"].values() for p in by_t.values()]
    files += [p for by_t in m["answers"].values() for p in by_t.values()]
    files += list(m["conversations"].values())
    files += list(m.get("audit_judge", {}).values())
    files += [
        p
        for by_k in m["simulation"].values()
        for kind in ("asked", "done")
        for p in by_k[kind]
    ]
    files += [
        p
        for by_set in m.get("panel", {}).values()
        for by_t in by_set.values()
        for p in by_t.values()
    ]
    return files


def rule_gpus(rule):
    """The GPUs a rule's jobs get from the profile (--set-resources; 0 on a CPU run)."""
    from stargate.plan import resources_of_workflow

    found = resources_of_workflow(workflow.resource_settings).get(rule)
    return found.gpu if found else 0


def summary_inputs():
    m = summary_manifest()
    files = _manifest_files(m)
    for trial in m.get("trials", {}).values():
        files += _manifest_files(trial)
    return {
        "manifest_files": sorted(set(files)),
        "controls": list(m["controls"].values()),
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
    """The effective config: what the results depend on (stargate/workflow/digest.py)."""
    return digest.effective_config(
        config, data_from_file("oracle"), bool(WINRATE_VARIANTS)
    )


def config_digest():
    return digest.digest(config_without_run_name())


def config_identity(wildcards, input):
    """Which config produced a run. An unrecorded param (`wildcards, input`): renaming the run or the config
    file reruns nothing; the digest, recorded on its own, changes with the content."""
    return digest.identity(config, workflow.overwrite_configfiles, config_digest())


# Training data by training.method and training.regularizer (rules/sft.smk).
def used_conversations(wc):
    """The conversations m_{t+1} trains on: top-k, or the select stage's for a selecting method (dpo, rwr)."""
    if not get_method(METHOD).selects:
        return paths.topk(wc.t, wc.split)
    return paths.selected(wc.t, wc.split, METHOD)


def select_knobs(method):
    """The keys of training.<method> the method's selection reads (stargate/training/methods/)."""
    m = get_method(method)
    return {k: config["training"][m.block][k] for k in m.select_keys}


# An online method (training.method grpo: stargate/training/methods/grpo.py) trains on rollouts it plays.
def continued_model_input(t):
    """m_{t-1}'s folder when the method continues from it (m_1 starts from m0, already an input)."""
    if not get_method(METHOD).continues or t < 2:
        return []
    return model_input(questioner_model(t - 1))


def online_role_inputs():
    return role_model_input("roleplayer") if get_method(METHOD).online else []


def online_roles():
    """The roles an online method's train job plays its rollouts with: the policy's sampling (the
    questioner's; the answerer's for a final answer), the Roleplayer (spec and model) and the scorer (m0).
    """
    roles = config["roles"]
    name = role_model_name("roleplayer")
    if is_api_model(name):
        model = config["models"][name]["source"]["api"]
    else:
        model = model_dir(name) if loads_a_model("roleplayer") else name
    roleplayer = {k: v for k, v in roles["roleplayer"].items() if k != "model"}
    return {
        "questioner": {"sampling": roles["questioner"]["sampling"]},
        "answerer": {"sampling": roles["answerer"]["sampling"]},
        "roleplayer": {"spec": roleplayer, "model": model},
        "scorer": {"spec": {k: v for k, v in roles["scorer"].items() if k != "model"}},
        "max_turns": SIM["max_turns"],
    }


def online_train_args(t, roleplayer_gpus=0):
    """` --init-model M --roles JSON` of an online method's train job; nothing for the offline ones (their
    command line is the paper's). `roleplayer_gpus`: the job's GPUs its Roleplayer engine takes (resource
    roleplayer_gpu of the train rule; the policy trains on the others)."""
    method = get_method(METHOD)
    out = ""
    if method.continues and t >= 2:
        out += f" --init-model {shlex.quote(questioner_model(t - 1))}"
    if method.online:
        roles = {**online_roles(), "roleplayer_gpus": int(roleplayer_gpus)}
        out += f" --roles {shlex.quote(json_param(roles))}"
    return out


def instructed_cli(t):
    """` --instructed` when the method's trained m_t is asked with the Questioner instruction, as m0 is (an
    online policy trained so); nothing for the paper's fine-tunes (their data has no instruction).
    """
    t = int(t)
    return (
        " --instructed"
        if 0 < t < EXTRA_T and get_method(METHOD).instructed(config["training"])
        else ""
    )


def final_answers(wc):
    """The regularizer file sft_data reads: m_t's answers, the gold responses, or nothing."""
    if REGULARIZER == "self":
        return [paths.regularizer(wc.t, wc.split)]
    if REGULARIZER == "gold":
        return [paths.gold(wc.split)]
    return []
