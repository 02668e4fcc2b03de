#!/usr/bin/env python3
"""GIMP 3 plug-in: Filters › Artistic › Lucid Dream… dreams ImageNet classes or network layers into the selection.

GIMP's Python has no torch, so the dreaming happens in the luciddream engine: a worker process started with the
engine's own Python (engine.json "python"), or a `luciddream serve` (engine.json "url"). This file only does what
needs GIMP: the procedure and its dialog, reading the layer and the selection through GEGL, progress, and writing
the result back in one undo step. Every decision that needs no GIMP lives in dreamcore.py, which tests cover
without GIMP; install.py copies the kit (what the GIMP and Krita plug-ins decide alike) and the protocol package
(the engine's client) beside this file.

The presets, ranges and defaults the procedure's arguments show are the engine's offer: GIMP registers arguments
before any worker runs, so registration reads the copy install.py cached in engine.json, and each dream checks its
values again against the offer in the worker's hello.
"""
from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.realpath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import GLib, GObject, Gegl, Gimp  # noqa: E402

import dreamcore as core  # noqa: E402
import kit  # noqa: E402

PROCEDURE = "plug-in-luciddream"
ENGINE_JSON = os.path.join(HERE, "engine.json")
RW = GObject.ParamFlags.READWRITE


class Cancelled(Exception):
    """The engine stopped the job on request: end quietly, the image untouched."""


# --------------------------------------------------------------------------------------------- procedure

def _choice(entries: dict) -> Gimp.Choice:
    choice = Gimp.Choice.new()
    for i, (nick, label) in enumerate(entries.items()):
        choice.add(nick, i, label, "")
    return choice


def cached_offer() -> Optional[kit.Offer]:
    """The offer install.py cached in engine.json; None when it is missing (each run then says how to fix it)."""
    try:
        return kit.offer_from_config(kit.read_config(ENGINE_JSON), ENGINE_JSON)
    except kit.UserError:
        return None


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
    proc.add_string_argument("targets", "_Targets", "ImageNet classes with optional weights, e.g. "
                             "'goldfish, peacock=0.5', or layers such as 'layer:block6'; empty: the preset or "
                             "the model's classic look", "", RW)
    offer = cached_offer()
    if offer is None:   # no engine.json yet: only the targets; a run says to run install.py
        return proc
    d = core.default_options(offer)
    r = core.ranges(offer)
    proc.add_choice_argument("preset", "_Layer preset", "A network layer to dream as well as the targets",
                             _choice(core.preset_choices(offer)), d.preset, RW)
    proc.add_choice_argument("model", "_Model", "The network that dreams", _choice(core.model_choices(offer)),
                             d.model, RW)
    proc.add_int_argument("octaves", "_Octaves", "Scales to dream at, from small to full size", *r["octaves"],
                          d.octaves, RW)
    proc.add_int_argument("steps", "_Steps", "Steps per octave (0: each look's own)", *r["steps"], d.steps, RW)
    proc.add_double_argument("strength", "St_rength", "Mean change per step, in 8-bit levels",
                             *map(float, r["strength"]), float(d.strength), RW)
    proc.add_double_argument("detail-size", "_Detail size", "Growth between octaves: larger values dream larger "
                             "shapes", *map(float, r["detail_size"]), float(d.detail_size), RW)
    proc.add_choice_argument("look", "Class _look", "Class targets alone: grow instances out of the photo, or "
                             "one picture of the class", _choice(core.look_choices(offer)), d.look, RW)
    proc.add_int_argument("instance", "I_nstance size", "Class looks: size of one instance in image pixels",
                          *r["instance"], d.instance, RW)
    proc.add_double_argument("class-strength", "_Class strength", "Grow look: how far the photo may change "
                             "(0 = untouched, 1 = replaced)", *map(float, r["class_strength"]),
                             float(d.class_strength), RW)
    proc.add_int_argument("tile", "T_ile size", "Largest window the network sees at once (memory vs. speed)",
                          *r["tile"], d.tile, RW)
    proc.add_int_argument("seed", "S_eed", "Same seed, same result on the same machine; -1 picks a new one",
                          *r["seed"], d.seed, RW)
    proc.add_choice_argument("device", "De_vice", "Where the engine computes", _choice(core.DEVICES), d.device,
                             RW)
    proc.add_choice_argument("output", "O_utput", "Where the dream goes", _choice(core.OUTPUTS), d.output, RW)
    return proc


