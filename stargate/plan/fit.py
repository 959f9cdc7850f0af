"""Which GPU memory each kind of job needs, from the config and the GPUs its rule gets, against the card.

`rule_memory` gives, per GPU rule, the peak of one GPU for each engine or process the job runs (stargate/plan/
memory.py); `check_fit` raises when one does not fit, naming the job, the figure and the fix. It runs when the
workflow loads (rules/common.smk), only when a card size is declared: the resource `gpu_memory_gb` (the card's
memory as sold, 80 for an 80 GB A100/H100, read as GiB) in the profile's default-resources or for one rule in
set-resources. CPU runs declare none and are never checked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.kinds import BACKENDS, loads_local_model
from ..errors import StargateError
from .memory import GiB, Memory, hf_memory, training_memory, vllm_memory
from .shapes import Shape, shape_of

# The roles each rule's stage runs (rules/*.smk): their model and backend decide the job's GPU memory.
RULE_ROLES = {
    "simulate": ("questioner", "roleplayer"),
    "score": ("scorer",),
    "score_control": ("scorer",),
    "regularize": ("answerer",),
    "winrate_answer": ("answerer",),
    "judge": ("judge",),
    "oracle": ("oracle",),
    "personas": ("persona_generator",),
    "names": ("persona_generator",),
}
GPU_RULES = (*RULE_ROLES, "train")
LOCAL_BACKENDS = tuple(name for name in BACKENDS if loads_local_model(name))  # the backends say it
SKIP_ENV = "STARGATE_SKIP_FIT_CHECK"  # 1: no check at load (`stargate plan` prints the fit itself)


@dataclass
class RuleResources:
    """What a rule's jobs get: GPUs, the Questioner's share of them (simulate), the card's memory."""

    gpu: int = 0
    questioner_gpu: int = 0
    gpu_memory_gb: float | None = None
    threads: int | None = None
    other: dict[str, Any] = field(default_factory=dict)


@dataclass
class RuleFit:
    rule: str
    resources: RuleResources
    engines: list[Memory] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [p for m in self.engines for p in m.problems]


def role_models(config: dict, role: str) -> list[str]:
    """The models a role loads: m_t is m0's shape (plus extra evaluated questioners); others their `model`."""
    if role in ("questioner", "answerer"):
        extra = [q["model"] for q in (config.get("evaluation") or {}).get("questioners") or []]
        return list(dict.fromkeys([config["base_model"], *extra]))
    return [config["roles"][role].get("model", config["base_model"])]


def engine_memory(shape: Shape, config: dict, role: str, gpus: int, card: float | None) -> Memory:
    spec = config["roles"][role]
    options = spec.get("options") or {}
    if spec["backend"] == "vllm":
        return vllm_memory(shape, role, options, gpus, card, scorer=role == "scorer")
    return hf_memory(shape, role, options, spec.get("sampling") or {}, gpus, card)


GPU_SHARING = ("separate", "shared_memory", "sleep")


def gpu_sharing(config: dict) -> str:
    return (config.get("simulation") or {}).get("gpu_sharing") or "separate"


def shared_config(config: dict, mode: str) -> dict:
    """`config` with simulation.gpu_sharing `mode` and, for a shared mode, the two roles' options as the
    simulate stage runs them (stargate.stages.simulate.shared_roles: split gpu_memory_utilization, or sleep
    mode on)."""
    from ..stages.simulate import shared_roles

    roles = dict(config["roles"])
    if mode != "separate" and all(roles[r]["backend"] == "vllm" for r in ("questioner", "roleplayer")):
        share = float(config["simulation"].get("questioner_memory_share", 0.25))
        roles["questioner"], roles["roleplayer"] = shared_roles(mode, roles["questioner"], roles["roleplayer"], share)
    return {**config, "roles": roles, "simulation": {**config["simulation"], "gpu_sharing": mode}}


