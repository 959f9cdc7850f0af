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
