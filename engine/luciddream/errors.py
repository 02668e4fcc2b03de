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


def is_out_of_memory(exc: BaseException) -> bool:
    """Did this exception come from running out of memory? NumPy raises MemoryError, CUDA torch.OutOfMemoryError,
    torch on the CPU a plain RuntimeError from its allocator ("DefaultCPUAllocator: can't allocate memory"), and
    oneDNN "could not create a primitive" when its scratch buffer cannot be had (seen under RLIMIT_AS)."""
    if isinstance(exc, MemoryError) or "OutOfMemory" in type(exc).__name__:
        return True
    text = str(exc) if isinstance(exc, RuntimeError) else ""
    return "can't allocate memory" in text or "out of memory" in text.lower() or "could not create a primitive" in text
