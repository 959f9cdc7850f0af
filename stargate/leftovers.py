"""Remove what a killed job left beside its output, at the start of the job that rebuilds it.

Snakemake never runs two jobs for one output at once (its output locks), so anything a build of this
output leaves in a hidden sibling when the job starts is a killed run's: nothing will finish it and a
user could mistake it for a result.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .log import get_logger

log = get_logger(__name__)

# tempfile.mkdtemp and mkstemp names: prefix + 8 characters from this alphabet + suffix
_MKDTEMP_CHARS = r"[a-z0-9_]{8}"


def build_dir_pattern(output: Path, suffix: str) -> re.Pattern[str]:
    """The names `tempfile.mkdtemp` / `mkstemp(prefix=f".{output.name}.", suffix=suffix)` give, and no other
    output's."""
    return re.compile(rf"\.{re.escape(output.name)}\.{_MKDTEMP_CHARS}{re.escape(suffix)}")


def remove(path: Path, why: str) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    else:
        return
    log.warning("removed %s (%s)", path, why)


def remove_stale_builds(output: Path, suffix: str) -> None:
    """Remove the mkdtemp build folders (or mkstemp files) of `output` that a killed job left in its parent
    folder."""
    if not output.parent.is_dir():
        return
    pattern = build_dir_pattern(output, suffix)
    for sibling in output.parent.iterdir():
        if pattern.fullmatch(sibling.name):
            remove(sibling, "left by a killed build of this output")
