"""The Lucid Dream dialog: GIMP's own procedure dialog, the technical controls behind a fold, and a quick preview.

Why the preview lives in the dialog: it is drawn into a GimpPreviewArea, never into the image, so a preview can
neither enter the undo history nor change a pixel, and closing the dialog leaves nothing behind. It is the
selection read small (GEGL scales while reading) and dreamed with kit.plan_preview's quick settings on the same
worker the full dream then uses, so the worker is warm when OK is pressed. A newer preview supersedes an older
one: the older job is cancelled in the worker, and since a worker runs one job at a time, the newer one starts
when the cancelled one has ended. GTK is imported only here, never for scripts.
"""
from __future__ import annotations

import threading
import time
from typing import Any, List, Optional

import gi

gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import Gimp, GimpUi, GLib, Gtk  # noqa: E402

import dreamcore as core  # noqa: E402
import kit  # noqa: E402

_HARD = bytes([0] + [255] * 255)
IMAGE_TYPES = {(False, False): "RGB_IMAGE", (False, True): "RGBA_IMAGE", (True, False): "GRAY_IMAGE",
               (True, True): "GRAYA_IMAGE"}


class Preview:
    """The preview's widgets and its jobs; everything that touches GIMP or GTK runs on the main thread."""

    def __init__(self, plugin: Any, dialog: Any, config: Any, present: List[str], image: Any,
                 drawables: List[Any], engine: kit.EngineConfig, offer: kit.Offer, session: Any) -> None:
        self.plugin = plugin   # luciddream.py, which runs as __main__: its readers and checks
        self.dialog, self.config, self.present = dialog, config, present
        self.image, self.drawables, self.engine, self.offer, self.session = image, drawables, engine, offer, session
        self.running: Any = None     # the preview job in the worker, if any
        self.again = False           # a newer preview waits for the running one to end
        self.shown = False
        self.closed = False
        self.pending: Optional[int] = None
        side = kit.PREVIEW_SIDE
        self.area = GimpUi.PreviewArea()
        self.area.set_size_request(side, side)
        self.area.set_tooltip_text("A quick, small dream of the selection with these settings; nothing is written "
                                   "to the image until OK")
        self.button = Gtk.Button.new_with_mnemonic("_Preview")
        self.button.set_tooltip_text("Dream a small copy of the selection in a few seconds (fewer octaves and "
                                     "steps); changing a setting afterwards previews again")
        self.button.connect("clicked", lambda *_: self.start())
        self.status = Gtk.Label(label="Preview: press Preview (Alt+P) for a quick look")
        self.status.set_line_wrap(True)
        self.status.set_max_width_chars(40)
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
        frame = Gtk.Frame()
        frame.set_halign(Gtk.Align.CENTER)   # the area keeps the preview's size; the dialog may be wider
        frame.add(self.area)
        box.pack_start(frame, False, False, 0)
        row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
        row.pack_start(self.button, False, False, 0)
        row.pack_start(self.status, True, True, 0)
        box.pack_start(row, False, False, 0)
        box.set_border_width(6)
        dialog.get_content_area().pack_start(box, False, False, 0)
        box.show_all()
        config.connect("notify", self.changed)
        self.opening = threading.Thread(target=self._open_quietly, name="luciddream-open", daemon=True)
        self.opening.start()   # the worker starts (and loads its model) while the user looks at the dialog

    def _open_quietly(self) -> None:
        try:
            self.session.open(self.engine)
        except Exception:   # the first Preview or OK says what is wrong
            pass

    def changed(self, *_: Any) -> None:
        """A setting changed: preview again shortly (the timer restarts with each change, so a drag is one job)."""
        if not self.shown:
            return
        if self.pending is not None:
            GLib.source_remove(self.pending)
        self.pending = GLib.timeout_add(400, self._changed_timeout)

    def _changed_timeout(self) -> bool:
        self.pending = None
        self.start()
        return False

    def say(self, text: str) -> None:
        self.status.set_text(text)

    def start(self) -> None:
        """Read the selection small and start a preview; while one runs, cancel it and start anew when it ends."""
        self.shown = True
        if self.running is not None:
            if not self.again:
                self.again = True
                self.running.cancel()
                self.plugin.log("preview superseded: cancelled in the worker")
            return
        clicked = time.monotonic()
        try:
            request = self._request()
        except kit.UserError as exc:
            self.say(str(exc))
            return
        self.opening.join()
        try:
            client = self.session.open(self.engine)
        except kit.UserError as exc:
            self.say(str(exc))
            return
        pixels, width, height, fmt, mask, targets, settings, look = request
        self.shown_seed = settings["seed"]
        try:
            job = client.dream(pixels, width, height, fmt.channels, "u8", mask, targets, settings)
        except self.session.protocol.WorkerError as exc:
            self.session.drop()
            self.say(exc.message)
            return
        self.running = job
        self.say("Preview: dreaming…")
        threading.Thread(target=self._wait, args=(job, width, height, fmt, clicked, look),
                         name="luciddream-preview", daemon=True).start()

    def _request(self) -> tuple:
        """What this preview sends, from the dialog's current values (one sentence if they do not fit)."""
        opts = self.plugin.options_of(self.config, self.present, self.offer)
        layer = self.plugin.check_drawable(self.image, self.drawables)
        live = kit.offer_from_hello(self.session.info, self.offer) if self.session.info else self.offer
        settings, targets, plan = self.plugin.prepare(self.image, layer, opts, live)
        settings["seed"] = self.seed(opts)
        quick = kit.plan_preview(plan.region.width, plan.region.height, settings, targets)
        gray = self.image.get_base_type() == Gimp.ImageBaseType.GRAY
        fmt = core.pixel_format(gray, layer.has_alpha(), "u8")
        r = plan.region
        rect = kit.Rect(*kit.scale_rect(r.x, r.y, r.width, r.height, quick.scale))
        pixels = self.plugin.read(layer.get_buffer(), rect, fmt.babl, quick.scale)
        mask = None
        if plan.selected is not None:
            m = plan.mask_rect
            mrect = kit.Rect(*kit.scale_rect(m.x, m.y, m.width, m.height, quick.scale))
            selection = self.image.get_selection().get_buffer()
            mask = self.plugin.read(selection, mrect, "Y u8", quick.scale).translate(_HARD)
            if not any(mask):
                raise kit.UserError(f'Nothing is selected on the layer "{layer.get_name()}": select some of it.')
        self.kind = IMAGE_TYPES[(gray, layer.has_alpha())]
        return pixels, rect.width, rect.height, fmt, mask, targets, quick.settings, kit.look_of(targets, settings)

    def seed(self, opts: core.Options) -> int:
        """The seed the preview shows, which OK then dreams too: the dialog's, or one drawn once per dialog."""
        if opts.seed != core.RANDOM_SEED:
            return opts.seed
        if self.session.seed is None:
            self.session.seed = kit.new_seed()
        return self.session.seed

    def _wait(self, job: Any, width: int, height: int, fmt: core.PixelFormat, clicked: float, look: str) -> None:
        """In a thread: the job's end, handed to the main thread."""
        protocol = self.session.protocol
        try:
            pixels = job.result(timeout=300)
        except protocol.JobCancelled:
            GLib.idle_add(self._done, None, None, width, height, fmt, clicked, look)
            return
        except protocol.WorkerError as exc:
            GLib.idle_add(self._done, None, exc.message, width, height, fmt, clicked, look)
            return
        GLib.idle_add(self._done, pixels, None, width, height, fmt, clicked, look)

    def _done(self, pixels: Optional[bytes], error: Optional[str], width: int, height: int,
              fmt: core.PixelFormat, clicked: float, look: str) -> bool:
        if self.closed:
            return False
        self.running = None
        if self.again:   # superseded: this result (or its cancellation) is dropped, the newer preview starts
            self.again = False
            if error is not None:
                self.session.drop()
            self.start()
            return False
        if error is not None:
            self.session.drop()   # a killed or broken worker: the next Preview or OK starts a new one
            self.say(f"Preview failed: {error} The image was not changed.")
            self.plugin.log(f"preview failed: {error}")
            return False
        if pixels is None:
            return False
        side = kit.PREVIEW_SIDE
        self.area.fill(0, 0, side, side, 0x80, 0x80, 0x80)
        x, y = (side - width) // 2, (side - height) // 2
        self.area.draw(x, y, width, height, getattr(Gimp.ImageType, self.kind), pixels,
                       width * fmt.bytes_per_pixel)
        seconds = time.monotonic() - clicked
        self.say(f"Preview: {width}×{height} in {seconds:.1f} s; OK dreams it at full size.")
        self.plugin.log(f"preview shown in {seconds:.2f} s ({look} look, {width}x{height}, seed {self.shown_seed})")
        if "dream-after-preview" in self.present and self.config.get_property("dream-after-preview"):
            self.dialog.response(Gtk.ResponseType.OK)   # the setting: the full dream follows the preview
        return False

    def cancel_all(self) -> None:
        """The dialog closes: a running preview is cancelled, its result dropped."""
        self.closed = True
        job, self.running = self.running, None
        if job is not None:
            try:
                job.cancel()
                job.result(timeout=30)   # the worker runs one job at a time: OK's dream must find it free
            except Exception:
                pass


def show_dialog(plugin: Any, procedure: Any, config: Any, arguments: List[str], image: Any, drawables: List[Any],
                engine: kit.EngineConfig, offer: kit.Offer, session: Any) -> bool:
    """GIMP's dialog for the procedure's arguments, artistic ones first, with the preview below them."""
    GimpUi.init("luciddream")
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Lucid Dream")
    artistic = [name for name in arguments if name not in core.ADVANCED]
    advanced = [name for name in core.ADVANCED if name in arguments]
    if advanced:
        dialog.get_label("advanced-label", "_Advanced: steps, size step, memory tile, network, device, output",
                         False, True)
        dialog.fill_box("advanced-box", advanced)
        dialog.fill_expander("advanced", "advanced-label", False, "advanced-box")
        artistic.append("advanced")
    dialog.fill(artistic)
    preview = Preview(plugin, dialog, config, arguments, image, drawables, engine, offer, session)
    import looks   # "Explore looks…" (issue 18): the atlas's grid, which fills Targets
    looks.attach(dialog, config, lambda: session.open(engine), offer)
    try:
        return bool(dialog.run())
    finally:
        preview.cancel_all()
        dialog.destroy()
