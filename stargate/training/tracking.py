"""Weights & Biases: offline unless the user is logged in; never writes a key anywhere.

Everything is set through environment variables before the Trainer's W&B callback starts, plus one
explicit `wandb.init` so the run gets our name, directory, tags and config. Logged in means
WANDB_API_KEY is set or ~/.netrc (or $NETRC) has an entry for the W&B host; the key itself is never
read into our code, logged or copied. A WANDB_MODE the user set (online, offline, disabled) wins.
"""

from __future__ import annotations

import importlib.util
import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..leftovers import remove
from ..log import get_logger

log = get_logger(__name__)

# written into a W&B run folder once the run is closed: a run folder without it was killed
FINISHED = "stargate-finished"


def default_dir(output: Path) -> Path:
    return output.with_name(output.name + ".wandb")


def clear_unfinished_runs(wandb_dir: Path) -> None:
    """Remove the local run folders of killed trainings of this model (W&B's `latest-run` and debug-log
    links to them go too). A killed online run stays on the server as crashed; finished runs are kept."""
    runs = wandb_dir / "wandb"
    if not runs.is_dir():
        return
    for item in sorted(runs.iterdir()):
        if item.is_dir() and not item.is_symlink() and "run-" in item.name and not (item / FINISHED).exists():
            remove(item, "W&B run of a killed training")
    for item in runs.iterdir():
        if item.is_symlink() and not item.exists():
            item.unlink()


def wandb_installed() -> bool:
    return importlib.util.find_spec("wandb") is not None


def logged_in(env: dict[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("WANDB_API_KEY"):
        return True
    host = urlparse(env.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = Path(env["NETRC"]) if env.get("NETRC") else Path.home() / ".netrc"
    try:
        return path.is_file() and netrc.netrc(str(path)).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return False


def run_name(config_run_name: str, iteration: int, method: str) -> str:
    return f"{config_run_name}-m{iteration}-{method}"


def setup_wandb(project: str | None, wandb_dir: Path, name: str, is_main: bool) -> str:
    """Prepare the environment for the Trainer's W&B callback. Returns the mode used: online, offline,
    disabled (wandb_project null, wandb missing, or WANDB_MODE=disabled)."""
    if project is None:
        log.info("W&B off (training.wandb_project is null)")
        return "disabled"
    if not wandb_installed():
        log.warning("W&B off: the wandb package is not installed")
        return "disabled"
    user_mode = os.environ.get("WANDB_MODE")
    if user_mode:
        mode = user_mode
    else:
        mode = "online" if logged_in() else "offline"
        os.environ["WANDB_MODE"] = mode
    if mode == "disabled":
        log.info("W&B off (WANDB_MODE=disabled)")
        return "disabled"
    wandb_dir.mkdir(parents=True, exist_ok=True)
    os.environ["WANDB_DIR"] = str(wandb_dir.resolve())
    os.environ["WANDB_PROJECT"] = project
    os.environ.setdefault("WANDB_LOG_MODEL", "false")  # never upload weights unless the user asks
    os.environ.setdefault("WANDB_WATCH", "false")
    if is_main:
        how = "user set WANDB_MODE" if user_mode else ("logged in" if mode == "online" else "not logged in")
        log.info("W&B %s (%s): project=%s run=%s dir=%s", mode, how, project, name, wandb_dir)
    return mode


def init_run(name: str, config: dict[str, Any], tags: list[str]) -> Any:
    """Start the run ourselves (main process only) so the Trainer's callback reuses it."""
    import wandb

    return wandb.init(
        project=os.environ["WANDB_PROJECT"],
        name=name,
        dir=os.environ["WANDB_DIR"],
        config=config,
        tags=tags,
        job_type="train",
    )


def finish_run(summary: dict[str, Any]) -> Path | None:
    """Write the final metrics into the run summary and close it. Returns the run's local folder."""
    import wandb

    run = wandb.run
    if run is None:
        return None
    for k, v in summary.items():
        if isinstance(v, int | float | str | bool):
            run.summary[k] = v
    folder = Path(run.dir).parent if getattr(run, "dir", None) else None
    run.finish()
    if folder is not None and folder.is_dir():
        (folder / FINISHED).write_text("")
    return folder
