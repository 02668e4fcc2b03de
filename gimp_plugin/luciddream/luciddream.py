#!/usr/bin/env python3
"""GIMP 3 plug-in: Filters › Artistic › Lucid Dream… dreams ImageNet classes or network layers into the selection.

GIMP's Python has no torch, so the dreaming happens in the luciddream engine: a worker process started with the
engine's own Python (engine.json "python"), or a `luciddream serve` (engine.json "url"). This file only does what
needs GIMP: the procedure and its dialog, reading the layer and the selection through GEGL, progress, and writing
the result back in one undo step. Every decision that needs no GIMP lives in dreamcore.py, which tests cover
without GIMP; protocol.py (the engine's client) is copied beside this file by install.py.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any, List, Optional

HERE = os.path.dirname(os.path.realpath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import GLib, GObject, Gegl, Gimp  # noqa: E402

import dreamcore as core  # noqa: E402

PROCEDURE = "plug-in-luciddream"
ENGINE_JSON = os.path.join(HERE, "engine.json")
RW = GObject.ParamFlags.READWRITE


class Failure(Exception):
    """Ends the run with a message for the user and the image untouched."""


class Cancelled(Exception):
    """The engine stopped the job on request: end quietly, the image untouched."""


# --------------------------------------------------------------------------------------------- procedure

def _choice(entries: dict) -> Gimp.Choice:
    choice = Gimp.Choice.new()
    for i, (nick, label) in enumerate(entries.items()):
        choice.add(nick, i, label, "")
    return choice


def _text(entry: Any) -> str:
    return entry[0] if isinstance(entry, tuple) else entry


def build_procedure(plugin: Gimp.PlugIn, name: str) -> Gimp.Procedure:
    """The PDB procedure: its menu place, the image types it accepts and its arguments (the dialog shows them)."""
    proc = Gimp.ImageProcedure.new(plugin, name, Gimp.PDBProcType.PLUGIN, run, None)
    proc.set_image_types("RGB*, GRAY*")
    proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
    proc.set_menu_label("Lucid _Dream…")
    proc.add_menu_path("<Image>/Filters/Artistic")
    proc.set_documentation(
        "Dream ImageNet classes or network layers into the selection",
        "Grows hallucinated detail out of the pixels inside the selection (the whole layer when nothing is "
        "selected), guided by targets such as 'goldfish, peacock=0.5' or a layer preset. Pixels outside the "
        "selection are never changed. The dreaming runs in the luciddream engine named in engine.json.",
        name)
    proc.set_attribution("luciddream", "luciddream", "2025")
    d = core.Options()
    r = core.RANGES
    proc.add_string_argument("targets", "_Targets", "ImageNet classes with optional weights, e.g. "
                             "'goldfish, peacock=0.5', or layers such as 'layer:block6'; empty: the preset or "
                             "the model's classic look", d.targets, RW)
    proc.add_choice_argument("preset", "_Layer preset", "A network layer to dream as well as the targets",
                             _choice({k: v[0] for k, v in core.PRESETS.items()}), d.preset, RW)
    proc.add_choice_argument("model", "_Model", "The network that dreams", _choice(core.MODELS), d.model, RW)
    proc.add_int_argument("octaves", "_Octaves", "Scales to dream at, from small to full size", *r["octaves"],
                          d.octaves, RW)
    proc.add_int_argument("steps", "_Steps", "Steps per octave", *r["steps"], d.steps, RW)
    proc.add_double_argument("strength", "St_rength", "Mean change per step, in 8-bit levels", *r["strength"],
                             d.strength, RW)
    proc.add_double_argument("detail-size", "_Detail size", "Growth between octaves: larger values dream larger "
                             "shapes", *r["detail_size"], d.detail_size, RW)
    proc.add_int_argument("tile", "T_ile size", "Largest window the network sees at once (memory vs. speed)",
                          *r["tile"], d.tile, RW)
    proc.add_int_argument("seed", "S_eed", "Same seed, same result on the same machine; -1 picks a new one",
                          *r["seed"], d.seed, RW)
    proc.add_choice_argument("device", "De_vice", "Where the engine computes", _choice(core.DEVICES), d.device,
                             RW)
    proc.add_choice_argument("output", "O_utput", "Where the dream goes", _choice(core.OUTPUTS), d.output, RW)
    return proc


ARGUMENTS = ["targets", "preset", "model", "octaves", "steps", "strength", "detail-size", "tile", "seed",
             "device", "output"]


class LucidDream(Gimp.PlugIn):
    def do_query_procedures(self) -> List[str]:
        return [PROCEDURE]

    def do_set_i18n(self, name: str) -> bool:
        return False

    def do_create_procedure(self, name: str) -> Gimp.Procedure:
        return build_procedure(self, name)


# --------------------------------------------------------------------------------------------- run

def run(procedure: Gimp.Procedure, run_mode: Gimp.RunMode, image: Gimp.Image, drawables: List[Gimp.Drawable],
        config: Gimp.ProcedureConfig, data: Any) -> Gimp.ValueArray:
    """GIMP has already loaded the last-used values into `config` for INTERACTIVE and WITH_LAST_VALS runs and
    saves them again after a successful run, so "Repeat" and scripts need nothing extra here."""
    try:
        if run_mode == Gimp.RunMode.INTERACTIVE and not show_dialog(procedure, config):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
        opts = core.options_from({name: config.get_property(name) for name in ARGUMENTS})
        return dream(procedure, image, drawables, opts)
    except (core.BadInput, Failure) as exc:
        return _error(procedure, str(exc))
    except Cancelled:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
    except Exception as exc:  # a bug: say so in one line, keep the traceback for the terminal
        traceback.print_exc()
        return _error(procedure, f"Lucid Dream failed unexpectedly ({type(exc).__name__}: {exc}); the image was "
                                 f"not changed.")


def _error(procedure: Gimp.Procedure, message: str) -> Gimp.ValueArray:
    error = GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0)
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, error)


def show_dialog(procedure: Gimp.Procedure, config: Gimp.ProcedureConfig) -> bool:
    """GIMP's own dialog for the procedure's arguments; GimpUi (GTK) is loaded only here, never for scripts."""
    from gi.repository import GimpUi
    GimpUi.init("luciddream")
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Lucid Dream")
    dialog.fill(ARGUMENTS)
    try:
        return bool(dialog.run())
    finally:
        dialog.destroy()


def check_drawable(image: Gimp.Image, drawables: List[Gimp.Drawable]) -> Gimp.Layer:
    """The one layer to dream on, or a Failure that says why not (instead of a crash or a half-written layer)."""
    if len(drawables) != 1:
        raise Failure("Select exactly one layer to dream on (several or none are selected).")
    drawable = drawables[0]
    name = drawable.get_name()
    if image.get_base_type() == Gimp.ImageBaseType.INDEXED:
        raise Failure(core.layer_problem("indexed", name))
    if not drawable.is_layer():
        raise Failure(core.layer_problem("channel", name))
    for kind in ("text", "vector", "link"):   # vector and link layers exist from GIMP 3.2 on
        test = getattr(drawable, f"is_{kind}_layer", None)
        if test is not None and test():
            raise Failure(core.layer_problem(kind, name))
    for kind in ("VectorLayer", "LinkLayer"):
        cls = getattr(Gimp, kind, None)
        if cls is not None and isinstance(drawable, cls):
            raise Failure(core.layer_problem(kind[:-5].lower(), name))
    if drawable.is_group():
        raise Failure(core.layer_problem("group", name))
    if drawable.get_lock_content():
        raise Failure(core.layer_problem("locked", name))
    return drawable


def selection_bounds(image: Gimp.Image) -> Optional[core.Rect]:
    """The selection's bounding box in image coordinates, or None when nothing is selected."""
    _, non_empty, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
    if not non_empty:
        return None
    return core.Rect(x1, y1, x2 - x1, y2 - y1)