ARGUMENTS = ["targets", "preset", "model", "octaves", "steps", "strength", "detail-size", "look", "instance",
             "class-strength", "tile", "seed", "device", "output"]


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
        engine = kit.read_config(ENGINE_JSON)
        offer = kit.offer_from_config(engine, ENGINE_JSON)
        registered = {spec.name for spec in config.list_properties()}
        present = [name for name in ARGUMENTS if name in registered]   # all of them once engine.json was there
        if run_mode == Gimp.RunMode.INTERACTIVE and not show_dialog(procedure, config, present):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
        opts = core.options_from({name: config.get_property(name) for name in present}, offer)
        return dream(procedure, image, drawables, opts, engine, offer)
    except kit.UserError as exc:
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


def show_dialog(procedure: Gimp.Procedure, config: Gimp.ProcedureConfig, arguments: List[str]) -> bool:
    """GIMP's own dialog for the procedure's arguments; GimpUi (GTK) is loaded only here, never for scripts."""
    from gi.repository import GimpUi
    GimpUi.init("luciddream")
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Lucid Dream")
    dialog.fill(arguments)
    try:
        return bool(dialog.run())
    finally:
        dialog.destroy()


def check_drawable(image: Gimp.Image, drawables: List[Gimp.Drawable]) -> Gimp.Layer:
    """The one layer to dream on, or a UserError that says why not (instead of a crash or a half-written layer)."""
    if len(drawables) != 1:
        raise kit.UserError("Select exactly one layer to dream on (several or none are selected).")
    drawable = drawables[0]
    name = drawable.get_name()
    if image.get_base_type() == Gimp.ImageBaseType.INDEXED:
        raise kit.UserError(core.layer_problem("indexed", name))
    if not drawable.is_layer():
        raise kit.UserError(core.layer_problem("channel", name))
    for kind in ("text", "vector", "link"):   # vector and link layers exist from GIMP 3.2 on
        test = getattr(drawable, f"is_{kind}_layer", None)
        if test is not None and test():
            raise kit.UserError(core.layer_problem(kind, name))
    for kind in ("VectorLayer", "LinkLayer"):
        cls = getattr(Gimp, kind, None)
        if cls is not None and isinstance(drawable, cls):
            raise kit.UserError(core.layer_problem(kind[:-5].lower(), name))
    if drawable.is_group():
        raise kit.UserError(core.layer_problem("group", name))
    if drawable.get_lock_content():
        raise kit.UserError(core.layer_problem("locked", name))
    return drawable


def selection_bounds(image: Gimp.Image) -> Optional[kit.Rect]:
    """The selection's bounding box in image coordinates, or None when nothing is selected."""
    _, non_empty, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
    if not non_empty:
        return None
    return kit.Rect(x1, y1, x2 - x1, y2 - y1)


def read(buffer: Gegl.Buffer, rect: kit.Rect, babl: str) -> bytes:
    return bytes(buffer.get(Gegl.Rectangle.new(rect.x, rect.y, rect.width, rect.height), 1.0, babl,
                            Gegl.AbyssPolicy.NONE))


def prepare(image: Gimp.Image, layer: Gimp.Layer, opts: core.Options,
            offer: kit.Offer) -> Tuple[Dict[str, Any], Optional[str], kit.Plan]:
    """The settings, targets and region of this dream as `offer` allows them (one sentence if it does not)."""
    settings = core.engine_settings(opts, offer)
    targets = core.targets_for(opts.preset, opts.targets, offer)
    _, off_x, off_y = layer.get_offsets()
    plan = kit.plan_region(layer.get_width(), layer.get_height(), off_x, off_y, selection_bounds(image),
                           offer.context, f'the layer "{layer.get_name()}"')
    return settings, targets, plan


