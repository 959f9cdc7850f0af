"""Errors that a user can act on: they name the file, the field and the fix."""


class StargateError(Exception):
    """A problem with the user's input or configuration (not a bug). The CLI prints it and exits 2."""


class InputError(StargateError):
    def __init__(self, path, message: str, line: int | None = None, fix: str | None = None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        text = f"{where}: {message}"
        if fix:
            text += f" (fix: {fix})"
        super().__init__(text)
        self.path, self.line = str(path), line


# errno values meaning "this filesystem is full" (no space; the user's disk quota used up)
DISK_FULL_ERRNOS = frozenset({28, 122})  # ENOSPC, EDQUOT (Linux)


class DiskFullError(StargateError):
    """Writing `path` failed for lack of space: names the file, its filesystem's free space and the fix."""

    def __init__(self, path, reason: str = "no space left on device"):
        import shutil
        from pathlib import Path

        folder = Path(path).parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        try:
            free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free"
        except OSError:
            free = "free space unknown"
        super().__init__(
            f"disk full: could not write {path} ({reason}; {free} on the filesystem of {folder}). "
            "Nothing half-written was kept and finished outputs are kept. Fix: free space there (or put "
            "results/ on a larger disk, e.g. a symlink), then run the same command again"
        )
        self.path = str(path)