def read(buffer: Gegl.Buffer, rect: core.Rect, babl: str) -> bytes:
    return bytes(buffer.get(Gegl.Rectangle.new(rect.x, rect.y, rect.width, rect.height), 1.0, babl,
                            Gegl.AbyssPolicy.NONE))


def dream(procedure: Gimp.Procedure, image: Gimp.Image, drawables: List[Gimp.Drawable],
          opts: core.Options) -> Gimp.ValueArray:
    """Check everything, read, let the engine dream, then write once: any failure before the write leaves the
    image exactly as it was, and GIMP's Cancel (it kills this process) does too, since the worker follows us."""
    layer = check_drawable(image, drawables)
    settings = core.engine_settings(opts)
    targets = core.targets_for(opts.preset, opts.targets)
    _, off_x, off_y = layer.get_offsets()
    plan = core.plan_region(layer.get_width(), layer.get_height(), off_x, off_y, selection_bounds(image),
                            core.CONTEXT, f'the layer "{layer.get_name()}"')
    sample = core.sample_for_precision(image.get_precision().value_nick)
    fmt = core.pixel_format(image.get_base_type() == Gimp.ImageBaseType.GRAY, layer.has_alpha(), sample)

    pixels = read(layer.get_buffer(), plan.region, fmt.babl)
    mask = None
    if plan.selected is not None:
        mask = core.engine_mask(read(image.get_selection().get_buffer(), plan.mask_rect, "Y u8"), plan)

    Gimp.progress_init("Lucid Dream: starting the engine…")
    result = core.check_result(run_engine(pixels, plan, fmt, mask, targets, settings), plan, fmt)
    Gimp.progress_set_text("Lucid Dream: writing the result")
    write(image, layer, plan, fmt, result, opts.output, core.layer_name(layer.get_name(), targets))
    Gimp.progress_update(1.0)
    Gimp.progress_end()
    Gimp.displays_flush()
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)


