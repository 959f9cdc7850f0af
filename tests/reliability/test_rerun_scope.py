"""Rerun scope of every config key: a change plans the stages that read the key (and what follows them),
never anything upstream, and a key no stage reads plans nothing.

Each variant config is "run" once by materialising its DAG (empty outputs recorded by Snakemake's touch
executor, so params/code/inputs are recorded as after a real run); then every leaf key of the config
(schema defaults filled in) is changed alone and the real workflow dry-run (in one process: 0.2 s each).
The union of keys tested over the variants must be every leaf key of config/schema.yaml.
"""

from __future__ import annotations

import copy
import fnmatch
import os
import shutil
from pathlib import Path

import pytest
import yaml

from stargate.config import load_config, schema

from .workflow import REPO, copy_data, plans, tiny_config, write_config

ROLE_KEYS = ("roles.*.backend", "roles.*.model")


def schema_leaf_keys() -> set[str]:
    """Every leaf key of the schema, roles and models generalised to `*` (role options: of every backend)."""
    sch = schema()
    defs = sch["$defs"]
    keys: set[str] = set()

    def walk(node: dict, prefix: str) -> None:
        if "$ref" in node:
            node = defs[node["$ref"].split("/")[-1]]
        props = node.get("properties")
        if not props or prefix.endswith(("prices", "engine_args", "rules")):
            keys.add(prefix)
            return
        for k, sub in props.items():
            walk(sub, f"{prefix}.{k}" if prefix else k)

    for k, sub in sch["properties"].items():
        if k == "roles":
            keys.update(ROLE_KEYS)
            walk(defs["sampling"], "roles.*.sampling")
            for backend in ("hf", "vllm", "openai", "scripted"):
                walk(defs[f"{backend}_options"], "roles.*.options")
        elif k == "models":
            for s in sch["properties"]["models"]["additionalProperties"]["properties"]["source"]["properties"]:
                keys.add(f"models.*.source.{s}")
        elif k == "data":
            for d, dsub in sub["properties"].items():
                if d == "names":  # regex | llm | {source: file, path}
                    keys.update({"data.names", "data.names.source", "data.names.path"})
                else:
                    walk(dsub, f"data.{d}")
        else:
            walk(sub, k)
    return keys


