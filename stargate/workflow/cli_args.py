"""Command-line arguments the rules render from the config: a role's `--role JSON --model M --prompts SET`, and
JSON that survives Snakemake's wildcard formatting."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from typing import Any

# Backend options that set how fast a role's job runs, not what it computes: the role's rules pass the whole
# role through an unrecorded param (`lambda wildcards, input:`) and record it without these
# (`role_cli(..., recorded=True)`), and the summary's config leaves them out, so changing one reruns nothing.
# Only the hf scorer's batch size: rows per forward pass of per-row sums (a row's score does not depend on its
# batch beyond float rounding). A generation role's batch size stays recorded: a sampled text can change with
# the batch it runs in (docs/reliability.md, "Reruns are exactly right").
SPEED_ONLY_OPTIONS = {("scorer", "hf"): ("batch_size",)}


def json_param(obj: Any) -> str:
    """JSON for a params string: a `{word}` inside a string value (a scripted reply's "{last}") is written
    `\\u007bword}` (the same JSON), or Snakemake would take it for a wildcard and fail to build the DAG."""
    return re.sub(r"\{(?=\s*\w)", r"\\u007b", json.dumps(obj, sort_keys=True, default=str))


def without_speed_only(role: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The role's config without its SPEED_ONLY_OPTIONS (what a rule records and the summary's config shows)."""
    speed_only = SPEED_ONLY_OPTIONS.get((role, spec["backend"]), ())
    if not speed_only:
        return spec
    options = spec.get("options") or {}
    return {**spec, "options": {k: v for k, v in options.items() if k not in speed_only}}


def trial_seed(seed: int, trial: int) -> int:
    """A role's sampling seed in repeated trial `trial` (evaluation.trials): its own seed in trial 1 (so one
    trial is today's run), else a hash of it and the trial (stargate.seeding.derive_seed's form), so every
    sampled prompt of trial j gets other seeds than trial 1's."""
    if int(trial) == 1:
        return int(seed)
    blob = json.dumps([int(seed), "trial", int(trial)]).encode("utf-8")
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & ((1 << 30) - 1)


def with_trial_seed(spec: dict[str, Any], trial: int) -> dict[str, Any]:
    """The role's config with its sampling seed for trial `trial` (unchanged for trial 1)."""
    if int(trial) == 1:
        return spec
    sampling = dict(spec.get("sampling") or {})
    sampling["seed"] = trial_seed(int(sampling.get("seed", 0)), trial)
    return {**spec, "sampling": sampling}


def role_args(
    role: str, spec: dict[str, Any], model: str, prompts: str, prefix: str = "", recorded: bool = False
) -> str:
    """`--role JSON --model M --prompts SET` of a role-using stage, as one param string (`prefix`:
    `--{prefix}role`, `--{prefix}model` and no --prompts, for a stage running two roles). `spec` is the role's
    config with every default filled in, `model` the local folder or the API model name. `recorded`: the same
    without the role's SPEED_ONLY_OPTIONS."""
    spec = dict(spec)
    spec.pop("model", None)
    if recorded:
        spec = without_speed_only(role, spec)
    args = [f"--{prefix}role", json_param(spec), f"--{prefix}model", model]
    if not prefix:
        args += ["--prompts", prompts]
    return " ".join(shlex.quote(a) for a in args)
