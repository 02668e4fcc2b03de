"""What the plug-ins' controls are called and what their tooltips say: named for what they do to the picture.

Why in the kit: the engine's names (step_size, octaves, octave_scale, tile) say how the dream is computed, not what
an artist sees change, and GIMP and Krita must call one knob the same ("Intensity" in both, never "Strength" in one).
The few artistic controls come first; the technical ones (ADVANCED) sit behind each host's Advanced fold. Range
sentences use kit.LABELS; hosts add their own controls (GIMP's output and guide file, Krita's "dream on").
Krita's docker had these words first (krita_plugin/luciddream/controls.py).
"""
from __future__ import annotations

from typing import Dict, Tuple

LABELS: Dict[str, str] = {
    "targets": "What to dream",
    "preset": "Layer look",
    "step_size": "Intensity",
    "octaves": "Pattern sizes",
    "look": "Class look",
    "instance": "Object size",
    "class_strength": "Change allowed",
    "feather": "Soft edge",
    "seed": "Variation (seed)",
    "variations": "Variations",
    "guide": "Guide",
    "steps": "Steps per size",
    "octave_scale": "Size step",
    "tile": "Memory tile",
    "model": "Network",
    "device": "Device",
}

TIPS: Dict[str, str] = {
    "targets": "What grows in the selection: ImageNet classes with optional weights ('goldfish, peacock=0.5') or "
               "network layers ('layer:block6'); empty: the layer look, or the network's classic look.",
    "preset": "A network layer's look dreamed as well: early layers paint fine textures, later ones eyes, fur and "
              "object parts.",
    "step_size": "How hard each step pushes the picture toward what is dreamed: higher is bolder, brighter and "
                 "more saturated; lower keeps more of the picture.",
    "octaves": "How many sizes of pattern are dreamed, from fine detail up: more sizes grow larger shapes "
               "(and take longer).",
    "look": "Classes only: grow several instances out of the photo, or paint one picture of the class.",
    "instance": "Grow look: how big one dreamed object is, in image pixels; 0 (auto): from the selection's size, "
                "so a large selection gets several large objects.",
    "class_strength": "Grow look: how far the photo may change (0 = untouched, 1 = may be replaced).",
    "feather": "Fade the dream in over this many pixels inside the selection's edge.",
    "seed": "Same number, same dream: change it for another variation of the same settings (-1: a new one each "
            "time; the result layer remembers it).",
    "variations": "How many seeds one click dreams, one after another, each into its own layer named by its seed; "
                  "Cancel keeps the finished ones.",
    "guide": "Dream toward the shapes and textures of another layer, or of a picture file.",
    "steps": "Work done at each pattern size: more steps, a stronger and slower dream; 0 (auto): each look's own.",
    "octave_scale": "How much larger each pattern size is than the one before: larger values skip to big shapes "
                    "sooner.",
    "tile": "The largest piece the network looks at at once: smaller uses less memory, the picture is the same; "
            "0 (auto): chosen from the free memory.",
    "model": "The network that dreams: each sees (and so paints) the world a little differently.",
    "device": "Where the engine computes: a GPU is faster, the picture is alike.",
}

# The technical controls, behind the Advanced fold (hosts may add their own, such as GIMP's output).
ADVANCED: Tuple[str, ...] = ("steps", "octave_scale", "tile", "model", "device")


def with_mnemonic(label: str, letter: str) -> str:
    """`label` with GTK's underscore before the first `letter` (any case), for a keyboard shortcut in a dialog."""
    at = label.lower().find(letter.lower())
    return label if at < 0 else label[:at] + "_" + label[at:]
