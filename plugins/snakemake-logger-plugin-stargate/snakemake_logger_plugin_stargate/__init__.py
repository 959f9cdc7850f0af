"""Snakemake's own terminal output, plus what a person watching a long run needs: how far the run is, what
runs now, and what each running job is doing.

`snakemake --logger stargate` (set in profiles/default/config.yaml, so `make run` shows it). Every record is
printed exactly as Snakemake's default handler prints it (its filter, formatter and colours); on top:
- after each finished job: `[stargate] 12/48 jobs done (25%) · 2 running: simulate[t=0,split=A,shard=0], score[...]
  · 3 min elapsed · ~5 min of job time left (...)`; the estimate sums, over the jobs not done, the mean wall time
  of their rule in benchmarks/ (earlier runs) or in this run (`>=` and the rules not timed yet, while some are not);
- every ~15 s, the newest progress line of each running job (its log file's `stargate.progress` lines:
  `generate: 64/192 prompts (33%), 2.1/s, ETA 1 min`, or `train: running for 45 s`), one whole line per job
  and only when it changed, so two jobs running at once never interleave.
Nothing extra in a dry-run or with `--quiet`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from logging import LogRecord
from pathlib import Path

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent

from stargate.progress import EVERY_S, duration
from stargate.progress import log as progress_log

# the jobs' progress lines: their logger's name, their interval and their duration format (stargate is always
# installed beside this plugin: scripts/setup.sh)
PROGRESS_MARK = f" {progress_log.name}: "
TAIL_EVERY_S = EVERY_S
PREFIX = "[stargate] "


def _last_progress_line(path: Path, max_bytes: int = 65536) -> str | None:
    """The newest `stargate.progress` line of a log file (its tail only: logs can be long)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    for line in reversed(tail.replace("\r", "\n").splitlines()):
        if PROGRESS_MARK in line:
            return line.split(PROGRESS_MARK, 1)[1].strip()
    return None


def benchmark_means(root: Path = Path("benchmarks")) -> dict[str, float]:
    """Mean wall time (s) per rule from earlier runs' benchmark files (benchmarks/<rule>/*.tsv)."""
    means = {}
    if not root.is_dir():
        return means
    for rule_dir in root.iterdir():
        secs = []
        for f in rule_dir.glob("*.tsv"):
            try:
                secs.append(float(f.read_text().splitlines()[1].split("\t")[0]))
            except (OSError, IndexError, ValueError):
                continue
        if secs:
            means[rule_dir.name] = sum(secs) / len(secs)
    return means