def dream(procedure: Gimp.Procedure, image: Gimp.Image, drawables: List[Gimp.Drawable], opts: core.Options,
          engine: kit.EngineConfig, offer: kit.Offer) -> Gimp.ValueArray:
    """Check everything, read, let the engine dream, then write once: any failure before the write leaves the
    image exactly as it was, and GIMP's Cancel (it kills this process) does too, since the worker follows us.

    The values are checked against the cached offer before the engine starts (a typo fails at once), then again
    against the live one from the worker's hello, which is what the engine that dreams accepts."""
    layer = check_drawable(image, drawables)
    _, _, plan = prepare(image, layer, opts, offer)
    sample = core.sample_for_precision(image.get_precision().value_nick)
    fmt = core.pixel_format(image.get_base_type() == Gimp.ImageBaseType.GRAY, layer.has_alpha(), sample)
    pixels, mask = read_region(image, layer, plan, fmt)

    Gimp.progress_init("Lucid Dream: starting the engine…")
    protocol = import_protocol()
    try:
        client = open_engine(protocol, engine)
    except protocol.WorkerError as exc:
        raise kit.UserError(exc.message) from None
    try:
        live = kit.offer_from_hello(client.hello(), offer)
        settings, targets, live_plan = prepare(image, layer, opts, live)
        if live_plan != plan:   # the engine's context margin changed since install.py cached its offer
            plan = live_plan
            pixels, mask = read_region(image, layer, plan, fmt)
        result = core.check_result(run_job(protocol, client, pixels, plan, fmt, mask, targets, settings), plan,
                                   fmt)
    except protocol.WorkerError as exc:
        raise kit.UserError(exc.message) from None
    finally:
        client.close()
    Gimp.progress_set_text("Lucid Dream: writing the result")
    write(image, layer, plan, fmt, result, opts.output, core.layer_name(layer.get_name(), targets))
    Gimp.progress_update(1.0)
    Gimp.progress_end()
    Gimp.displays_flush()
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)


def read_region(image: Gimp.Image, layer: Gimp.Layer, plan: kit.Plan,
                fmt: core.PixelFormat) -> Tuple[bytes, Optional[bytes]]:
    """The layer's pixels in the plan's region and the engine's mask of the selection there (None: all)."""
    pixels = read(layer.get_buffer(), plan.region, fmt.babl)
    mask = None
    if plan.selected is not None:
        mask = core.engine_mask(read(image.get_selection().get_buffer(), plan.mask_rect, "Y u8"), plan)
    return pixels, mask


def import_protocol() -> Any:
    """The engine's client package, copied beside this file by install.py."""
    try:
        import protocol
    except ImportError:
        raise kit.UserError(f"The protocol package is missing from {HERE}: run install.py again.") from None
    return protocol


def open_engine(protocol: Any, engine: kit.EngineConfig) -> Any:
    """A protocol Client as engine.json (written by install.py) says: a `luciddream serve` or a spawned worker,
    started without GIMP's Python variables (kit.worker_env), as Krita starts it."""
    if engine.how == "connect":
        return protocol.Client.connect(engine.url, engine.token)
    return protocol.Client.spawn(engine.python, env=kit.worker_env())


def run_job(protocol: Any, client: Any, pixels: bytes, plan: kit.Plan, fmt: core.PixelFormat,
            mask: Optional[bytes], targets: Optional[str], settings: dict) -> bytes:
    try:
        region = plan.region
        job = client.dream(pixels, region.width, region.height, fmt.channels, fmt.sample, mask, targets, settings)
        Gimp.progress_set_text("Lucid Dream: dreaming")
        for event in job.events():
            Gimp.progress_update(max(0.0, min(1.0, event.fraction)))
            Gimp.progress_set_text(core.progress_text(event.message, event.octave, event.octaves))
        return job.result()
    except protocol.JobCancelled:
        raise Cancelled() from None


def write(image: Gimp.Image, layer: Gimp.Layer, plan: kit.Plan, fmt: core.PixelFormat, result: bytes,
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