def rule_memory(config: dict, rule: str, res: RuleResources, root: Path | None = None) -> RuleFit:
    """Peak memory of one GPU per engine/process of a job of `rule` (nothing for a CPU job)."""
    if rule == "simulate" and gpu_sharing(config) != "separate":
        return shared_memory_fit(config, res, root)
    fit = RuleFit(rule, res)
    if res.gpu <= 0:
        return fit
    card = res.gpu_memory_gb * GiB if res.gpu_memory_gb else None
    if rule == "train":
        shape = shape_of(config["base_model"], config, root)
        if shape is None:
            fit.notes.append(f"train: no config.json known for {config['base_model']}: memory not computed")
        else:
            fit.engines.append(training_memory(shape, config["training"], res.gpu, card))
        return fit
    roles = [r for r in RULE_ROLES.get(rule, ()) if config["roles"][r]["backend"] in LOCAL_BACKENDS]
    gpus = {r: res.gpu for r in roles}
    if rule == "simulate" and len(roles) == 2 and 0 < res.questioner_gpu < res.gpu:
        gpus = {"questioner": res.questioner_gpu, "roleplayer": res.gpu - res.questioner_gpu}
    for role in roles:
        for name in role_models(config, role):
            shape = shape_of(name, config, root)
            if shape is None:
                fit.notes.append(f"{rule}: no config.json known for {name} ({role}): memory not computed")
                continue
            mem = engine_memory(shape, config, role, gpus[role], card)
            share = "gpu - questioner_gpu" if role == "roleplayer" and gpus[role] != res.gpu else "gpu"
            share = "questioner_gpu" if role == "questioner" and gpus[role] != res.gpu else share
            mem.problems = [f"{p} (the role's GPUs: resources {share} of rule {rule})" for p in mem.problems]
            fit.engines.append(mem)
    vllm_roles = [r for r in roles if config["roles"][r]["backend"] == "vllm"]
    if rule == "simulate" and len(vllm_roles) == 2 and res.questioner_gpu == 0 and fit.engines:
        # (gpu_sharing shared_memory splits the utilization itself: shared_memory_fit)
        # both engines on the same GPUs: each takes its gpu_memory_utilization of every card
        utils = {m.what.split(":")[0]: m.extra["utilization"] for m in fit.engines}
        if sum(utils.values()) > 1.0:
            fit.engines[0].problems.append(
                f"simulate: both vLLM engines share the job's {res.gpu} GPU(s) (questioner_gpu 0) but their"
                f" gpu_memory_utilization add up to {sum(utils.values()):.2f} > 1; fix: give the Questioner its own"
                " GPUs (resources questioner_gpu) or split gpu_memory_utilization between the two roles"
            )
    return fit


def shared_memory_fit(config: dict, res: RuleResources, root: Path | None = None) -> RuleFit:
    """simulate with gpu_sharing shared_memory or sleep: both vLLM engines on all the job's GPUs.

    shared_memory: both engines live at once, each with its share of gpu_memory_utilization, and each must hold
    its weights and one max_model_len sequence in it. sleep: one engine awake at a time at its own
    gpu_memory_utilization; the sleeping one's weights wait in host memory (the job's mem_mb)."""
    mode = gpu_sharing(config)
    fit = RuleFit("simulate", res)
    if res.gpu <= 0:
        return fit
    card = res.gpu_memory_gb * GiB if res.gpu_memory_gb else None
    backends = [config["roles"][r]["backend"] for r in ("questioner", "roleplayer")]
    if backends != ["vllm", "vllm"]:
        fit.notes.append(
            f"simulate: gpu_sharing {mode} runs two vLLM engines, but the roles use {backends[0]} and {backends[1]}"
        )
        mem = Memory(what=f"simulate: gpu_sharing {mode}", gpus=res.gpu, card=card)
        mem.problems.append(
            f"simulate: gpu_sharing {mode} needs the vllm backend for the questioner and the roleplayer;"
            " fix: simulation.gpu_sharing separate"
        )
        fit.engines.append(mem)
        return fit
    run = shared_config(config, mode)
    host = 0.0
    for role in ("questioner", "roleplayer"):
        for name in role_models(run, role):
            shape = shape_of(name, run, root)
            if shape is None:
                fit.notes.append(f"simulate: no config.json known for {name} ({role}): memory not computed")
                continue
            mem = engine_memory(shape, run, role, res.gpu, card)
            mem.what += f", gpu_sharing {mode}"
            mem.problems = [
                f"{p} (gpu_sharing {mode}: both engines on the job's {res.gpu} GPU(s))" for p in mem.problems
            ]
            fit.engines.append(mem)
            host = max(host, shape.weight_bytes())
    utils = {m.what.split(":")[0]: m.extra.get("utilization", 0.0) for m in fit.engines}
    if mode == "shared_memory":
        fit.notes.append(
            "simulate: gpu_sharing shared_memory: gpu_memory_utilization "
            + " + ".join(f"{k} {v:.4g}" for k, v in utils.items())
            + f" = {sum(utils.values()):.4g} of every card"
        )
    else:
        fit.notes.append(
            f"simulate: gpu_sharing sleep: one engine awake at a time; the sleeping one's weights (up to"
            f" {host / GiB:.1f} GiB) wait in host memory"
        )
        mem_mb = res.other.get("mem_mb")
        if fit.engines and isinstance(mem_mb, int | float) and mem_mb * 1e6 < host:
            fit.engines[0].problems.append(
                f"simulate: gpu_sharing sleep offloads up to {host / GiB:.1f} GiB of weights to host memory but the"
                f" job asks for {mem_mb / 1000:.0f} GB (mem_mb); fix: raise mem_mb of rule simulate"
            )
    return fit


