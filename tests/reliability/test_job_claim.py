"""One live run per job (stargate/jobclaim.py): a rerun of a job whose earlier run is still alive waits for it
and adopts its result when it succeeds; it does the work itself when the earlier run failed or was killed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from stargate.jobclaim import claim_job
from stargate.records import replace_dir

# an earlier run of the job: claims it, says so, works `secs`, then writes the output (or fails)
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from stargate.jobclaim import claim_job
    secs, fail = float(sys.argv[1]), sys.argv[2] == "fail"
    with claim_job("topk", ["topk", "--output", "out.jsonl"]):
        Path("started").write_text("1")
        time.sleep(secs)
        if fail:
            raise SystemExit(3)
        Path("out.jsonl").write_text("from the earlier run\\n")
    """
)


def start_holder(cwd: Path, secs: float, fail: bool = False) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(secs), "fail" if fail else "ok"],
        cwd=cwd,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    deadline = time.time() + 60
    while not (cwd / "started").exists():
        assert proc.poll() is None and time.time() < deadline, "the holder did not start"
        time.sleep(0.05)
    return proc


def rerun(cwd: Path, argv=("topk", "--output", "out.jsonl")) -> tuple[bool, float]:
    """The second run of the job, in this process: (adopted, seconds it waited)."""
    t0 = time.time()
    with claim_job("topk", list(argv), jobs_dir=cwd / ".snakemake" / "stargate-jobs") as claim:
        return claim.adopted, time.time() - t0


def test_a_rerun_waits_for_a_live_earlier_run_and_adopts_its_result(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    holder = start_holder(tmp_path, 2.0)
    adopted, waited = rerun(tmp_path)
    assert holder.wait() == 0
    assert adopted and waited > 1.0
    assert (tmp_path / "out.jsonl").read_text() == "from the earlier run\n"


def test_a_killed_or_failed_earlier_run_is_not_adopted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    holder = start_holder(tmp_path, 30.0)
    subprocess.run(["sleep", "0.5"])
    holder.send_signal(signal.SIGKILL)
    adopted, _ = rerun(tmp_path)
    assert not adopted
    (tmp_path / "started").unlink()
    holder = start_holder(tmp_path, 1.0, fail=True)
    adopted, waited = rerun(tmp_path)
    assert holder.wait() == 3 and not adopted and waited > 0.5


def test_an_old_success_or_another_job_is_not_adopted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    holder = start_holder(tmp_path, 0.0)
    assert holder.wait() == 0
    # the earlier run finished before this one started: Snakemake wants the job run again (say, after
    # deleting the output), so it runs
    adopted, waited = rerun(tmp_path)
    assert not adopted and waited < 1.0
    (tmp_path / "started").unlink()
    holder = start_holder(tmp_path, 3.0)
    adopted, waited = rerun(tmp_path, argv=("topk", "--output", "other.jsonl"))  # another job: no wait
    assert not adopted and waited < 1.0
    holder.wait()


def test_the_lock_file_names_the_live_holder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    holder = start_holder(tmp_path, 2.0)
    (lock,) = (tmp_path / ".snakemake" / "stargate-jobs").glob("*.lock")
    info = json.loads(lock.read_text())
    assert info["pid"] == holder.pid and info["stage"] == "topk"
    holder.wait()


def test_replace_dir_replaces_a_finished_folder_already_there(tmp_path):
    out, built = tmp_path / "m1", tmp_path / ".m1.partial"
    out.mkdir()
    (out / "model.safetensors").write_text("the other writer's")
    built.mkdir()
    (built / "model.safetensors").write_text("mine")
    replace_dir(built, out)
    assert (out / "model.safetensors").read_text() == "mine" and not built.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m1"]  # nothing moved aside is left
