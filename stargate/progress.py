"""Progress lines from inside a long job: what is done of what, how fast, and what is left.

A job's stderr goes to its log file (logs/<rule>/...). Lines of the `stargate.progress` logger, at most one
every `EVERY_S` seconds per counter and one at the end, say `LABEL: DONE/TOTAL UNIT (P%), RATE/s, ETA T`;
the project's Snakemake logger plugin (snakemake_logger_plugin_stargate) shows the newest one of every
running job in the terminal. A heartbeat thread (`heartbeat`, started by the CLI for every stage) logs
`LABEL: running for T` when no counter has spoken for `EVERY_S` seconds, so a job that sits in one long call
(a model load, one big generate) still says it is alive.
"""

from __future__ import annotations

import os
import threading
import time

from .log import get_logger

# seconds between progress lines (STARGATE_PROGRESS_EVERY_S: a test runs short jobs with a short interval)
EVERY_S = float(os.environ.get("STARGATE_PROGRESS_EVERY_S", "15"))
log = get_logger("stargate.progress")
_last_line = [time.monotonic()]  # when any progress line was last written (the heartbeat's clock)


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _say(text: str) -> None:
    _last_line[0] = time.monotonic()
    log.info("%s", text)


class Progress:
    """Counts work done; logs a progress line at most every `every` seconds, and once when complete."""

    def __init__(self, label: str, total: int, unit: str = "items", every: float = EVERY_S):
        self.label, self.total, self.unit, self.every = label, max(0, int(total)), unit, every
        self.done = 0
        self.t0 = self.last = time.monotonic()

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        speed = f"{rate:.2f}" if rate < 10 else f"{rate:.0f}"
        text = f"{self.label}: {self.done}/{self.total} {self.unit}{pct}, {speed}/s"
        if self.done >= self.total:
            return f"{text}, done in {duration(elapsed)}"
        eta = (self.total - self.done) / rate if rate > 0 else None
        return f"{text}, ETA {duration(eta) if eta is not None else '?'}"

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.total and (self.done >= self.total or now - self.last >= self.every):
            self.last = now
            _say(self.line())


def heartbeat(label: str, every: float = EVERY_S) -> threading.Event:
    """Log `label: running for T` whenever no progress line was written for `every` seconds; returns the event
    that stops it. A daemon thread: it never keeps the process alive."""
    stop = threading.Event()
    t0 = time.monotonic()

    def beat() -> None:
        while not stop.wait(min(every, 1.0)):
            if time.monotonic() - _last_line[0] >= every:
                _say(f"{label}: running for {duration(time.monotonic() - t0)}")

    _last_line[0] = t0
    threading.Thread(target=beat, name="stargate-heartbeat", daemon=True).start()
    return stop
