"""The same command resumes after a crash: Snakemake's own lock files outlive a killed head process
(`kill -9`, a lost node, the OOM killer), and the next run stops with a LockException until `--unlock`.

Every `snakemake` head process of this workflow holds an exclusive kernel lock (flock) on
`.snakemake/stargate.head.lock` for its whole life; the kernel releases it when the process dies, however
it dies. A head that gets the lock knows no other head is running in this directory, so Snakemake lock
files found then are stale and are removed. A head that cannot get it leaves them alone: Snakemake's
lock then refuses a second run whose outputs overlap, exactly as before, so concurrent runs stay safe.
Jobs (`stargate ...` subprocesses, cluster jobs) never take this lock (the descriptor is not inherited,
and remote Snakemake processes do not call this).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

_held: list[int] = []  # the descriptor stays open (and the lock held) until the process exits


def claim_head_lock(workdir: str | Path = ".") -> list[str]:
    """Take the head lock (non-blocking); if taken, remove stale Snakemake locks. Returns what was removed."""
    if _held:
        return []
    state = Path(workdir) / ".snakemake"
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / "stargate.head.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)  # another head runs here: its Snakemake locks are live
        return []
    _held.append(fd)
    # who holds it, for a second start's message (live_head)
    me = {"pid": os.getpid(), "started_at": time.time(), "argv": sys.argv}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    removed = []
    locks = state / "locks"
    if locks.is_dir():
        for f in sorted(locks.glob("*.lock")):
            f.unlink(missing_ok=True)
            removed.append(str(f))
    return removed


def live_head(workdir: str | Path = ".") -> dict | None:
    """The head that holds the lock now ({pid, started_at, argv}; {} when it wrote nothing), or None."""
    path = Path(workdir) / ".snakemake" / "stargate.head.lock"
    if _held or not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # nobody holds it
    except OSError:
        try:
            return json.loads(path.read_text() or "{}")
        except ValueError:
            return {}
    finally:
        os.close(fd)


def live_head_message(head: dict) -> str:
    """What a second start is told instead of Snakemake's "remove the lock with --unlock"."""
    pid = head.get("pid", "?")
    when = time.strftime("%H:%M:%S", time.localtime(head["started_at"])) if "started_at" in head else "?"
    cmd = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(head.get("argv", [])))
    return (
        f"another snakemake run is live in this directory (pid {pid}, started {when}"
        + (f": {cmd}" if cmd else "")
        + f") and holds the outputs this run needs. Do not use --unlock: that run is alive and still writing. "
        f"Wait for it to end, or stop it (kill {pid}), then run the same command again."
    )


def clear_orphan_sidecars(results: str | Path = "results") -> list[str]:
    """Remove `X.meta.json` whose artifact X is gone (Snakemake deletes a failed job's outputs, not the
    sidecar beside them), so no record describes an artifact that does not exist."""
    removed = []
    root = Path(results)
    if root.is_dir():
        for meta in root.rglob("*.meta.json"):
            if not meta.with_name(meta.name[: -len(".meta.json")]).exists():
                meta.unlink(missing_ok=True)
                removed.append(str(meta))
    return removed
