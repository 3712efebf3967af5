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
