"""A full disk under results/ (a small tmpfs): a clean error naming the file and the fix, nothing
half-written left, everything already computed kept, and the same command finishes once space is freed."""

from __future__ import annotations

import errno
import subprocess

import pytest

from stargate import cli
from stargate.errors import DiskFullError
from stargate.records import read_jsonl, write_jsonl

from .test_crash_resume import TARGETS, checkout, outputs
from .workflow import snakemake


@pytest.fixture
def small_fs(tmp_path):
    """A 64 KiB tmpfs at tmp_path/fs (needs root; skipped where mounting is not permitted)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder) -> None:
    """Use up every free byte of folder's filesystem."""
    with open(folder / "filler", "wb", buffering=0) as fh:  # unbuffered: nothing left to flush at close
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_the_atomic_writer_on_a_full_disk_names_the_file_and_leaves_nothing(small_fs):
    done = small_fs / "done.jsonl"
    write_jsonl(done, [{"x": 1}])
    fill(small_fs)
    out = small_fs / "sub" / "new.jsonl"
    with pytest.raises(DiskFullError) as err:
        write_jsonl(out, [{"text": "y" * 10_000}])
    msg = str(err.value)
    assert msg.startswith(f"disk full: could not write {out} (no space left on device; 0.0 MiB free")
    assert "run the same command again" in msg
    assert not out.exists() and not list(small_fs.rglob("*.tmp"))  # the temporary file is removed
    assert read_jsonl(done) == [{"x": 1}]  # what was computed before is kept (sha256 still matches)


@pytest.mark.parametrize(
    "raised",
    [
        OSError(errno.ENOSPC, "No space left on device", "/r/models/m1/model.safetensors"),
        RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })"),  # safetensors
        RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0"),  # not a full disk
    ],
)
def test_the_cli_reports_a_library_writers_full_disk_in_one_line(monkeypatch, capsys, tmp_path, raised):
    """A full disk met by a library's writer (torch, safetensors) is one error line, not a traceback."""
    from stargate.stages import topk

    def run(args):
        raise raised

    monkeypatch.setattr(topk, "run", run)
    argv = ["topk", "--conversations", "c", "--logprobs", "l", "--k", "1", "--output", str(tmp_path / "o.jsonl")]
    if "enforce" in str(raised):  # any other error is a bug: its traceback is kept
        with pytest.raises(RuntimeError):
            cli.main(argv)
        return
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("stargate topk: error: disk full: could not write ")
    named = raised.filename if isinstance(raised, OSError) else str(tmp_path / "o.jsonl")
    assert f"could not write {named} (" in err


@pytest.mark.slow
def test_a_run_into_a_full_results_disk_fails_cleanly_then_resumes(tmp_path, small_fs):
    clean = checkout(tmp_path / "clean")
    assert snakemake(*TARGETS, "--cores", "1", "--configfile", "cfg.yaml", cwd=clean).returncode == 0

    work = checkout(tmp_path / "w")
    (work / "results").symlink_to(small_fs)  # results/ on a small disk
    first = "results/data/tasks/test.jsonl"
    assert snakemake(first, "--cores", "1", "--configfile", "cfg.yaml", cwd=work).returncode == 0
    before = (work / first).stat().st_mtime_ns
    fill(small_fs)
    r = snakemake(*TARGETS, "--cores", "1", "--configfile", "cfg.yaml", cwd=work)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "stargate personas: error: disk full: could not write results/data/personas/" in out, out[-3000:]
    assert "Traceback" not in out
    assert not list(small_fs.rglob("*.tmp")) and not list(small_fs.rglob("personas/*"))  # nothing half-written
    assert (work / first).stat().st_mtime_ns == before  # computed before the disk filled: kept

    (small_fs / "filler").unlink()  # space freed: the same command finishes, with the same bytes
    r = snakemake(*TARGETS, "--cores", "1", "--configfile", "cfg.yaml", cwd=work)
    assert r.returncode == 0, r.stderr[-3000:]
    assert outputs(work) == outputs(clean) and (work / first).stat().st_mtime_ns == before
