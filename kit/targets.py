"""The target text a user types, tidied the same way in both hosts.

Only the shape is checked here: the engine knows the class and layer names and refuses unknown ones with a
sentence, so checking them twice would only let two lists drift apart.
"""
from __future__ import annotations

import re
from typing import List

from .errors import UserError

_ITEM_SEPARATOR = re.compile(r"[,;\n]")


def split_targets(text: str) -> List[str]:
    """The items of `text` ("goldfish, peacock=0.5; layer:block6"), whitespace tidied, empty items dropped."""
    items = [t.strip() for t in _ITEM_SEPARATOR.split(text or "") if t.strip()]
    for item in items:
        if item.startswith("=") or item.endswith("="):
            raise UserError(f'Target "{item}": write a name and then a weight, e.g. goldfish=0.5.')
    return items
