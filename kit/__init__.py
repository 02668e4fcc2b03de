"""The adapter kit: what the GIMP and the Krita plug-in decide alike, in the standard library only.

Copied by install.py beside each plug-in (like the protocol package), so both hosts run the same rules: the region
to send, engine.json, the worker's environment, the engine's offer (presets, ranges, the context margin), one error
type and one cancel sentence. No host API here, and no protocol import: the plug-ins talk to the engine themselves.
"""
from __future__ import annotations

from .checkup import TINY_SETTINGS, TINY_TARGETS, failure_line, report_lines, tiny_image
from . import controls
from .config import DROP_ENV, EngineConfig, config_from, read_config, worker_env
from .errors import CANCELLED, UserError
from .offer import LABELS, LOOK_LABELS, Offer, Preset, check_value, offer_from_config, offer_from_hello
from .preview import (MAX_VARIATIONS, PREVIEW_SIDE, PreviewPlan, look_of, plan_preview,
                      preview_settings, scale_rect, variation_label, variation_seeds, variations, working_size)
from .record import RECORD_KEY, RECORD_VERSION, Record, again, layer_name, make_record, new_seed, parse_record
from .region import Plan, Rect, check_mask, plan_region, selected_fraction
from .samples import SAMPLE_BYTES, pixel_bytes
from .targets import split_targets

__all__ = [
    "CANCELLED", "DROP_ENV", "LABELS", "LOOK_LABELS", "SAMPLE_BYTES", "EngineConfig", "Offer", "Plan", "Preset", "Rect",
    "UserError", "check_mask", "check_value", "config_from", "offer_from_config", "offer_from_hello",
    "pixel_bytes", "plan_region", "read_config", "selected_fraction", "split_targets", "worker_env",
    # the artist's loop: records, previews, variations, the engine test, the controls' words
    "controls",
    "MAX_VARIATIONS", "PREVIEW_SIDE", "RECORD_KEY", "RECORD_VERSION", "TINY_SETTINGS", "TINY_TARGETS",
    "PreviewPlan", "Record", "again", "failure_line", "layer_name", "look_of", "make_record",
    "new_seed", "parse_record", "plan_preview", "preview_settings", "report_lines", "scale_rect", "tiny_image",
    "variation_label", "variation_seeds", "variations", "working_size",
]
