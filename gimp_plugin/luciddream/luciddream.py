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

import dataclasses
import os
import sys
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.realpath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio, GLib, GObject  # noqa: E402

import dreamcore as core  # noqa: E402
import kit  # noqa: E402

PROCEDURE = "plug-in-luciddream"
AGAIN = "plug-in-luciddream-again"
AGAIN_NEW = "plug-in-luciddream-again-new-seed"
TEST_ENGINE = "plug-in-luciddream-test-engine"
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
    """The PDB procedure: its menu place, the image types it accepts and its arguments (the dialog shows them).

    Labels say what a control does to the picture and the tooltips say how; the dialog shows the artistic ones
    first and the technical ones (dreamcore.ADVANCED) behind a fold."""
    proc = Gimp.ImageProcedure.new(plugin, name, Gimp.PDBProcType.PLUGIN, run, None)
    proc.set_image_types("RGB*, GRAY*")
    proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
    proc.set_menu_label("Lucid _Dream…")
    proc.add_menu_path("<Image>/Filters/Artistic")
    proc.set_documentation(
        "Dream ImageNet classes or network layers into the selection",
        "Grows hallucinated detail out of the pixels inside the selection (the whole layer when nothing is "
        "selected), guided by targets such as 'goldfish, peacock=0.5' or a layer preset. Pixels outside the "
        "selection are never changed. The dialog's Preview dreams a small copy first; every result layer keeps "
        "its settings (Lucid Dream Again remakes it). The dreaming runs in the luciddream engine named in "
        "engine.json.",
        name)
    proc.set_attribution("luciddream", "luciddream", "2025")
    proc.add_string_argument("targets", *control("targets"), "", RW)
    offer = cached_offer()
    if offer is None:   # no engine.json yet: only the targets; a run says to run install.py
        return proc
    d = core.default_options(offer)
    r = core.ranges(offer)
    proc.add_choice_argument("preset", *control("preset"), _choice(core.preset_choices(offer)), d.preset, RW)
    proc.add_double_argument("strength", *control("strength"), *map(float, r["strength"]), float(d.strength), RW)
    proc.add_int_argument("octaves", *control("octaves"), *r["octaves"], d.octaves, RW)
    proc.add_choice_argument("look", *control("look"), _choice(core.look_choices(offer)), d.look, RW)
    proc.add_int_argument("instance", *control("instance"), *r["instance"], d.instance, RW)
    proc.add_double_argument("class-strength", *control("class-strength"), *map(float, r["class_strength"]),
                             float(d.class_strength), RW)
    proc.add_int_argument("variations", *control("variations"), *r["variations"], 1, RW)
    proc.add_int_argument("seed", *control("seed"), *r["seed"], d.seed, RW)
    proc.add_layer_argument("guide-layer", *control("guide-layer"), True, RW)
    proc.add_file_argument("guide-file", *control("guide-file"), Gimp.FileChooserAction.OPEN, True, None, RW)
    proc.add_boolean_aux_argument("dream-after-preview", *control("dream-after-preview"), False, RW)
    proc.add_int_argument("steps", *control("steps"), *r["steps"], d.steps, RW)
    proc.add_double_argument("detail-size", *control("detail-size"), *map(float, r["detail_size"]),
                             float(d.detail_size), RW)
    proc.add_int_argument("tile", *control("tile"), *r["tile"], d.tile, RW)
    proc.add_choice_argument("model", *control("model"), _choice(core.model_choices(offer)), d.model, RW)
    proc.add_choice_argument("device", *control("device"), _choice(core.DEVICES), d.device, RW)
    proc.add_choice_argument("output", *control("output"), _choice(core.OUTPUTS), d.output, RW)
    return proc


# GIMP's argument → (the kit's control word, the letter GTK underlines: none clash with the dialog's buttons, OK,
# Cancel, Reset, Load/Save settings, Help, nor with Preview and Advanced).
CONTROLS = {"targets": ("targets", "w"), "preset": ("preset", "y"), "strength": ("step_size", "n"),
            "octaves": ("octaves", "t"), "look": ("look", "k"), "instance": ("instance", "b"),
            "class-strength": ("class_strength", "d"), "variations": ("variations", "v"), "seed": ("seed", ""),
            "steps": ("steps", "e"), "detail-size": ("octave_scale", "i"), "tile": ("tile", "m"),
            "model": ("model", ""), "device": ("device", "")}
