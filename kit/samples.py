"""Sample types as the protocol names them, and what one pixel of them costs on the wire."""
from __future__ import annotations

from typing import Dict

from .errors import UserError

SAMPLE_BYTES: Dict[str, int] = {"u8": 1, "u16": 2, "f32": 4}


def pixel_bytes(channels: int, sample: str) -> int:
    """Bytes of one pixel of `channels` channels of `sample` as the engine receives it."""
    if sample not in SAMPLE_BYTES:
        raise UserError(f'Unknown sample type "{sample}": the engine takes {", ".join(SAMPLE_BYTES)}.')
    return channels * SAMPLE_BYTES[sample]
