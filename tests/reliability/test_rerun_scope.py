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
    "training.method": None,  # switching the method changes the DAG's rules (select): tests/test_methods.py
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
    return ROLE_STAGES[role]


def expected(cfg: dict, key: str) -> set[str]:
    p = key.split(".")
    if key == "run_name":
        return set()  # a name (W&B run, model card): renaming retrains nothing
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
    if p[0] == "simulation":
        return {"simulate", "pool"} if p[1] == "conversations_per_pair" else {"simulate"}
    if key == "top_k":
        return {"topk"}
    if p[0] == "roles":
        stages = role_stages(cfg, p[1])
        return stages | PREPARE if stages and p[-1] == "model" else stages  # the new model's folder
    if p[0] == "training" and p[1] in ("dpo", "rwr"):
        # read only by its own method (these variants train with sft): nothing reruns
        assert cfg["training"]["method"] == "sft", key
        return set()
    if key == "training.regularizer":
        return {"sft_data", "train"}  # which final answers the training data ends in
    if p[0] == "training":
        return {"train"}
    if p[0] == "evaluation":
        return {
            "conditions": {"summarize"},
            "shuffle_seed": {"shuffle"},
            "pairs_per_group": {"winrate_answer"},
            "seed": {"winrate_answer", "judge"},
            "verdict": {"judge"},
            "max_dropped_fraction": {"judge"},
            "variants": set(),
            "both_orders": {"judge"},
            "ratings": {"judge"},
            "bootstrap_resamples": {"summarize"},
            "bootstrap_seed": {"summarize"},
            "task_labels": {"summarize"},
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
        # the summary and its tables record the config's digest (they name the config behind them): any
        # change restates them, and they run last
        planned, want = set(res["rules"]) - SUMMARY_RULES, expected(filled, key) - SUMMARY_RULES
        if not want <= planned:
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
                            only=("api.", "models.", "roles.judge", "evaluation.winrate.verdict"))  # fmt: skip
    tested |= check_variant(tmp_path, "released", variant_released(tmp_path / "released"), only=("data.",))
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    tested |= check_variant(tmp_path, "default", default, only=("models.",))
    # switched by the variants, or changing the DAG's shape: tested where named in NEW_VALUES
    changed_elsewhere = {"data.tasks.source", "data.personas.source", "data.names.source", "data.oracle.source",
                         "training.method", "training.master_weights", "evaluation.questioners",
                         "roles.*.options.program"}  # fmt: skip
    assert schema_leaf_keys() - tested - changed_elsewhere == set()


def test_issue_keys_rerun_their_stage(tmp_path):
    """The keys once passed as unrecorded params: persona count/seed, task rows/dataset/column, an API
    model's name; a data path change; and the one name-only key (run_name) plans nothing."""
    cfg = variant_generate(tmp_path / "g")
    cfg["models"]["gpt"] = {"source": {"api": "gpt-x"}}
    cfg["roles"]["judge"] = {"backend": "openai", "model": "gpt"}
    cfg["evaluation"]["winrate"]["verdict"] = "generate"
    check_variant(
        tmp_path, "g", cfg,
        only=("data.personas.count.A", "data.personas.seed", "data.tasks.rows.B", "data.tasks.dataset",
              "data.tasks.column", "models.gpt.source.api", "run_name"),
    )  # fmt: skip


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