GIMP_CONTROLS = {   # GIMP's own: (label, letter, tooltip)
    "guide-layer": ("Guide layer", "g", "Dream toward the shapes and textures of this layer (of any open image "
                                        "with this image's colour model); none: no guide."),
    "guide-file": ("Guide file", "f", "Dream toward the shapes and textures of this picture file (used when no "
                                      "guide layer is chosen)."),
    "dream-after-preview": ("Dream at full size after the preview", "z", "On: once a preview is shown, the full "
                            "dream starts by itself, as if OK were pressed."),
    "output": ("Output", "u", "A new layer above (the photo stays below) or this layer in one undo step; "
                              "variations always get new layers."),
}


def control(name: str) -> Tuple[str, str]:
    """(nick, blurb) of a GIMP argument: the kit's words, so GIMP and Krita call each knob the same."""
    if name in GIMP_CONTROLS:
        label, letter, tip = GIMP_CONTROLS[name]
    else:
        setting, letter = CONTROLS[name]
        label, tip = kit.controls.LABELS[setting], kit.controls.TIPS[setting]
    return kit.controls.with_mnemonic(label, letter) if letter else label, tip


def build_again(plugin: Gimp.PlugIn, name: str) -> Gimp.Procedure:
    """Lucid Dream Again (same seed: the same pixels) and Again, New Seed: the selected result layer's record."""
    new_seed = name == AGAIN_NEW
    proc = Gimp.ImageProcedure.new(plugin, name, Gimp.PDBProcType.PLUGIN, run_again, new_seed)
    proc.set_image_types("RGB*, GRAY*")
    proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
    proc.set_menu_label("Lucid Dream Again, _New Seed" if new_seed else "Lucid Dream _Again")
    proc.add_menu_path("<Image>/Filters/Artistic")
    proc.set_documentation(
        "Dream the selected result layer's settings again" + (" with a new seed" if new_seed else ""),
        "Select a layer Lucid Dream made: its settings (kept on the layer, also in a saved .xcf) dream the layer "
        "it came from again, through the current selection, into a new layer" + (
            ", with another seed." if new_seed else ", with the same seed, so the same pixels on this machine."),
        name)
    proc.set_attribution("luciddream", "luciddream", "2025")
    return proc


def build_test_engine(plugin: Gimp.PlugIn, name: str) -> Gimp.Procedure:
    """Lucid Dream: Test Engine, which starts the worker and says what it runs on."""
    proc = Gimp.ImageProcedure.new(plugin, name, Gimp.PDBProcType.PLUGIN, run_test_engine, None)
    proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
    proc.set_menu_label("Lucid Dream: _Test Engine")
    proc.add_menu_path("<Image>/Filters/Artistic")
    proc.set_documentation("Start the Lucid Dream engine and show its version, device, models and speed",
                           "Starts the engine named in engine.json, dreams a tiny picture and reports the engine's "
                           "version, the device it computes on, the installed models and the seconds the dream "
                           "took; a failure is one sentence that says how to fix it.", name)
    proc.set_attribution("luciddream", "luciddream", "2025")
    proc.add_string_return_value("report", "Report", "What the test found, one fact per line", "", RW)
    return proc


ARGUMENTS = ["targets", *core.ARTISTIC[1:], *core.ADVANCED]
GUIDES = ("guide-layer", "guide-file")
OPTIONS = [name for name in ARGUMENTS if name not in GUIDES]


class LucidDream(Gimp.PlugIn):
    def do_query_procedures(self) -> List[str]:
        return [PROCEDURE, AGAIN, AGAIN_NEW, TEST_ENGINE]

    def do_set_i18n(self, name: str) -> bool:
        return False

    def do_create_procedure(self, name: str) -> Gimp.Procedure:
        if name in (AGAIN, AGAIN_NEW):
            return build_again(self, name)
        if name == TEST_ENGINE:
            return build_test_engine(self, name)
        return build_procedure(self, name)