class LogHandler(LogHandlerBase):
    def __post_init__(self) -> None:
        from snakemake.logging import ColorizingTextHandler, DefaultFilter, DefaultFormatter

        s = self.common_settings
        self.inner = ColorizingTextHandler(nocolor=s.nocolor, stream=sys.stdout if s.stdout else sys.stderr)
        self.inner.addFilter(DefaultFilter(s.quiet, s.debug_dag, s.verbose, s.dryrun, s.printshellcmds))
        self.inner.setFormatter(DefaultFormatter(s.quiet, s.show_failed_logs))
        quiet = {str(q).lower() for q in (s.quiet or ())}
        self.extra = not s.dryrun and not ({"all", "progress", "quietness.all", "quietness.progress"} & quiet)
        self.t0 = time.monotonic()
        self.jobs: dict[int, dict] = {}  # running: jobid -> {rule, label, logs, started}
        self.planned: dict[str, int] = {}  # rule -> jobs in this run (RUN_INFO stats)
        self.finished: dict[str, list[float]] = {}  # rule -> wall times seen in this run
        self.shown: dict[int, str] = {}  # jobid -> the progress line last shown
        self.done = self.total = 0
        self.means: dict[str, float] | None = None
        self.stop = threading.Event()
        self.tailer: threading.Thread | None = None

    # -------------------------------------------------------------------- the LogHandlerBase contract
    @property
    def writes_to_stream(self) -> bool:
        return True

    @property
    def writes_to_file(self) -> bool:
        return False

    @property
    def has_filter(self) -> bool:
        return True  # every record reaches emit (to follow the jobs); Snakemake's filter decides what prints

    @property
    def has_formatter(self) -> bool:
        return True

    @property
    def needs_rulegraph(self) -> bool:
        return False

    def close(self) -> None:
        self.stop.set()
        super().close()

    # -------------------------------------------------------------------- events
    def emit(self, record: LogRecord) -> None:
        self.inner.handle(record)  # Snakemake's own output, unchanged
        if not self.extra:
            return
        try:
            self._follow(record)
        except Exception:  # a display helper must never stop a run
            self.extra = False

    def _follow(self, record: LogRecord) -> None:
        event = getattr(record, "event", None)
        if event == LogEvent.RUN_INFO and isinstance(getattr(record, "stats", None), dict):
            self.planned = {k: int(v) for k, v in record.stats.items() if k != "total" and str(v).isdigit()}
        elif event == LogEvent.JOB_INFO:
            wildcards = getattr(record, "wildcards", None) or {}
            label = record.rule_name + (
                "[" + ",".join(f"{k}={v}" for k, v in wildcards.items()) + "]" if wildcards else ""
            )
            logs = [Path(str(p).split(" ")[0]) for p in (getattr(record, "log", None) or [])]
            self.jobs[record.jobid] = {"rule": record.rule_name, "label": label, "logs": logs, "t0": time.monotonic()}
            self._start_tailer()
        elif event == LogEvent.JOB_FINISHED:
            job = self.jobs.pop(getattr(record, "job_id", None), None)
            if job is not None:
                self.finished.setdefault(job["rule"], []).append(time.monotonic() - job["t0"])
        elif event == LogEvent.PROGRESS:
            self.done, self.total = int(record.done), int(record.total)
            self._say(self._overall())

    def _overall(self) -> str:
        parts = [f"{self.done}/{self.total} jobs done ({100 * self.done // max(1, self.total)}%)"]
        if self.jobs:
            labels = [j["label"] for j in self.jobs.values()]
            parts.append(f"{len(labels)} running: " + ", ".join(labels[:4]) + (" ..." if len(labels) > 4 else ""))
        parts.append(f"{duration(time.monotonic() - self.t0)} elapsed")
        left, untimed = self._left()
        if left is not None and self.done < self.total:
            if untimed:  # a partial sum: say so, and what it lacks
                parts.append(f">= {duration(left)} of job time left (not timed yet: {', '.join(untimed)})")
            else:
                parts.append(f"~{duration(left)} of job time left (from earlier timings of the same rules)")
        return " · ".join(parts)

    def _left(self) -> tuple[float | None, list[str]]:
        """Seconds of job time the jobs not done yet took before (per rule, the mean of earlier runs'
        benchmarks, else of this run's finished jobs), and the rules still to run that have no timing yet
        (the sum leaves them out, so it is a lower bound then). None when no rule still to run is timed."""
        if not self.planned:
            return None, []
        if self.means is None:
            self.means = benchmark_means()  # read once, at the start: earlier runs only
        total, timed, untimed = 0.0, False, []
        for rule, n in self.planned.items():
            seen = self.finished.get(rule, [])
            left = n - len(seen)
            if left <= 0:
                continue
            mean = self.means.get(rule, sum(seen) / len(seen) if seen else None)
            if mean is None:
                untimed.append(rule)
            else:
                total, timed = total + left * mean, True
        return (total if timed else None), untimed

    # -------------------------------------------------------------------- in-job progress
    def _start_tailer(self) -> None:
        if self.tailer is None:
            self.tailer = threading.Thread(target=self._tail, name="stargate-progress", daemon=True)
            self.tailer.start()

    def _tail(self) -> None:
        while not self.stop.wait(TAIL_EVERY_S):
            for jobid, job in list(self.jobs.items()):
                for log in job["logs"]:
                    line = _last_progress_line(log)
                    if line and self.shown.get(jobid) != line:
                        self.shown[jobid] = line
                        self._say(f"{job['label']} · {line}")
                        break

    def _say(self, text: str) -> None:
        stream = self.inner.stream
        self.inner.acquire()  # whole lines, never interleaved with Snakemake's own output
        try:
            stream.write(PREFIX + text + "\n")
            stream.flush()
        finally:
            self.inner.release()
