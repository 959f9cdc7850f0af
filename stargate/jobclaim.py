"""One live run per job: a job that finds an earlier run of itself still going waits for it and adopts
its result instead of running a second time.

A job can outlive the Snakemake head that started it: `kill -9` of the head, a dropped login session, a
cluster head that dies while its SLURM jobs keep running. The user starts the same command again, the new
head replans the job (its output is marked incomplete) and starts it again, while the orphan is still
writing the same output. Two writers of one output end badly: the second `train` met the orphan's renamed
model (`Directory not empty`), failed, and Snakemake then deleted the orphan's good model.

So every `stargate <stage>` run takes an exclusive kernel lock (flock) on a file named by the job's identity
(working directory, command line and the fingerprint of the stage's code) in `.snakemake/stargate-jobs/`,
held until the process exits, however it exits. A run that cannot take it at once waits (logging who holds
it); when the holder finished successfully while this run waited, this run adopts the result and exits 0
without touching the outputs, so one model, one W&B run, one set of paid calls. A holder that failed or was
killed leaves no success record: the waiting run then does the work itself (it removes what the killed one
left, as before). On a cluster the file lives on the shared working directory; Linux NFS clients implement
flock with NFS byte-range locks, so a still-running SLURM job on another node holds it too (Lustre needs the
`flock` mount option; on a filesystem without locking, runs are not coordinated, as before).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .log import get_logger

log = get_logger(__name__)

JOBS_DIR = Path(".snakemake") / "stargate-jobs"
POLL_S = 1.0
REPORT_EVERY_S = 60.0
UNCLAIMED = frozenset({"chat", "cost", "plan"})  # interactive / read-only commands: never one of a workflow's jobs


@dataclass
class Claim:
    key: str
    adopted: bool = False  # an earlier run of this job finished it while this one waited


def job_key(stage: str, argv: list[str], cwd: str | None = None) -> str:
    """The job's identity: where it runs, its whole command line and the code it runs (an edit of the stage's
    code between the two runs makes them different jobs: the old run's result is not adopted)."""
    from .fingerprint import code_fingerprint

    module = "stargate.stages." + stage.replace("-", "_")
    try:
        code = code_fingerprint(module)
    except ModuleNotFoundError:
        code = ""
    text = json.dumps([os.path.abspath(cwd or os.getcwd()), argv, code])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def claim_job(stage: str, argv: list[str], jobs_dir: Path | str = JOBS_DIR) -> Iterator[Claim]:
    """Hold the job's lock while the body runs; record success when the body returns normally.

    `claim.adopted` is True when an earlier run of the same job held the lock and finished successfully while
    this one waited: the caller then skips the work."""
    if stage in UNCLAIMED:
        yield Claim(key="")
        return
    jobs_dir = Path(jobs_dir)
    jobs_dir.mkdir(parents=True, exist_ok=True)
    key = job_key(stage, argv)
    lock_path, done_path = jobs_dir / f"{key}.lock", jobs_dir / f"{key}.done"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        waited_since = _acquire(fd, lock_path, stage)
        claim = Claim(key=key)
        done = _read(done_path) if waited_since is not None else {}
        if done.get("finished_at", 0) >= (waited_since or 0) > 0:
            log.warning(
                "adopting the result of the earlier run of this job (pid %s on %s, finished %s): not running it again",
                done.get("pid"),
                done.get("host"),
                time.strftime("%H:%M:%S", time.localtime(done["finished_at"])),
            )
            claim.adopted = True
            yield claim
            return
        done_path.unlink(missing_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time(), "stage": stage}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield claim
        # reached only when the body returned normally: the outputs are complete
        done_path.write_text(json.dumps({**me, "finished_at": time.time()}))
    finally:
        os.close(fd)  # releases the lock


def _acquire(fd: int, lock_path: Path, stage: str) -> float | None:
    """Take the lock; None when it was free, else the time this run started waiting for its holder."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        pass
    since = time.time()
    holder = _read(lock_path)
    log.warning(
        "an earlier run of this same `stargate %s` job is still running (pid %s on %s, started %s; its "
        "snakemake was probably killed): waiting for it to finish, then using its result instead of running the "
        "job twice",
        stage,
        holder.get("pid", "?"),
        holder.get("host", "?"),
        time.strftime("%H:%M:%S", time.localtime(holder["started_at"])) if "started_at" in holder else "?",
    )
    last_report = since
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            log.info("the earlier run ended after %.0f s of waiting", time.time() - since)
            return since
        except BlockingIOError:
            if time.time() - last_report >= REPORT_EVERY_S:
                last_report = time.time()
                log.info("still waiting for pid %s (%.0f s so far)", holder.get("pid", "?"), last_report - since)
            time.sleep(POLL_S)
