"""The one error type and the one cancel sentence both plug-ins show.

Why one type: every refusal a host shows is a single sentence the user can act on, wherever it was found (the
selection, engine.json, the layer, the engine's offer); the hosts catch this one class and show str() as it is.
"""
from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; str() is one sentence, ready for a status line or an error dialog."""


CANCELLED = "Cancelled: the image was not changed."
