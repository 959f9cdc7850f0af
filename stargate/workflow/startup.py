"""What the Snakefile does before it builds the DAG: load and check the config (every problem in one error of
config.check_config's shape), refuse settings that could only hang or fail late, and handle a crashed or live
earlier head. Called from rules/common.smk with Snakemake's `workflow` and `config` objects.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from ..config import check_config, check_data_files, check_model_paths, fill_defaults, read_yaml
from ..errors import StargateError
from ..evaluation.checks import evaluation_problems
from ..plan import check_fit, resources_of_workflow
from ..runlock import claim_head_lock, clear_finished_model_markers, holds_head_lock, live_head, live_head_message
from ..training.methods.registry import get_method
from ..training.spec import TrainingSpec


def config_files_text(workflow: Any) -> str:
    files = ", ".join(str(f) for f in workflow.overwrite_configfiles) or "config/config.yaml"
    # values given with --config override the file's
    if workflow.config_settings.config:
        files += " with --config " + " ".join(sorted(workflow.config_settings.config))
    return files


def config_problem(workflow: Any, exc: Exception) -> SystemExit:
    """A config error as a few lines and exit 1: no Python traceback of the Snakefile (stargate/errors.py)."""
    return SystemExit(f"stargate: error in the config ({config_files_text(workflow)}):\n{exc}")


def load_config(workflow: Any, config: dict[str, Any], resolve_data_file: Callable[[str, str], str]) -> None:
    """Fill every default from config/schema.yaml and check the whole config; after this, config[...] is
    complete. Exits with every problem listed, naming the files."""
    try:
        # Snakemake's loader keeps the last of two equal keys; ours refuses them, naming both lines
        for file in workflow.overwrite_configfiles:
            read_yaml(file)
        fill_defaults(config, "config")
        check_config(
            config,
            extra=[
                *get_method(config["training"]["method"]).check_config(config),
                *evaluation_problems(config, lambda path: repo_path(workflow.basedir, path)),
            ],
        )
        # combinations of training keys the schema cannot express (e.g. pure bf16 with ZeRO)
        TrainingSpec.from_dict(config["training"])
        check_data_files(config, resolve_data_file)
        check_model_paths(config)
    except StargateError as exc:
        raise config_problem(workflow, exc) from None


def guard_head(workflow: Any, config: dict[str, Any]) -> None:
    """The checks of the head process, dry-run included where they can fail."""
    if not workflow.is_main_process:
        return
    # A GPU job that cannot fit its card stops the workflow here when the profile declares the card's memory
    # (resource gpu_memory_gb, e.g. profiles/slurm); CPU runs declare none. `stargate plan` prints every figure.
    try:
        check_fit(config, resources_of_workflow(workflow.resource_settings))
    except StargateError as exc:
        raise SystemExit(f"stargate: {exc}") from None
    # `--cores 0` would wait forever for a free core ("Provided cores: 0"); a dry-run needs none.
    if not workflow.dryrun and getattr(workflow.resource_settings, "cores", None) == 0:
        raise SystemExit(
            "stargate: --cores 0 gives the jobs no core, so nothing would ever start; use --cores N (N >= 1)"
        )
    # A crashed head's stale Snakemake locks are removed when no other head runs here (stargate/runlock.py).
    # While another head is alive, Snakemake's own refusal would say "remove the lock with --unlock", the one
    # thing not to do: its message names the live run instead.
    head = live_head()
    if head is not None:
        import snakemake.exceptions

        text = live_head_message(head)

        def live_lock_exception(self, _text=text):
            snakemake.exceptions.WorkflowError.__init__(self, f"stargate: {_text}")

        snakemake.exceptions.LockException.__init__ = live_lock_exception
    for stale in claim_head_lock():
        print(f"stargate: removed a stale Snakemake lock left by a killed run: {stale}", file=sys.stderr)
    # A model folder finished just before a kill must not be re-prepared: Snakemake would then plan that job
    # alone and stop (clear_finished_model_markers says why). Only the head that holds the lock repairs.
    if holds_head_lock() and (workflow.workflow_settings.persistence_backend.name == "FILE"):
        for folder in clear_finished_model_markers():
            print(f"stargate: {folder} was finished when its job was killed; kept, not re-prepared", file=sys.stderr)


def repo_path(repo: str | os.PathLike, path: str) -> str:
    """Config paths are relative to the working directory, else to the repository."""
    return path if os.path.isabs(path) or os.path.exists(path) else os.path.join(str(repo), path)