def plan_fit(config: dict, resources: dict[str, RuleResources], root: Path | None = None) -> list[RuleFit]:
    return [rule_memory(config, rule, resources[rule], root) for rule in GPU_RULES if rule in resources]


def fit_message(fits: list[RuleFit]) -> str | None:
    bad = [f for f in fits if f.problems]
    if not bad:
        return None
    lines = ["a GPU job cannot fit its card (stargate plan prints every figure):"]
    for f in bad:
        for p in f.problems:
            lines.append(f"  rule {f.rule} ({f.resources.gpu} GPU(s) of {f.resources.gpu_memory_gb:g} GB): {p}")
    return "\n".join(lines)


def check_fit(config: dict, resources: dict[str, RuleResources], root: Path | None = None) -> None:
    """Raise StargateError when a GPU job cannot fit; nothing when no card size is declared."""
    if os.environ.get(SKIP_ENV) == "1":
        return
    if not any(r.gpu_memory_gb for r in resources.values()):
        return
    message = fit_message(plan_fit(config, resources, root))
    if message:
        raise StargateError(message + f"\n(set {SKIP_ENV}=1 to submit anyway)")


# ------------------------------------------------------------------------------------------ resources
def _value(resource: Any, attempt: int = 1) -> Any:
    """A Snakemake Resource, a plain value or an expression string, as its first-attempt value."""
    if getattr(resource, "is_evaluable", lambda: False)():
        return None  # a function of the job (tmpdir, disk_mb, "960 * attempt" ...): none of the figures used here
    value = getattr(resource, "value", resource)
    if isinstance(value, str):
        try:
            return eval(value, {"__builtins__": {}}, {"attempt": attempt})  # noqa: S307 - the user's own profile
        except Exception:
            return value
    return value


def resources_from(set_resources: dict, default_resources: dict | None, rules=GPU_RULES) -> dict[str, RuleResources]:
    """RuleResources per GPU-capable rule from a profile's set-resources and default-resources (mappings of
    rule -> {resource: value} and resource -> value; values may be Snakemake Resource objects)."""
    default = {k: _value(v) for k, v in (default_resources or {}).items()}
    out = {}
    for rule in rules:
        merged = {**default, **{k: _value(v) for k, v in (set_resources.get(rule) or {}).items()}}
        card = merged.get("gpu_memory_gb")
        out[rule] = RuleResources(
            gpu=int(merged.get("gpu") or 0),
            questioner_gpu=int(merged.get("questioner_gpu") or 0),
            gpu_memory_gb=float(card) if card not in (None, "") else None,
            other={k: v for k, v in merged.items() if k not in ("gpu", "questioner_gpu", "gpu_memory_gb")},
        )
    return out


def resources_of_workflow(resource_settings) -> dict[str, RuleResources]:
    """RuleResources from Snakemake's `workflow.resource_settings` (--set-resources, --default-resources)."""
    overwrite = dict(getattr(resource_settings, "overwrite_resources", None) or {})
    default = getattr(resource_settings, "default_resources", None)
    default = dict(default.items()) if default is not None and hasattr(default, "items") else {}
    return resources_from({r: dict(v.items()) for r, v in overwrite.items()}, default)


def resources_of_profile(profile: dict) -> dict[str, RuleResources]:
    res = resources_from(profile.get("set-resources") or {}, profile.get("default-resources") or {})
    for rule, threads in (profile.get("set-threads") or {}).items():
        if rule in res:
            res[rule].threads = int(threads)
    return res


def require_card(resources: dict[str, RuleResources], gpu_memory_gb: float | None) -> None:
    if gpu_memory_gb is not None:
        for r in resources.values():
            r.gpu_memory_gb = gpu_memory_gb
    elif not any(r.gpu_memory_gb for r in resources.values()):
        raise StargateError(
            "no card size: set the resource gpu_memory_gb in the profile (default-resources) or pass --gpu-memory-gb"
        )
