"""User-facing errors.

Every error a user can cause (a bad file, a wrong argument, a missing dataset) is an
:class:`LkSegError` whose message says what went wrong and what to do. Front ends show the
message and keep the traceback for the log.
"""


class LkSegError(Exception):
    """An error with a message meant for the user (no traceback needed)."""


class Cancelled(LkSegError):
    """The user cancelled the running operation."""

    def __init__(self, message: str = "cancelled by the user") -> None:
        super().__init__(message)


def os_error_message(exc: OSError) -> str:
    """One plain paragraph for an operating-system error (full disk, permissions, missing file)."""
    import errno

    where = exc.filename or "a file"
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device that holds {where}; free some space or choose another output folder"
    if exc.errno == errno.EDQUOT:
        return f"the disk quota is exceeded for {where}; free some space or choose another output folder"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied for {where}; choose a folder you can write to, or fix its permissions"
    if exc.errno == errno.EROFS:
        return f"{where} is on a read-only file system; choose another output folder"
    if exc.errno == errno.ENOENT:
        return f"{where} does not exist; check the path"
    if exc.errno == errno.EISDIR:
        return f"{where} is a folder where a file was expected; give a file name"
    return f"{where}: {exc.strerror or exc}"