# --------------------------------------------------------------------------------------------- run

def run(procedure: Gimp.Procedure, run_mode: Gimp.RunMode, image: Gimp.Image, drawables: List[Gimp.Drawable],
        config: Gimp.ProcedureConfig, data: Any) -> Gimp.ValueArray:
    """GIMP has already loaded the last-used values into `config` for INTERACTIVE and WITH_LAST_VALS runs and
    saves them again after a successful run, so "Repeat" and scripts need nothing extra here."""
    session = Session()
    try:
        engine = kit.read_config(ENGINE_JSON)
        offer = kit.offer_from_config(engine, ENGINE_JSON)
        registered = {spec.name for spec in config.list_properties()}
        present = [name for name in ARGUMENTS if name in registered]   # all of them once engine.json was there
        if run_mode == Gimp.RunMode.INTERACTIVE:
            from dialog import show_dialog   # GTK only for the dialog, never for scripts
            if not show_dialog(sys.modules[__name__], procedure, config, present, image, drawables, engine, offer,
                               session):
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
        opts = options_of(config, present, offer)
        layer = check_drawable(image, drawables)
        guide = guide_from(config, image, registered)
        return dream(procedure, image, layer, opts, engine, offer, guide, session)
    except kit.UserError as exc:
        return _error(procedure, str(exc))
    except Cancelled:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
    except Exception as exc:  # a bug: say so in one line, keep the traceback for the terminal
        traceback.print_exc()
        return _error(procedure, f"Lucid Dream failed unexpectedly ({type(exc).__name__}: {exc}); the image was "
                                 f"not changed.")
    finally:
        session.close()


def options_of(config: Gimp.ProcedureConfig, present: List[str], offer: kit.Offer) -> core.Options:
    return core.options_from({name: config.get_property(name) for name in present if name not in GUIDES}, offer)


def _error(procedure: Gimp.Procedure, message: str) -> Gimp.ValueArray:
    error = GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0)
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, error)


def log(message: str) -> None:
    """One line on GIMP's terminal (what a user starting GIMP from a shell sees; the benchmark reads it)."""
    print(f"luciddream: {message}", file=sys.stderr, flush=True)


class Session:
    """The engine for one run of the plug-in: spawned once (the dialog's previews warm it for the full dream),
    forgotten when it fails (a killed worker), so the next request starts a new one."""

    def __init__(self) -> None:
        self.client: Any = None
        self.info: Dict[str, Any] = {}
        self.protocol: Any = None
        self.seed: Optional[int] = None   # a random seed drawn for the dialog's previews, which OK then dreams

    def open(self, engine: kit.EngineConfig) -> Any:
        if self.client is None:
            self.protocol = import_protocol()
            try:
                client = open_engine(self.protocol, engine)
                self.info = client.hello()
            except self.protocol.WorkerError as exc:
                raise kit.UserError(exc.message) from None
            self.client = client
        return self.client

    def drop(self) -> None:
        """Forget a client that failed (its worker is gone or confused); the next open() spawns a new one."""
        client, self.client = self.client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

    def close(self) -> None:
        self.drop()


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


