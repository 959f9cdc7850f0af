"""JSONL artifacts: validated reading, atomic writing, and a provenance sidecar per file.

Every artifact is written to a temporary file in the same folder and renamed into place, so a killed
stage never leaves a half-written output that Snakemake (or a human) could mistake for a result.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import __version__
from .errors import DISK_FULL_ERRNOS, DiskFullError, InputError
from .leftovers import remove_stale_builds

# The JSON type of the fields the stages require (checked where a reader requires them): a hand-made or
# converted file with a wrong type gets its file and line, not a TypeError deep in a stage.
FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    **dict.fromkeys(
        ("pair", "task_id", "persona_id", "split", "name", "text", "condition", "randomized_position"),
        ((str,), "a string"),
    ),
    "conv": ((int, type(None)), "an integer"),
    "target_turns": ((int,), "an integer"),
    "rank": ((int,), "an integer"),
    "logprob": ((int, float), "a number"),
    "turns": ((list,), "a list of turns"),
    "messages": ((list,), "a list of messages"),
    "judged": ((dict,), "an object"),
}


def _is_a(value: Any, types: tuple[type, ...]) -> bool:
    return isinstance(value, types) and not (isinstance(value, bool) and bool not in types)


def read_jsonl(
    path: str | Path, required: Iterable[str] = (), allow_empty: bool = False, nonempty: Iterable[str] = ()
) -> list[dict]:
    """Read a JSONL file; every line must be an object holding the `required` fields, `nonempty` ones non-blank."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    records = []
    required, nonempty = tuple(required), tuple(nonempty)
    data = path.read_bytes()
    verify_digest(path, data)
    for lineno, raw in enumerate(data.splitlines(keepends=True), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start} of the line)", lineno) from None
        if not line.strip():
            raise InputError(path, "blank line inside a JSONL file", lineno, "remove the blank line")
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(path, f"not valid JSON ({exc.msg})", lineno) from None
        if not isinstance(rec, dict):
            raise InputError(path, f"expected a JSON object, got {type(rec).__name__}", lineno)
        missing = [k for k in required if k not in rec]
        if missing:
            raise InputError(path, f"missing field(s) {', '.join(missing)}", lineno)
        for k in required:
            kind = FIELD_TYPES.get(k)
            if kind and not _is_a(rec[k], kind[0]):
                raise InputError(path, f"field '{k}' should be {kind[1]}, got {json.dumps(rec[k])[:40]}", lineno)
        for k in nonempty:
            if not isinstance(rec[k], str) or not rec[k].strip():
                raise InputError(path, f"field '{k}' is empty", lineno)
        records.append(rec)
    if not records and not allow_empty:
        raise InputError(path, "file is empty", fix="check the stage that produced it")
    return records


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """The one atomic file writer: a temporary file in the same folder, fsynced, renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(path, ".tmp")  # a killed writer's mkstemp file of this path
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts are ordinary files
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            raise DiskFullError(path, os.strerror(exc.errno).lower()) from None
        raise


def replace_dir(built: str | Path, output: str | Path) -> None:
    """Rename a finished build folder into place as `output`. An `output` already there (an empty folder
    Snakemake made, or a finished copy another writer put there, e.g. by hand) is moved aside first and then
    removed, so the rename cannot fail with "Directory not empty" and no reader ever sees a half folder."""
    built, output = Path(built), Path(output)
    remove_stale_builds(output, ".old")  # a killed replace's moved-aside copy
    old = None
    if output.is_symlink() or output.is_file():
        output.unlink()
    elif output.exists():
        old = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.", suffix=".old"))
        os.replace(output, old / output.name)
    os.replace(built, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_jsonl(path: str | Path, records: Iterable[dict], meta: dict[str, Any] | None = None) -> int:
    """Write records atomically; also write `<path>.meta.json` with provenance, counts and the sha256
    that `read_jsonl` checks, so a file changed or damaged after it was written is noticed where it is read."""
    path = Path(path)
    records = list(records)
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    atomic_write_bytes(path, body)
    write_meta(path, {"n_records": len(records), "sha256": hashlib.sha256(body).hexdigest(), **(meta or {})})
    return len(records)


def _writing_stage() -> str | None:
    """The `stargate <stage>` subcommand of this process, if it is one (recorded in the sidecar)."""
    argv = sys.argv
    if len(argv) > 1 and (Path(argv[0]).name == "stargate" or argv[0].endswith("__main__.py")):
        return argv[1]
    return None


def verify_digest(path: Path, data: bytes) -> None:
    """`data` (the bytes of `path`) must match the sha256 in its sidecar, when the sidecar records one."""
    meta = read_meta(path)
    want = meta.get("sha256")
    if want and hashlib.sha256(data).hexdigest() != want:
        stage = meta.get("stage")
        rule = stage.replace("-", "_") if stage else "the stage that wrote it"
        raise InputError(
            path,
            f"content does not match the sha256 recorded when {f'`stargate {stage}`' if stage else 'it'} wrote it "
            "(changed or damaged since)",
            fix=f"delete it and {meta_path(path).name}, then run the same snakemake command again: it reruns {rule}",
        )


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """`obj` as JSON, atomically (indent=None: one compact line)."""
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def meta_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".meta.json")


def write_meta(path: str | Path, meta: dict[str, Any]) -> None:
    full = {
        "artifact": Path(path).name,
        "stargate_version": __version__,
        "stage": _writing_stage(),
        "written_at": time.time(),
        **meta,
    }
    write_json(meta_path(path), full)


def read_meta(path: str | Path) -> dict[str, Any]:
    p = meta_path(path)
    return json.loads(p.read_text()) if p.exists() else {}
