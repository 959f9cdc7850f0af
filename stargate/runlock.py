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

import base64
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


def holds_head_lock() -> bool:
    """Whether this process is the head of this directory (claim_head_lock took the lock)."""
    return bool(_held)


def clear_finished_model_markers(workdir: str | Path = ".", prepared: str = "resources/models") -> list[str]:
    """Drop Snakemake's "incomplete" marker of a prepared model folder that is complete.

    `stargate prepare-model` renames a finished folder into place as its last step (with its
    `stargate_source.json`), so a folder that exists is whole. A head killed between that rename and the job's
    end leaves the folder marked incomplete; the next head (--rerun-incomplete) then forces prepare_model, and
    Snakemake 9 (dag.update_needrun) masks every job downstream of a forced job and later skips the ones that
    take its output only through `ancient()` and find it present: the run plans prepare_model alone, exits 0
    and leaves the workflow unfinished. Only the file persistence backend (Snakemake's default) is handled.
    Call this while holding the head lock. Returns the folders whose marker was removed."""
    state = Path(workdir) / ".snakemake" / "incomplete"
    root = Path(workdir) / prepared
    if not state.is_dir() or not root.is_dir():
        return []
    cleared = []
    for folder in sorted(root.iterdir()):
        if not (folder / "stargate_source.json").is_file():
            continue  # not a finished prepared model: Snakemake reruns it as it should
        key = f"{prepared}/{folder.name}"
        marker = _incomplete_marker(state, key)
        if marker.is_file():
            marker.unlink()
            cleared.append(key)
    return cleared


def _incomplete_marker(state: Path, key: str) -> Path:
    """Where Snakemake's FilePersistence keeps the incomplete marker of output `key` (persistence/file.py,
    _record_path): the url-safe base64 of the path, cut into NAME_MAX-1 pieces, all but the last '@'-prefixed."""
    b64 = base64.urlsafe_b64encode(key.encode()).decode()
    max_len = os.pathconf(state, "PC_NAME_MAX") or 255
    parts = [b64[i : i + max_len - 1] for i in range(0, len(b64), max_len - 1)]
    return state.joinpath(*["@" + p for p in parts[:-1]], parts[-1])


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
