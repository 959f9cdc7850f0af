"""Checks a config needs beyond its JSON schema: cross-references between keys.

Called by rules/common.smk right after schema validation, so a bad config stops the workflow before
any job runs, with the key's path in the message.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from .errors import StargateError

FIXED_MODEL_ROLES = ("questioner", "answerer", "scorer")  # always m_t / m0: no `model` key


def check_config(config: dict[str, Any], source: str = "config") -> None:
    problems = []
    models = config.get("models", {})
    if config.get("base_model") not in models:
        problems.append(f"base_model: '{config.get('base_model')}' is not a key of models ({', '.join(models)})")
    elif "api" in models[config["base_model"]]["source"]:
        problems.append("base_model: m0 must be a local model (it is scored with and fine-tuned), not an API model")
    for role, spec in config.get("roles", {}).items():
        if "model" in spec:
            if role in FIXED_MODEL_ROLES:
                problems.append(f"roles.{role}.model: this role is always played by m_t/m0; remove the key")
            elif spec["model"] not in models:
                problems.append(f"roles.{role}.model: '{spec['model']}' is not a key of models")
            elif spec["backend"] == "openai" and "api" not in models[spec["model"]]["source"]:
                problems.append(f"roles.{role}: backend openai needs a model with source.api")
            elif spec["backend"] != "openai" and "api" in models[spec["model"]]["source"]:
                problems.append(f"roles.{role}: model '{spec['model']}' is an API model; use backend openai")
        elif role not in FIXED_MODEL_ROLES:
            problems.append(f"roles.{role}.model: missing (name a key of models)")
        if role in ("questioner", "answerer", "scorer") and spec["backend"] == "openai":
            problems.append(f"roles.{role}.backend: m_t/m0 are local models; use hf or vllm")
    sim = config.get("simulation", {})
    if sim.get("min_turns", 1) > sim.get("max_turns", 1):
        problems.append(f"simulation.min_turns ({sim['min_turns']}) is larger than simulation.max_turns ({sim['max_turns']})")
    if config.get("top_k", 1) > sim.get("conversations_per_pair", 1):
        problems.append("top_k: cannot keep more conversations per pair than simulation.conversations_per_pair")
    ev = config.get("evaluation", {})
    if "qa-experimental" not in ev.get("conditions", []):
        problems.append("evaluation.conditions: must include qa-experimental (it selects the top-k conversations)")
    if ev.get("winrate", {}).get("verdict") == "logprob" and config.get("roles", {}).get("judge", {}).get("backend") == "openai":
        problems.append("evaluation.winrate.verdict: logprob needs a local judge (hf or vllm); use generate for API judges")
    problems += check_data(config.get("data", {}))
    for name, m in models.items():
        src = m["source"]
        kinds = [k for k in ("gguf_package", "hf", "path", "api") if k in src]
        if len(kinds) != 1:
            problems.append(f"models.{name}.source: give exactly one of gguf_package, hf, path, api (got {kinds})")
        if "gguf_package" in src and "gguf_file" not in src:
            problems.append(f"models.{name}.source.gguf_file: required with gguf_package")
    if problems:
        raise StargateError(f"{source} has {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))


def check_data(data: dict[str, Any]) -> list[str]:
    """Cross-checks of `data`: file sources name a file, row ranges are disjoint, the released gold
    responses can only be aligned with the released personas."""
    problems = []
    tasks, personas, oracle = data.get("tasks", {}), data.get("personas", {}), data.get("oracle", {})
    if tasks.get("source") == "file" and "path" not in tasks:
        problems.append("data.tasks.path: required when data.tasks.source is file")
    if tasks.get("source") == "hf_dataset" and not {"dataset", "rows"} <= tasks.keys():
        problems.append("data.tasks: hf_dataset needs dataset and rows")
    if tasks.get("source") == "file" and "rows" in tasks and "{split}" in tasks.get("path", ""):
        problems.append("data.tasks: rows cut one task list into splits, but the path names one file per split "
                        "({split}); remove rows or the {split}")
    rows = tasks.get("rows") or {}
    for split, (lo, hi) in rows.items():
        if lo >= hi:
            problems.append(f"data.tasks.rows.{split}: [{lo}, {hi}] is empty; give [lo, hi] with lo < hi")
    spans = sorted((lo, hi, split) for split, (lo, hi) in rows.items())
    for (lo1, hi1, s1), (lo2, hi2, s2) in pairwise(spans):
        if lo2 < hi1:
            problems.append(f"data.tasks.rows: {s1} [{lo1}, {hi1}] and {s2} [{lo2}, {hi2}] overlap, so tasks would "
                            "appear in two splits; make the ranges disjoint (paper: A [0,250], B [250,500], test [500,550])")
    if personas.get("source") == "file" and "path" not in personas:
        problems.append("data.personas.path: required when data.personas.source is file")
    if personas.get("source") == "generate" and not {"seeds", "count"} <= personas.keys():
        problems.append("data.personas: generate needs seeds and count")
    if oracle.get("source") == "file":
        if "path" not in oracle:
            problems.append("data.oracle.path: required when data.oracle.source is file")
        elif "{split}" not in oracle["path"]:
            problems.append("data.oracle.path: the authors' gold responses are one file per split; put {split} in "
                            "the path (e.g. gold-responses/star-2-bsft/{split}.json)")
        if personas.get("source") != "file":
            problems.append("data.oracle.source file: the gold responses are keyed by position in the authors' "
                            "persona lists ('prompt-i persona-j'), so data.personas must be source: file too")
    return problems