def open_engine() -> Any:
    """A protocol Client as engine.json (written by install.py) says: a `luciddream serve` or a spawned worker."""
    try:
        from protocol import Client  # copied beside this file by install.py
    except ImportError:
        raise Failure(f"protocol.py is missing from {HERE}: run install.py again.") from None
    try:
        with open(ENGINE_JSON, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise Failure(f"{ENGINE_JSON} is missing: run install.py --venv VENV to say where the engine is.") from None
    except (OSError, ValueError) as exc:
        raise Failure(f"{ENGINE_JSON} cannot be read ({exc}): run install.py again.") from None
    how, where, token = core.engine_config(data)
    if how == "connect":
        return Client.connect(where, token)
    return Client.spawn(where)


def run_engine(pixels: bytes, plan: core.Plan, fmt: core.PixelFormat, mask: Optional[bytes],
               targets: Optional[str], settings: dict) -> bytes:
    from protocol import JobCancelled, WorkerError
    try:
        client = open_engine()
    except WorkerError as exc:
        raise Failure(exc.message) from None
    try:
        region = plan.region
        job = client.dream(pixels, region.width, region.height, fmt.channels, fmt.sample, mask, targets, settings)
        Gimp.progress_set_text("Lucid Dream: dreaming")
        for event in job.events():
            Gimp.progress_update(max(0.0, min(1.0, event.fraction)))
            Gimp.progress_set_text(core.progress_text(event.message, event.octave, event.octaves))
        return job.result()
    except JobCancelled:
        raise Cancelled() from None
    except WorkerError as exc:
        raise Failure(exc.message) from None
    finally:
        client.close()


def write(image: Gimp.Image, layer: Gimp.Layer, plan: core.Plan, fmt: core.PixelFormat, result: bytes,
          output: str, new_name: str) -> None:
    """One undo step: the shadow buffer merged through the selection (GIMP blends soft edges), on this layer or on
    a copy inserted just above it."""
    image.undo_group_start()
    target = layer
    try:
        if output == "new-layer":
            target = layer.copy()
            target.set_name(new_name)
            image.insert_layer(target, layer.get_parent(), image.get_item_position(layer))
        r = plan.region
        shadow = target.get_shadow_buffer()
        shadow.set(Gegl.Rectangle.new(r.x, r.y, r.width, r.height), fmt.babl, result)
        shadow.flush()
        target.merge_shadow(True)
        target.update(r.x, r.y, r.width, r.height)
    except Exception:
        if target is not layer:
            image.remove_layer(target)
        raise
    finally:
        image.undo_group_end()


if __name__ == "__main__":
    Gimp.main(LucidDream.__gtype__, sys.argv)
