"""Progress a person can see: the project's Snakemake logger (profiles/default sets it) prints how far the run
is and, for each running job, its newest in-job progress line; the stages write those lines into their logs."""

from __future__ import annotations

import logging
import re
import time

import pytest
from reliability.workflow import copy_data, snakemake, tiny_config, write_config

from stargate import progress
from stargate.progress import Progress


def test_a_counter_says_done_total_rate_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="stargate.progress")
    p = Progress("generate", 10, "prompts", every=0.0)
    p.advance(4)
    assert re.search(r"generate: 4/10 prompts \(40%\), [\d.]+/s, ETA \S+", caplog.text), caplog.text
    p.advance(6)
    assert "generate: 10/10 prompts (100%)" in caplog.text and "done in" in caplog.text


def test_a_long_call_still_says_it_is_alive(caplog):
    caplog.set_level(logging.INFO, logger="stargate.progress")
    stop = progress.heartbeat("simulate", every=0.3)
    time.sleep(1.5)
    stop.set()
    assert caplog.text.count("simulate: running for") >= 2, caplog.text


@pytest.mark.slow
def test_a_run_through_the_default_profile_shows_overall_and_in_job_progress(tmp_path, tiny_model_dir):
    copy_data(tmp_path)
    write_config(tmp_path / "cfg.yaml", tiny_config(tiny_model_dir, iterations=1))
    target = "results/m0/conversations/A.jsonl"
    r = snakemake(target, "--cores", "2", "--configfile", "cfg.yaml", cwd=tmp_path, timeout=900,
                  extra_env={"STARGATE_PROGRESS_EVERY_S": "1"})  # fmt: skip
    terminal = r.stdout + r.stderr
    assert r.returncode == 0, terminal[-3000:]
    overall = re.findall(r"^\[stargate\] (\d+)/(\d+) jobs done", terminal, re.M)
    assert overall and overall[-1][0] == overall[-1][1], terminal[-3000:]  # the last says every job is done
    assert re.search(r"^\[stargate\] simulate\[t=0,split=A,shard=0\] · ", terminal, re.M), terminal[
        -3000:
    ]  # a running job's line
    assert re.search(r"^\[stargate\] .*(running for|/s, (ETA|done))", terminal, re.M), terminal[-3000:]
    # and the stage wrote them into its log (where the README says the full logs are)
    assert "stargate.progress: " in (tmp_path / "logs" / "simulate" / "m0_A_shard0.log").read_text()


def test_the_logger_plugin_follows_the_jobs_and_estimates_only_when_every_rule_is_timed(tmp_path, monkeypatch):
    import io
    import logging as lg
    from types import SimpleNamespace

    from snakemake_interface_logger_plugins.common import LogEvent
    from snakemake_logger_plugin_stargate import LogHandler

    monkeypatch.chdir(tmp_path)  # no benchmarks/ of earlier runs here
    settings = SimpleNamespace(nocolor=True, stdout=True, quiet=None, debug_dag=False, verbose=False, dryrun=False,
                               printshellcmds=False, show_failed_logs=False)  # fmt: skip
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    h = LogHandler(settings, None)

    def record(**extra):
        r = lg.LogRecord("snakemake", lg.INFO, __file__, 1, "", None, None)
        r.__dict__.update(extra)
        return r

    h.emit(record(event=LogEvent.RUN_INFO, stats={"simulate": 1, "train": 1, "total": 2}))
    info = dict(rule_name="simulate", rule_msg=None, local=True, input=[], output=[], log=["logs/s.log"],
                benchmark=None, wildcards={"t": "0"}, reason="", resources={}, priority=0, threads=1, indent=False,
                is_checkpoint=False)  # fmt: skip
    h.emit(record(event=LogEvent.JOB_INFO, jobid=1, **info))
    h.emit(record(event=LogEvent.PROGRESS, done=0, total=2))
    h.emit(record(event=LogEvent.JOB_FINISHED, job_id=1))
    h.emit(record(event=LogEvent.PROGRESS, done=1, total=2))
    h.close()
    lines = [x for x in out.getvalue().splitlines() if x.startswith("[stargate]")]
    assert lines[0].startswith("[stargate] 0/2 jobs done (0%) · 1 running: simulate[t=0]"), lines
    assert "left" not in lines[1]  # the only rule still to run (train) has no timing: no estimate at all
    (tmp_path / "benchmarks" / "train").mkdir(parents=True)
    (tmp_path / "benchmarks" / "train" / "m1.tsv").write_text("s\th:m:s\n120.0\t0:02:00\n")
    h2 = LogHandler(settings, None)
    h2.emit(record(event=LogEvent.RUN_INFO, stats={"train": 1, "total": 1}))
    h2.emit(record(event=LogEvent.PROGRESS, done=0, total=1))
    h2.emit(record(event=LogEvent.RUN_INFO, stats={"train": 1, "judge": 2, "total": 3}))
    h2.emit(record(event=LogEvent.PROGRESS, done=0, total=3))
    h2.close()
    last = [x for x in out.getvalue().splitlines() if x.startswith("[stargate]")][-2:]
    assert "~2 min of job time left (from earlier timings" in last[0], out.getvalue()
    assert ">= 2 min of job time left (not timed yet: judge)" in last[1], out.getvalue()  # a lower bound, said so