def read(buffer: Gegl.Buffer, rect: kit.Rect, babl: str, scale: float = 1.0) -> bytes:
    """Pixels of `rect` (in the buffer's coordinates times `scale`: GEGL scales while it reads)."""
    return bytes(buffer.get(Gegl.Rectangle.new(rect.x, rect.y, rect.width, rect.height), scale, babl,
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


def layer_format(image: Gimp.Image, layer: Gimp.Layer, sample: Optional[str] = None) -> core.PixelFormat:
    sample = sample or core.sample_for_precision(image.get_precision().value_nick)
    return core.pixel_format(image.get_base_type() == Gimp.ImageBaseType.GRAY, layer.has_alpha(), sample)


# --------------------------------------------------------------------------------------------- guides

class Guide:
    """A guide picture read for the engine: its pixels and layout, what the record says, and how to find it again."""

    def __init__(self, pixels: bytes, width: int, height: int, fmt: core.PixelFormat, description: str,
                 where: Dict[str, Any]) -> None:
        self.wire = (pixels, width, height, fmt.channels, fmt.sample)
        self.description = description
        self.where = where


def guide_from(config: Gimp.ProcedureConfig, image: Gimp.Image, registered: set) -> Optional[Guide]:
    """The guide the arguments name: a layer of any open image first, else a picture file; None for neither."""
    layer = config.get_property("guide-layer") if "guide-layer" in registered else None
    if layer is not None:
        return guide_of_layer(image, layer)
    gfile = config.get_property("guide-file") if "guide-file" in registered else None
    if gfile is not None and gfile.get_path():
        return guide_of_file(image, gfile.get_path())
    return None


def guide_of_layer(image: Gimp.Image, layer: Gimp.Layer) -> Guide:
    """A layer's pixels as the guide; its image must have this image's colour model (gray or RGB)."""
    owner = layer.get_image()
    name = layer.get_name()
    if owner.get_base_type() == Gimp.ImageBaseType.INDEXED:
        raise kit.UserError(f'The guide "{name}" belongs to an indexed image: convert it with Image › Mode › RGB '
                            f'first.')
    core.check_guide_mode(owner.get_base_type() == Gimp.ImageBaseType.GRAY,
                          image.get_base_type() == Gimp.ImageBaseType.GRAY, name)
    fmt = core.pixel_format(owner.get_base_type() == Gimp.ImageBaseType.GRAY, False, "u8")
    width, height = layer.get_width(), layer.get_height()
    pixels = read(layer.get_buffer(), kit.Rect(0, 0, width, height), fmt.babl)
    return Guide(pixels, width, height, fmt, f'layer "{name}"', {"guide_layer": layer.get_tattoo()})


def guide_of_file(image: Gimp.Image, path: str) -> Guide:
    """A picture file as the guide (loaded as GIMP would open it, then closed again without a trace)."""
    if not os.path.isfile(path):
        raise kit.UserError(f'The guide file "{path}" does not exist: choose another picture.')
    try:
        loaded = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
    except Exception as exc:
        raise kit.UserError(f'GIMP cannot open the guide file "{path}" ({exc}): choose a PNG or JPEG.') from None
    if loaded is None:
        raise kit.UserError(f'GIMP cannot open the guide file "{path}": choose a PNG or JPEG.')
    try:
        layers = loaded.get_layers()
        if not layers:
            raise kit.UserError(f'The guide file "{path}" holds no picture: choose another one.')
        core.check_guide_mode(loaded.get_base_type() == Gimp.ImageBaseType.GRAY,
                              image.get_base_type() == Gimp.ImageBaseType.GRAY, os.path.basename(path))
        guide = guide_of_layer(image, layers[0])
        return Guide(guide.wire[0], guide.wire[1], guide.wire[2],
                     core.pixel_format(loaded.get_base_type() == Gimp.ImageBaseType.GRAY, False, "u8"),
                     f'file "{os.path.basename(path)}"', {"guide_file": path})
    finally:
        loaded.delete()


def guide_of_record(image: Gimp.Image, record: kit.Record) -> Optional[Guide]:
    """The guide a result was dreamed with, found again (the layer by its tattoo, the file by its path)."""
    where = record.extra.get("gimp") or {}
    if where.get("guide_layer"):
        layer = image.get_layer_by_tattoo(int(where["guide_layer"]))
        if layer is None:
            raise kit.UserError(f"The guide {record.guide} of this result is no longer in the image: dream it "
                                f"anew with another guide.")
        return guide_of_layer(image, layer)
    if where.get("guide_file"):
        return guide_of_file(image, str(where["guide_file"]))
    return None


# --------------------------------------------------------------------------------------------- dreaming

def dream(procedure: Gimp.Procedure, image: Gimp.Image, layer: Gimp.Layer, opts: core.Options,
          engine: kit.EngineConfig, offer: kit.Offer, guide: Optional[Guide], session: Session) -> Gimp.ValueArray:
    """Check everything, read, let the engine dream, then write each result once: any failure before a write
    leaves the image exactly as it was, and GIMP's Cancel (it kills this process) does too, since the worker
    follows us; variations already written stay (each is its own layer and undo step).

    The values are checked against the cached offer before the engine starts (a typo fails at once), then again
    against the live one from the worker's hello, which is what the engine that dreams accepts."""
    prepare(image, layer, opts, offer)
    Gimp.progress_init("Lucid Dream: starting the engine…")
    session.open(engine)
    live = kit.offer_from_hello(session.info, offer)
    settings, targets, plan = prepare(image, layer, opts, live)
    records = core.records_for(opts, settings, targets, str(session.info.get("engine", "")), layer.get_name(),
                               guide.description if guide else None, session.seed)   # the preview's seed
    extra = {"gimp": {"source": layer.get_tattoo(), **(guide.where if guide else {})}}
    records = [dataclasses.replace(r, extra={**r.extra, **extra}) for r in records]
    output = "new-layer" if len(records) > 1 else opts.output
    dream_records(image, layer, plan, records, output, guide, session)
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)


def dream_records(image: Gimp.Image, layer: Gimp.Layer, plan: kit.Plan, records: List[kit.Record], output: str,
                  guide: Optional[Guide], session: Session) -> None:
    """Dream each record (a variation each) on the layer's region and write it with its record attached."""
    fmt = layer_format(image, layer)
    pixels, mask = read_region(image, layer, plan, fmt)
    protocol = session.protocol
    for index, record in enumerate(records):
        what = f"variation {index + 1} of {len(records)}" if len(records) > 1 else "dreaming"
        try:
            result = core.check_result(run_job(protocol, session.client, pixels, plan, fmt, mask,
                                               record.target_text, record.engine_settings(), guide, what), plan, fmt)
        except protocol.WorkerError as exc:
            session.drop()
            raise kit.UserError(exc.message) from None
        if not (image.is_valid() and layer.is_valid()):   # closed while the engine dreamed: nothing to write to
            raise kit.UserError("The image or its layer was closed while Lucid Dream ran: the result was dropped.")
        Gimp.progress_set_text("Lucid Dream: writing the result")
        write(image, layer, plan, fmt, result, output, core.result_name(layer.get_name(), record, index,
                                                                         len(records)), record)
        Gimp.displays_flush()
        log(f"{what} written" if len(records) > 1 else "result written")
    Gimp.progress_update(1.0)
    Gimp.progress_end()


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
        return protocol.Client.connect(engine.url, engine.token, fingerprint=engine.fingerprint)
    return protocol.Client.spawn(engine.python, env=kit.worker_env())


def run_job(protocol: Any, client: Any, pixels: bytes, plan: kit.Plan, fmt: core.PixelFormat,
            mask: Optional[bytes], targets: Optional[str], settings: dict, guide: Optional[Guide] = None,
            what: str = "dreaming") -> bytes:
    try:
        region = plan.region
        job = client.dream(pixels, region.width, region.height, fmt.channels, fmt.sample, mask, targets, settings,
                           guide=guide.wire if guide else None)
        Gimp.progress_set_text(f"Lucid Dream: {what}")
        for event in job.events():
            Gimp.progress_update(max(0.0, min(1.0, event.fraction)))
            Gimp.progress_set_text(core.progress_text(event.message, event.octave, event.octaves))
        return job.result()
    except protocol.JobCancelled:
        raise Cancelled() from None


def write(image: Gimp.Image, layer: Gimp.Layer, plan: kit.Plan, fmt: core.PixelFormat, result: bytes,
          output: str, new_name: str, record: Optional[kit.Record] = None) -> Gimp.Layer:
    """One undo step: the shadow buffer merged through the selection (GIMP blends soft edges), on this layer or on
    a copy inserted just above it, with the record of its settings attached (kept in a saved .xcf)."""
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
        if record is not None:
            attach_record(target, record)
    except Exception:
        if target is not layer:
            image.remove_layer(target)
        raise
    finally:
        image.undo_group_end()
    return target


PARASITE_FLAGS = getattr(Gimp, "PARASITE_PERSISTENT", 1) | getattr(Gimp, "PARASITE_UNDOABLE", 2)


def attach_record(layer: Gimp.Layer, record: kit.Record) -> None:
    """The record as a persistent parasite: saved in the .xcf, undone with the layer."""
    layer.attach_parasite(Gimp.Parasite.new(kit.RECORD_KEY, PARASITE_FLAGS, list(record.to_json().encode("utf-8"))))


def record_of(layer: Gimp.Layer) -> kit.Record:
    """The record on a result layer, or one sentence saying why there is none."""
    parasite = layer.get_parasite(kit.RECORD_KEY)
    data = bytes(parasite.get_data()) if parasite is not None else None
    return kit.parse_record(data, f'the layer "{layer.get_name()}"')


# --------------------------------------------------------------------------------------------- again, test

def run_again(procedure: Gimp.Procedure, run_mode: Gimp.RunMode, image: Gimp.Image,
              drawables: List[Gimp.Drawable], config: Gimp.ProcedureConfig, new_seed: Any) -> Gimp.ValueArray:
    """The selected result layer's settings dreamed again on the layer it came from (found by its tattoo; the
    result itself when that layer is gone), through the current selection, into a new layer."""
    session = Session()
    try:
        engine = kit.read_config(ENGINE_JSON)
        offer = kit.offer_from_config(engine, ENGINE_JSON)
        if len(drawables) != 1:
            raise kit.UserError("Select exactly one layer that Lucid Dream made (several or none are selected).")
        result_layer = drawables[0]
        record = kit.again(record_of(result_layer), bool(new_seed))
        source_tattoo = (record.extra.get("gimp") or {}).get("source")
        source = image.get_layer_by_tattoo(int(source_tattoo)) if source_tattoo else None
        layer = check_drawable(image, [source or result_layer])
        guide = guide_of_record(image, record)
        Gimp.progress_init("Lucid Dream: starting the engine…")
        session.open(engine)
        live = kit.offer_from_hello(session.info, offer)
        live.check_settings({k: v for k, v in record.settings.items() if k in live.ranges or k in ("model", "look")})
        _, off_x, off_y = layer.get_offsets()
        plan = kit.plan_region(layer.get_width(), layer.get_height(), off_x, off_y, selection_bounds(image),
                               live.context, f'the layer "{layer.get_name()}"')
        dream_records(image, layer, plan, [record], "new-layer", guide, session)
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)
    except kit.UserError as exc:
        return _error(procedure, str(exc))
    except Cancelled:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
    except Exception as exc:
        traceback.print_exc()
        return _error(procedure, f"Lucid Dream Again failed unexpectedly ({type(exc).__name__}: {exc}); the image "
                                 f"was not changed.")
    finally:
        session.close()


