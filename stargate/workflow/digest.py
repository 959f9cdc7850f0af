"""Which config a run's results came from: the effective config (what the results depend on), its digest, and
the identity a summary records."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

from ..training.methods.registry import training_for_method
from .cli_args import SPEED_ONLY_OPTIONS


def unused_roles(config: dict[str, Any], oracle_from_file: bool, has_winrate: bool) -> set[str]:
    """The roles no stage runs: the oracle when the gold responses come from files, the persona_generator when
    personas are read from files and names are not asked of it, the judge without win-rate variants (and
    without the specificity rating, its other job), the answerer without them and without the self regularizer."""
    data, unused = config["data"], set()
    if oracle_from_file:
        unused.add("oracle")
    if data["personas"]["source"] != "generate" and data["names"] != "llm":
        unused.add("persona_generator")
    if not has_winrate:
        if not config["evaluation"]["specificity_rating"]:
            unused.add("judge")
        if config["training"]["regularizer"] != "self":
            unused.add("answerer")
        unused |= {r for r in config["roles"] if r.startswith("judge_")}  # a panel's other judges
    unused.discard(config["evaluation"].get("roleplayer_audit", {}).get("judge"))  # the audit's judge pass runs it
    return unused


def effective_config(config: dict[str, Any], oracle_from_file: bool, has_winrate: bool) -> dict[str, Any]:
    """The effective config as recorded by the summary rules (its digest) and shown by the report: what the
    results depend on. Left out, so changing them reruns nothing: the run's name (it only labels the run); the
    roles no stage runs (unused_roles); the models only such roles (or none) name; `api` when no role left
    calls an API; the Roleplayer audit's judge-pass knobs when no judge pass runs; the other training methods' knobs (as rules/train.smk); the speed-only options
    (SPEED_ONLY_OPTIONS); and simulation.gpu_sharing when it is the default `separate`,
    questioner_memory_share unless it is shared_memory (rules/simulate.smk passes them only then)."""
    unused = unused_roles(config, oracle_from_file, has_winrate)
    roles = {}
    for role, spec in config["roles"].items():
        if role not in unused:
            speed_only = SPEED_ONLY_OPTIONS.get((role, spec["backend"]), ())
            options = {k: v for k, v in (spec.get("options") or {}).items() if k not in speed_only}
            roles[role] = {**spec, "options": options}
    models = {config["base_model"], *(q["model"] for q in config["evaluation"]["questioners"])}
    models |= {spec["model"] for spec in roles.values() if "model" in spec}
    out = {k: v for k, v in config.items() if k not in ("run_name", "roles", "models", "api")}
    out["roles"] = roles
    out["models"] = {k: v for k, v in config["models"].items() if k in models}
    if "api" in config and any(s["backend"] == "openai" for s in roles.values()):
        out["api"] = config["api"]
    out["training"] = training_for_method(config["training"])
    if not (config["evaluation"].get("roleplayer_audit") or {}).get("judge"):  # no judge pass: its knobs unread
        out["evaluation"] = {k: v for k, v in config["evaluation"].items() if k != "roleplayer_audit"}
    sharing = config["simulation"].get("gpu_sharing", "separate")
    out["simulation"] = {
        k: v
        for k, v in config["simulation"].items()
        if not (k == "gpu_sharing" and sharing == "separate")
        and not (k == "questioner_memory_share" and sharing != "shared_memory")
    }
    return out


def digest(effective: dict[str, Any]) -> str:
    """sha256 of the effective config: recorded by the summary rules, so the digest a summary names is always
    that of the config its results came from, and a key no stage reads does not restate it."""
    return hashlib.sha256(json.dumps(effective, sort_keys=True, default=str).encode()).hexdigest()


def identity(config: dict[str, Any], configfiles: Iterable[str], config_sha256: str) -> str:
    """Which config produced a run: its name, the files given (relative to the working directory where inside
    it), the training method and regularizer (so summaries of several methods tell themselves apart) and the
    digest."""
    files = [os.path.relpath(f) if not os.path.relpath(f).startswith("..") else str(f) for f in configfiles]
    training = config["training"]
    return json.dumps(
        {
            "run_name": config.get("run_name"),
            "configfiles": files or ["config/config.yaml"],
            "training": {"method": training["method"], "regularizer": training["regularizer"]},
            "config_sha256": config_sha256,
        },
        sort_keys=True,
    )