def leaves(cfg: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in cfg.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v and not key.endswith(("prices", "engine_args")):
            out += leaves(v, key)
        else:
            out.append((key, v))
    return out


def general(key: str) -> str:
    p = key.split(".")
    if p[0] in ("roles", "models") and len(p) > 1:
        p[1] = "*"
    return ".".join(p)


# New values for keys a generic change (bool flipped, number changed) cannot make; None: not changeable
# in this variant (covered in another).
NEW_VALUES = {
    "run_name": "renamed",
    "evaluation.roleplayer_audit.judge": None,  # adds the judge pass's jobs: tests/test_eval_config.py
    "iterations": 3,
    "prompts": lambda v: "paper_v1" if v == "fixed_v1" else "fixed_v1",
    "base_model": "other",
    "models.*.source.path": lambda v: v + "-copy",
    "models.*.source.api": "gpt-other",
    "models.*.source.gguf_package": "other_package",
    "models.*.source.gguf_file": "other.gguf",
    "models.*.source.hf": "org/other",
    "models.*.source.revision": "v2",
    "roles.*.model": lambda v: "other" if v == "tiny" else None,  # the file variant has a model `other`
    "roles.*.backend": lambda v: {"hf": "vllm", "vllm": "hf", "scripted": "hf"}.get(v),  # options reset
    "roles.*.options.dtype": "float16",
    "roles.*.options.device": "cpu",
    "roles.*.options.attn_implementation": "eager",
    "roles.*.options.tensor_parallel_size": 2,
    "roles.*.options.gpu_memory_utilization": 0.5,
    "roles.*.options.max_model_len": 512,
    "roles.*.options.enforce_eager": True,
    "roles.*.options.kv_cache_space_gb": 2.0,
    "roles.*.options.engine_args": {"swap_space": 1},
    "roles.*.options.base_url": "http://other:1/v1",
    "roles.*.options.api_key_env": "OTHER_KEY",
    "roles.*.options.organization_env": "OTHER_ORG",
    "roles.*.options.azure_endpoint": "https://other.example",
    "roles.*.options.azure_endpoint_env": "OTHER_AZ",
    "roles.*.options.azure_deployment_env": "OTHER_DEP",
    "roles.*.options.api_version": "2024-01-01",
    "roles.*.options.refusals": "count",
    "roles.*.options.cache_dir": "other-cache",
    "roles.*.options.budget_usd": 5.0,
    "roles.*.options.budget_scope": "stage",
    "roles.*.options.prices": {"input_per_1k": 1.0, "output_per_1k": 2.0},
    "roles.*.options.max_tokens_param": "max_completion_tokens",
    "roles.*.options.batch_endpoint": "/v1/other",
    "roles.*.options.reply": "other {last}",
    "roles.*.options.rules": [{"match": "x", "reply": "y"}],
    "roles.*.options.rules_file": "rules.json",
    "roles.*.options.seeding": "per_batch",
    "roles.*.options.tokenizer": lambda v: "model" if v == "prompt_set" else "prompt_set",
    "simulation.gpu_sharing": "shared_memory",
    "training.method": None,  # switching the method changes the DAG's rules (select): tests/test_methods.py
    "training.grpo.reward": "info_gain",
    "training.grpo.turns": 2,
    "evaluation.trials": None,  # more trials add jobs (split test_trial2): tests/test_eval_config.py
    "evaluation.judges": None,  # another judge adds judge jobs: tests/test_eval_config.py
    "evaluation.panel_verdict": None,  # needs two judges (a config error alone): tests/test_eval_config.py
    "evaluation.human_labels": None,  # a label file is a new input of summarize: tests/test_eval_summary.py
    "evaluation.turn_credit": None,  # adds the turn_credit jobs: tests/test_grpo.py
    "training.regularizer": lambda v: "gold" if v == "self" else "self",
    "roles.*.options.program": None,  # a scripted world's code: tests/test_world.py
    "evaluation.winrate.variants": lambda v: v[:1] if len(v) > 1 else None,  # fewer variants: nothing to redo
    "evaluation.questioners": None,  # a new questioner adds jobs: docs/evaluation.md
    "evaluation.task_labels": lambda v: "none" if v == "paper_hand" else "paper_hand",
    "training.lr_scheduler": "linear",
    "training.deepspeed": "zero2",
    "training.attn_implementation": "sdpa",
    "training.master_weights": None,  # bf16 needs bf16: true, a combination checked at load (test_methods)
    "training.loss_weighting": "micro_batch",
    "training.wandb_project": "other",
    "training.max_steps": 3,
    "evaluation.conditions": ["qa-experimental", "pos-control-1", "pos-control-2", "neg-control"],
    "evaluation.winrate.pairs_per_group": lambda v: 1 if v is None else v + 1,
    "evaluation.winrate.verdict": lambda v: "generate" if v == "logprob" else None,
    "evaluation.winrate.max_dropped_fraction": 0.5,
    "api": None,  # empty in this variant (the api variant sets its keys)
    "roles.*.options": None,  # empty: the backend has no options (scripted rules etc. are set elsewhere)
    "api.cache_dir": "other-cache",
    "api.budget_scope": "stage",
    "api.prices": {"input_per_1k": 9.0, "output_per_1k": 9.0},
    "data.released_dir": lambda v: v + "-copy",
    "data.tasks.path": lambda v: copy_path(v),
    "data.tasks.dataset": "org/other",
    "data.tasks.dataset_split": "test",
    "data.tasks.column": "text",
    "data.tasks.rows.*": lambda v: [v[0], v[1] - 1],
    "data.personas.path": lambda v: copy_path(v),
    "data.personas.seeds": lambda v: copy_path(v),
    "data.names": lambda v: {"regex": "llm", "llm": "regex"}[v],
    "data.names.source": None,  # a constant
    "data.names.path": lambda v: copy_path(v),
    "data.oracle.source": None,  # switched by the variants (generate / file); alone it leaves a stray path
    "data.oracle.path": lambda v: copy_path(v),
    "data.tasks.source": None,  # switched by the variants (file / hf_dataset)
    "data.personas.source": None,  # (file / generate)
}


def copy_path(path: str) -> str:
    """The same path in the copy of its top folder (each variant copies its data folders to X-copy)."""
    top, _, rest = path.partition("/")
    return f"{top}-copy/{rest}"


def new_value(key: str, value):
    g = general(key)
    rule = next((v for k, v in NEW_VALUES.items() if fnmatch.fnmatchcase(g, k)), "generic")
    if rule == "generic":
        if isinstance(value, bool):
            return not value
        if isinstance(value, int):
            return value + 1
        if isinstance(value, float):
            return value / 2 if value else 0.5
        raise AssertionError(f"no new value for {key} = {value!r}: add it to NEW_VALUES")
    return rule(value) if callable(rule) else rule


def set_key(cfg: dict, key: str, value, filled: dict) -> None:
    """cfg[key] = value; a mapping cfg leaves to its defaults is taken from the filled config."""
    parts = key.split(".")
    node, full = cfg, filled
    for p in parts[:-1]:
        full = full[p]
        node = node.setdefault(p, copy.deepcopy(full))
    node[parts[-1]] = value


# A model's folder and its recipe (rules/models.smk)
PREPARE = {"model_recipe", "prepare_model"}
# Backend options that change a job's speed only (rules/common.smk): (role, backend) -> options
SPEED_ONLY_OPTIONS = {("scorer", "hf"): ("batch_size",)}

# Which stages read what (the expectation, written from the rules, not derived from them).
ROLE_STAGES = {
    "questioner": {"simulate"},
    "roleplayer": {"simulate"},
    "answerer": {"regularize", "winrate_answer"},
    "judge": {"judge"},
    "scorer": {"score", "score_control"},
}


def role_stages(cfg: dict, role: str) -> set[str]:
    if role == "oracle":
        return {"oracle"} if cfg["data"]["oracle"]["source"] == "generate" else set()
    if role == "persona_generator":
        return ({"personas"} if cfg["data"]["personas"]["source"] == "generate" else set()) | (
            {"names"} if cfg["data"]["names"] == "llm" else set()
        )
    audit = {"audit_judge"} if cfg["evaluation"]["roleplayer_audit"]["judge"] == role else set()
    return ROLE_STAGES[role] | audit


def expected(cfg: dict, key: str) -> set[str]:
    p = key.split(".")
    if key == "run_name":
        # a name (W&B run, model card) that retrains nothing; each run keeps its own summary folder
        return {"summarize", "report_tables"}
    if key in ("iterations",):
        return {"train"}
    if key == "base_model":
        return PREPARE
    if key == "prompts":
        # every stage that renders a prompt (personas, names: their file variants too, as --prompts)
        return {"personas", "names", "oracle", "simulate", "score", "score_control",
                "regularize", "sft_data", "winrate_answer", "judge"}  # fmt: skip
    if p[0] == "models":
        name = p[1]
        users = [r for r, spec in cfg["roles"].items() if spec.get("model") == name and role_stages(cfg, r)]
        if "api" in cfg["models"][name]["source"]:
            return set().union(*(role_stages(cfg, r) for r in users))
        return PREPARE if users or name == cfg["base_model"] else set()
    if p[0] == "data":
        if p[1] == "released_dir":
            return {"tasks", "personas", "names", "oracle"}
        return {p[1]}
    if key == "simulation.questioner_memory_share" and cfg["simulation"]["gpu_sharing"] != "shared_memory":
        return set()  # read only under gpu_sharing shared_memory (rules/simulate.smk passes it then)
    if p[0] == "simulation":
        return {"simulate", "pool"} if p[1] == "conversations_per_pair" else {"simulate"}
    if key == "top_k":
        return {"topk"}
    if p[0] == "roles":
        if p[2:3] == ["options"] and p[-1] in SPEED_ONLY_OPTIONS.get((p[1], cfg["roles"][p[1]]["backend"]), ()):
            return set()  # how fast, not what: not recorded
        stages = role_stages(cfg, p[1])
        return stages | PREPARE if stages and p[-1] == "model" else stages  # the new model's folder
    if p[0] == "training" and p[1] in ("dpo", "rwr", "grpo"):
        # read only by its own method (these variants train with sft): nothing reruns
        assert cfg["training"]["method"] == "sft", key
        return set()
    if key == "training.regularizer":
        return {"sft_data", "train"}  # which final answers the training data ends in
    if p[0] == "training":
        return {"train"}
    if p[:2] == ["evaluation", "roleplayer_audit"]:  # max_turns, seed: read by the judge pass only
        return {"audit_judge", "summarize"} if cfg["evaluation"]["roleplayer_audit"]["judge"] else set()
    if p[0] == "evaluation":
        return {
            "conditions": {"summarize"},
            "shuffle_seed": {"shuffle"},
            "pairs_per_group": {"winrate_answer"},
            "seed": {"winrate_answer", "judge"},
            "verdict": {"judge"},
            "max_dropped_fraction": {"judge"},
            "variants": {"summarize"},  # fewer variants: no stage to redo, the summary restated
            "both_orders": {"judge"},
            "ratings": {"judge"},
            # only a judge that writes its verdict is asked again (a forced choice is deterministic: no judge
            # reruns; the summary restates the config it names)
            "judge_repeats": {"judge"} if cfg["evaluation"]["winrate"]["verdict"] == "generate" else {"summarize"},
            "bootstrap_resamples": {"summarize"},
            "bootstrap_seed": {"summarize"},
            "task_labels": {"summarize"},
            "panel_verdict": {"summarize"},
            "specificity_rating": {"specificity", "summarize"},  # the judge rates the test tasks, summarize reads it
        }[p[-1]]
    if p[0] == "api":
        openai = [r for r, s in cfg["roles"].items() if s["backend"] == "openai"]
        return set().union(*(role_stages(cfg, r) for r in openai))
    raise AssertionError(f"no expectation for {key}")


def downstream(edges: dict[str, list[str]], start: set[str]) -> set[str]:
    out, todo = set(start), list(start)
    while todo:
        r = todo.pop()
        for child, parents in edges.items():
            if r in parents and child not in out:
                out.add(child)
                todo.append(child)
    return out - {"all"}


SUMMARY_RULES = {"summarize", "report_tables"}


# Variants: together they give every key of the schema a value to change.
def variant_file(work: Path) -> dict:
    cfg = tiny_config(work / "model")
    cfg["models"]["other"] = {"source": {"path": str(work / "model2")}}
    return cfg


def variant_generate(work: Path) -> dict:
    cfg = tiny_config(work / "model")
    cfg["models"]["hub"] = {"source": {"hf": "org/model", "revision": "main"}}
    cfg["data"] = {
        "tasks": {"source": "hf_dataset", "dataset": "org/tasks", "dataset_split": "train", "column": "prompt",
                  "rows": {"A": [0, 4], "B": [4, 8], "test": [8, 11]}},
        "personas": {"source": "generate", "seeds": "data/paper/prodigy_seeds.json",
                     "count": {"A": 3, "B": 3, "test": 2}, "seed": 1},
        "names": "llm",
    }  # fmt: skip
    cfg["roles"]["persona_generator"]["model"] = "hub"
    cfg["roles"]["questioner"] = {"backend": "vllm", "options": {}, "sampling": {"max_tokens": 6}}
    cfg["roles"]["roleplayer"] = {"backend": "scripted", "model": "tiny", "options": {}}
    return cfg


def variant_api(work: Path) -> dict:
    cfg = tiny_config(work / "model")
    cfg["models"]["gpt"] = {"source": {"api": "gpt-x"}}
    for role in ("roleplayer", "oracle", "judge"):
        cfg["roles"][role] = {"backend": "openai", "model": "gpt", "sampling": {"max_tokens": 6}}
    cfg["evaluation"]["winrate"]["verdict"] = "generate"
    cfg["evaluation"]["roleplayer_audit"] = {"judge": "judge"}  # the API judge's audit pass
    cfg["api"] = {"cache_dir": "api-cache", "budget_usd": 10.0, "budget_scope": "total",
                  "prices": {"input_per_1k": 0.01, "output_per_1k": 0.03}, "max_concurrency": 4, "batch": False}  # fmt: skip
    return cfg


def variant_released(work: Path) -> dict:
    cfg = tiny_config(work / "model")
    cfg["data"] = {
        "released_dir": "released",
        "tasks": {"source": "file", "path": "instruct-questions/A.json",
                  "rows": {"A": [0, 4], "B": [250, 254], "test": [500, 503]}},
        "personas": {"source": "file", "path": "personas/star-2-bsft/{split}.json"},
        "names": {"source": "file", "path": "personas/star-2-bsft/{split}_NAMES.json"},
        "oracle": {"source": "file", "path": "gold-responses/star-2-bsft/{split}.json"},
    }  # fmt: skip
    return cfg


def prepare(work: Path) -> None:
    for m in ("model", "model2"):
        (work / m).mkdir(parents=True, exist_ok=True)
        (work / m / "config.json").write_text("{}")
        shutil.copytree(work / m, work / f"{m}-copy", dirs_exist_ok=True)
    copy_data(work)
    shutil.copytree(work / "data", work / "data-copy", dirs_exist_ok=True)
    shutil.copytree(REPO / "tests/fixtures/released", work / "released", dirs_exist_ok=True)
    shutil.copytree(work / "released", work / "released-copy", dirs_exist_ok=True)
    for top in ("instruct-questions", "personas", "gold-responses"):
        shutil.copytree(work / "released" / top, work / "released" / f"{top}-copy", dirs_exist_ok=True)


def check_variant(work: Path, name: str, cfg: dict, only: tuple[str, ...] = ()) -> set[str]:
    """Materialise `cfg`, change each leaf key (those starting with `only`, if given); returns the
    generalised keys tested. Failures are collected so one run names every wrong key."""
    work = work / name
    work.mkdir()
    prepare(work)
    base = write_config(work / "base.yaml", cfg)
    filled = load_config(copy.deepcopy(cfg))
    cases = []
    for key, value in leaves(filled):
        if only and not key.startswith(only):
            continue
        new = new_value(key, value)
        if new is None or new == value:
            continue
        changed = copy.deepcopy(cfg)
        set_key(changed, key, new, filled)
        if key.endswith(".backend"):
            changed["roles"][key.split(".")[1]]["options"] = {}  # the old backend's options do not apply
        cases.append((key, write_config(work / f"{len(cases)}.yaml", changed)))
    results = plans(work, [("materialize", base), ("plan", base), ("edges", base)] + [("plan", p) for _, p in cases])
    assert results[0] == {"done": True}, results[0]
    assert results[1] == {"rules": {}}, f"{name}: a materialised DAG must be up to date: {results[1]}"
    edges = results[2]["edges"]
    problems = []
    for (key, _), res in zip(cases, results[3:], strict=True):
        if "error" in res:
            problems.append(f"{key}: dry-run failed: {res['error'][:300]}")
            continue
        # the summary and its tables record the digest of the config its results depend on (they name the
        # config behind them): a change some stage reads restates them, and they run last; a key nothing
        # reads plans nothing at all, the summary included
        wanted = expected(filled, key)
        planned, want = set(res["rules"]) - SUMMARY_RULES, wanted - SUMMARY_RULES
        if not wanted and res["rules"]:
            problems.append(f"{key}: read by no stage, yet plans {sorted(res['rules'])}")
        elif not want <= planned:
            problems.append(f"{key}: should rerun {sorted(want - planned)}; planned {sorted(planned)}")
        elif not planned <= downstream(edges, want):
            problems.append(f"{key}: reruns {sorted(planned - downstream(edges, want))}, upstream of what reads it")
    assert not problems, f"{name}:\n  " + "\n  ".join(problems)
    return {general(k) for k, _ in cases}


@pytest.mark.slow
def test_every_config_key_reruns_exactly_its_stages(tmp_path):
    tested = check_variant(tmp_path, "file", variant_file(tmp_path / "file"))
    tested |= check_variant(tmp_path, "generate", variant_generate(tmp_path / "generate"),
                            only=("data.", "models.", "roles.persona_generator", "roles.questioner.options",
                                  "roles.roleplayer.options"))  # fmt: skip
    tested |= check_variant(tmp_path, "api", variant_api(tmp_path / "api"),
                            only=("api.", "models.", "roles.judge", "evaluation.winrate.verdict",
                                  "evaluation.winrate.judge_repeats", "evaluation.roleplayer_audit"))  # fmt: skip
    tested |= check_variant(tmp_path, "released", variant_released(tmp_path / "released"), only=("data.",))
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    tested |= check_variant(tmp_path, "default", default, only=("models.",))
    # switched by the variants, or changing the DAG's shape: tested where named in NEW_VALUES
    changed_elsewhere = {"data.tasks.source", "data.personas.source", "data.names.source", "data.oracle.source",
                         "training.method", "training.master_weights", "evaluation.questioners",
                         "evaluation.trials", "evaluation.judges", "evaluation.human_labels", "evaluation.turn_credit",
                         "evaluation.panel_verdict", "evaluation.roleplayer_audit.judge",
                         "roles.*.options.program"}  # fmt: skip
    assert schema_leaf_keys() - tested - changed_elsewhere == set()


def test_issue_keys_rerun_their_stage(tmp_path):
    """The keys once passed as unrecorded params: persona count/seed, task rows/dataset/column, an API
    model's name; a data path change; and the one name-only key (run_name) plans only its own summary."""
    cfg = variant_generate(tmp_path / "g")
    cfg["models"]["gpt"] = {"source": {"api": "gpt-x"}}
    cfg["roles"]["judge"] = {"backend": "openai", "model": "gpt"}
    cfg["evaluation"]["winrate"]["verdict"] = "generate"
    check_variant(
        tmp_path, "g", cfg,
        only=("data.personas.count.A", "data.personas.seed", "data.tasks.rows.B", "data.tasks.dataset",
              "data.tasks.column", "models.gpt.source.api", "run_name"),
    )  # fmt: skip


def changed_configs(work: Path, cfg: dict, changes: dict[str, object]) -> dict[str, Path]:
    """One config file per change of `cfg` (key -> new value), each changing that key alone."""
    filled = load_config(copy.deepcopy(cfg))
    out = {}
    for key, value in changes.items():
        changed = copy.deepcopy(cfg)
        set_key(changed, key, value, filled)
        out[key] = write_config(work / f"changed.{key}.yaml", changed)
    return out


@pytest.fixture(scope="module")
def released_run(tmp_path_factory):
    """The released variant (tasks cut by `rows` from one file; personas, names and gold responses from
    files, so the oracle and persona_generator roles are unused) with a model no role uses, materialised."""
    work = tmp_path_factory.mktemp("released-run")
    prepare(work)
    cfg = variant_released(work)
    cfg["models"]["unused"] = {"source": {"path": str(work / "model2")}}
    base = write_config(work / "base.yaml", cfg)
    done, now = plans(work, [("materialize", base), ("plan", base)])
    assert done == {"done": True} and now == {"rules": {}}, (done, now)
    return work, cfg


def split_scope_problems(key: str, own_rule: str, jobs: list) -> list[str]:
    """What a change of split A's own value (`key`, read by `own_rule`) must not plan: another split's data,
    or m0's jobs on B or test (m0's test-split evaluation, its win-rate answers)."""
    problems, data_rules = [], ("tasks", "personas", "names", "oracle")
    data = {(rule, wc["split"]) for rule, wc in jobs if rule in data_rules}
    if (own_rule, "A") not in data:
        problems.append(f"{key}: should rerun {own_rule} of split A; planned data jobs {sorted(data)}")
    if other := sorted(d for d in data if d[1] != "A"):
        problems.append(f"{key}: reruns another split's data {other}")
    m0 = sorted(
        f"{rule}{sorted(wc.items())}"
        for rule, wc in jobs
        if rule not in data_rules
        and wc.get("t", "0") == "0"
        and (wc.get("split") in ("B", "test") or rule == "winrate_answer")
    )
    if m0:
        problems.append(f"{key}: reruns m0's jobs on B/test: {m0[:6]}")
    return problems


def test_a_splits_own_data_value_reruns_that_split_only(tmp_path, released_run):
    """Changing split A's persona count or task rows regenerates split A's data and what follows it, not the
    test split's (whose personas, tasks, gold responses and m0 evaluation stay): each split's job records
    its own split's value only."""
    gen_work = tmp_path / "generate"
    gen_work.mkdir()
    prepare(gen_work)
    gen = variant_generate(gen_work)
    gen_base = write_config(gen_work / "base.yaml", gen)
    gen_cases = changed_configs(gen_work, gen, {"data.personas.count.A": 2, "data.tasks.rows.A": [0, 3]})
    rel_work, rel = released_run
    rel_cases = changed_configs(rel_work, rel, {"data.tasks.rows.A": [0, 3]})
    own = {"data.personas.count.A": "personas", "data.tasks.rows.A": "tasks"}
    results = plans(gen_work, [("materialize", gen_base)] + [("jobs", p) for p in gen_cases.values()])
    assert results[0] == {"done": True}, results[0]
    results += plans(rel_work, [("jobs", p) for p in rel_cases.values()])
    problems = []
    for (variant, key), res in zip(
        [("generate", k) for k in gen_cases] + [("released", k) for k in rel_cases], results[1:], strict=True
    ):
        assert "jobs" in res, f"{variant} {key}: {res}"
        problems += [f"{variant} {p}" for p in split_scope_problems(key, own[key], res["jobs"])]
    assert not problems, "\n  ".join(problems)


def test_the_scorers_batch_size_reruns_nothing(released_run):
    """roles.scorer.options.batch_size sets how many rows the hf scorer runs per forward pass, not what a
    row's score is: not recorded, so changing it plans nothing. A generation role's batch size stays
    recorded (a sampled text can change with the batch it runs in)."""
    work, cfg = released_run
    cases = changed_configs(
        work, cfg, {"roles.scorer.options.batch_size": 3, "roles.answerer.options.batch_size": 3}
    )  # fmt: skip
    scorer, answerer = plans(work, [("plan", p) for p in cases.values()])
    assert scorer == {"rules": {}}, scorer
    assert {"regularize", "winrate_answer"} <= set(answerer["rules"]), answerer


def test_an_unused_model_or_role_reruns_nothing(released_run):
    """A model no role uses, and the roles no stage runs (the persona_generator and the oracle when personas,
    names and gold responses come from files), plan nothing, the summary included: the config digest it
    records covers only what its results depend on."""
    work, cfg = released_run
    cases = changed_configs(
        work, cfg,
        {"models.unused.source.path": str(work / "model2-copy"), "roles.persona_generator.sampling.temperature": 0.5,
         "roles.persona_generator.model": "unused", "roles.oracle.sampling.max_tokens": 99,
         "roles.oracle.options.batch_size": 3},
    )  # fmt: skip
    results = plans(work, [("plan", p) for p in cases.values()])
    planned = {key: res for key, res in zip(cases, results, strict=True) if res != {"rules": {}}}
    assert not planned, planned


def test_an_identical_model_rebuild_reruns_nothing_a_changed_model_its_consumers(tmp_path):
    """Re-preparing a base model identically (a forced prepare_model, or its folder rebuilt: only newer)
    plans nothing downstream; changing the model's source reruns every stage that loads it."""
    work = tmp_path / "w"
    work.mkdir()
    prepare(work)
    cfg = variant_file(work)
    base = write_config(work / "base.yaml", cfg)
    changed = copy.deepcopy(cfg)
    changed["models"]["tiny"]["source"]["path"] += "-copy"
    changed = write_config(work / "changed.yaml", changed)
    done, edges = plans(work, [("materialize", base), ("edges", base)])
    assert done == {"done": True}, done
    consumers = {r for r, deps in edges["edges"].items() if "prepare_model" in deps} - {"all"}
    assert {"simulate", "score", "train", "winrate_answer", "regularize", "oracle"} <= consumers, consumers

    folder = work / "resources" / "models" / "tiny"
    shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # rebuilt: same content, a later mtime than every result
    later = folder.stat().st_mtime + 3600
    os.utime(folder / "config.json", (later, later))
    os.utime(folder, (later, later))
    rebuilt, forced, real = plans(
        work, [("plan", base), ("plan", base, ["prepare_model"]), ("plan", changed)]
    )  # fmt: skip
    assert rebuilt == {"rules": {}}, rebuilt
    assert forced == {"rules": {"prepare_model": 1}}, forced
    assert consumers | PREPARE <= set(real["rules"]), real