def engine_report(engine: kit.EngineConfig) -> Tuple[bool, List[str]]:
    """(worked, lines) of Test Engine: start the worker, say hello, time a tiny dream."""
    session = Session()
    try:
        started = time.monotonic()
        session.open(engine)
        pixels, width, height, channels, sample = kit.tiny_image()
        dreamed = time.monotonic()
        job = session.client.dream(pixels, width, height, channels, sample, None, kit.TINY_TARGETS,
                                   dict(kit.TINY_SETTINGS))
        job.result(timeout=300)
        seconds = time.monotonic() - dreamed
        lines = kit.report_lines(session.info, seconds, engine.url or engine.python or "")
        lines.append(f"Starting the engine took {dreamed - started:.2f} s.")
        return True, lines
    except kit.UserError as exc:
        return False, [kit.failure_line(str(exc))]
    except Exception as exc:
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        return False, [kit.failure_line(message)]
    finally:
        session.close()


def run_test_engine(procedure: Gimp.Procedure, run_mode: Gimp.RunMode, image: Optional[Gimp.Image],
                    drawables: List[Gimp.Drawable], config: Gimp.ProcedureConfig, data: Any) -> Gimp.ValueArray:
    try:
        engine = kit.read_config(ENGINE_JSON)
    except kit.UserError as exc:
        return _error(procedure, kit.failure_line(str(exc)))
    worked, lines = engine_report(engine)
    text = "\n".join(lines)
    if run_mode == Gimp.RunMode.INTERACTIVE:
        Gimp.message(text)
    if not worked:
        return _error(procedure, text)
    values = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)
    values.remove(1)
    values.insert(1, GObject.Value(GObject.TYPE_STRING, text))
    return values


if __name__ == "__main__":
    Gimp.main(LucidDream.__gtype__, sys.argv)
