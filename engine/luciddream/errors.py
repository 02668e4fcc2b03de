"""The two exceptions a caller has to tell apart from bugs.

`DreamError` carries one sentence meant for the artist (what is wrong and what to do); front ends print it
without a traceback. `Cancelled` means the caller asked to stop; nothing was changed.
"""


class DreamError(ValueError):
    """A user error: bad input, unknown name, number out of range. The message is one plain sentence."""


class Cancelled(Exception):
    """The dream was cancelled before it finished; the input is untouched and no result exists."""

    def __init__(self, message: str = "Cancelled: the image was not changed.") -> None:
        super().__init__(message)
