"""What the docker's controls are called and what their tooltips say: named for what they do to the picture.

Why a table of its own: the engine's names (step_size, octaves, octave_scale, tile) say how the dream is computed,
not what an artist sees change, and the old labels misled ("Strength: steps × size" mixed two knobs, "Detail size"
read like a quality setting). The few artistic controls come first; the technical ones (ADVANCED) sit behind the
docker's Advanced fold. Range-check sentences still use kit.LABELS (shared with GIMP).
"""
from __future__ import annotations

from typing import Dict, Tuple

LABELS: Dict[str, str] = {
    "visible": "Dream on",
    "step_size": "Intensity",
    "octaves": "Pattern sizes",
    "look": "Class look",
    "instance": "Object size",
    "class_strength": "Change allowed",
    "feather": "Soft edge",
    "seed": "Variation",
    "steps": "Steps per size",
    "octave_scale": "Size step",
    "tile": "Memory tile",
    "model": "Network",
    "guide": "Guide",
    "variations": "Variations",
}

TIPS: Dict[str, str] = {
    "visible": "Dream the active layer, or everything visible (the result always goes to a new layer).",
    "step_size": "How hard each step pushes the picture toward what is dreamed: higher is bolder, brighter and "
                 "more saturated; lower keeps more of the picture.",
    "octaves": "How many sizes of pattern are dreamed, from fine detail up: more sizes grow larger shapes "
               "(and take longer).",
    "look": "Classes only: grow several instances out of the photo, or paint one picture of the class.",
    "instance": "Classes only: how big one dreamed object is, in image pixels.",
    "class_strength": "Grow look: how far the photo may change (0 = untouched, 1 = may be replaced).",
    "feather": "Fade the dream in over this many pixels inside the selection's edge.",
    "seed": "Same number, same dream: change it (or press Roll) for another variation of the same settings.",
    "steps": "Work done at each pattern size: more steps, a stronger and slower dream; auto: each look's own.",
    "octave_scale": "How much larger each pattern size is than the one before: larger values skip to big "
                    "shapes sooner.",
    "tile": "The largest piece the network looks at at once: smaller uses less memory, the picture is the same; "
            "auto: chosen from the free memory.",
    "model": "The network that dreams: each sees (and so paints) the world a little differently.",
    "guide": "Dream toward the shapes and textures of another layer of this image, or of a picture file.",
    "variations": "How many seeds \"Variations\" dreams, each into its own layer of a new group.",
}

# The technical controls, behind the Advanced fold.
ADVANCED: Tuple[str, ...] = ("steps", "octave_scale", "tile", "model")

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
