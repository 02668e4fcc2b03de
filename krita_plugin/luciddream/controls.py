"""What the docker's controls are called and what their tooltips say: named for what they do to the picture.

Why these words: the engine's names (step_size, octaves, octave_scale, tile) say how the dream is computed,
not what an artist sees change, and the old labels misled ("Strength: steps × size" mixed two knobs, "Detail size"
read like a quality setting). The few artistic controls come first; the technical ones (ADVANCED) sit behind the
docker's Advanced fold. The words come from kit/controls.py, shared with GIMP; only Krita's own controls
(dream on, Roll, the variations group) are worded here.
"""
from __future__ import annotations

from typing import Dict, Tuple

from .kit import controls as _kit

# The words are the kit's, so GIMP and Krita name every knob alike; Krita adds its own controls' words.
LABELS: Dict[str, str] = {**_kit.LABELS, "visible": "Dream on", "seed": "Variation"}

TIPS: Dict[str, str] = {
    **_kit.TIPS,
    "visible": "Dream the active layer, or everything visible (the result always goes to a new layer).",
    "seed": "Same number, same dream: change it (or press Roll) for another variation of the same settings.",
    "variations": "How many seeds \"Variations\" dreams, each into its own layer of a new group; Cancel keeps the "
                  "finished ones.",
}

# The technical controls, behind the Advanced fold.
ADVANCED: Tuple[str, ...] = tuple(name for name in _kit.ADVANCED if name != "device")   # Krita has no device control

# Every button, as a Krita action (Settings › Configure Krita › Keyboard Shortcuts can bind each one):
# (action id, menu text, what it does, the session method the docker calls).
ACTIONS: Tuple[Tuple[str, str, str], ...] = (
    ("luciddream_dream_selection", "Lucid Dream: dream the selection",
     "Dream inside the selection with the Lucid Dream docker's settings, into a new layer"),
    ("luciddream_preview", "Lucid Dream: quick preview",
     "A small, quick dream of the selection, shown in the docker (the image is not changed)"),
    ("luciddream_variations", "Lucid Dream: variations",
     "Dream several seeds one after another into a new group layer"),
    ("luciddream_again", "Lucid Dream: again",
     "Dream the selected result layer's settings again (same seed, same dream)"),
    ("luciddream_again_new_seed", "Lucid Dream: again, new seed",
     "Dream the selected result layer's settings again with a new seed"),
    ("luciddream_cancel", "Lucid Dream: cancel", "Stop the running dream (finished variations are kept)"),
    ("luciddream_test_engine", "Lucid Dream: test engine",
     "Start the engine and report its version, device, models and the time of a tiny dream"),
)
