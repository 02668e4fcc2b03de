"""The "Explore looks…" button of the Lucid Dream dialog: a grid of what each layer and channel dreams, which fills the
dialog's target field.

The pictures are the engine's look atlas (engine/luciddream/atlas.py), asked for with the protocol's "looks"
message over the dialog's own worker (the one its previews use): drawn once (minutes, with progress in the
browser), then read from the engine's cache in a second. Clicking a thumbnail appends its target (`layer:block6`
for a layer's classic look, `layer:block6:17` for one channel) with the browser's weight to the dialog's Targets
and closes the browser; hovering shows the classes the network sees in it. The search box asks the engine, which
knows the class names, their synonyms and a few words such as "feathers". GTK is imported only here and in
dialog.py, never for scripts.
"""
from __future__ import annotations

import importlib
import sys
import threading
import time
from typing import Any, Callable, List, Optional

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("GdkPixbuf", "2.0")
from gi.repository import GdkPixbuf, GLib, Gtk  # noqa: E402

import kit  # noqa: E402

ICON_SIDE = 80


def say(text: str) -> None:
    print(f"luciddream: {text}", file=sys.stderr, flush=True)


def with_target(targets: str, target: str, weight: float) -> str:
    """The Targets text with one more target (weight written when it is not 1); one already there is kept."""
    item = target if weight == 1.0 else f"{target}={weight:g}"
    have = [t.strip() for t in (targets or "").replace(";", ",").split(",") if t.strip()]
    if any(t.split("=")[0].strip() == target for t in have):
        return ", ".join(have)
    return ", ".join(have + [item])


def attach(dialog: Any, config: Any, open_client: Callable[[], Any], offer: Any = None) -> Any:
    """An "Explore looks…" button under the dialog's controls; returns it. Alt+X: a letter the dialog's other
    controls and buttons leave free (a shared mnemonic only moves the focus)."""
    button = Gtk.Button.new_with_mnemonic("E_xplore looks…")
    button.set_tooltip_text("See what each network layer and its most characteristic channels dream, and click "
                            "one to add it to Targets")
    button.connect("clicked", lambda *_: Browser(dialog, config, open_client, offer).run())
    row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
    row.set_border_width(6)
    row.pack_start(button, False, False, 0)
    dialog.get_content_area().pack_start(row, False, False, 0)
    row.show_all()
    return button


class Browser:
    """The looks window: search, weight, grid; it asks the engine in a thread and fills the grid on GTK's."""

    def __init__(self, parent: Any, config: Any, open_client: Callable[[], Any], offer: Any = None) -> None:
        self.parent, self.config, self.open_client, self.offer = parent, config, open_client, offer
        self.job: Any = None
        self.chosen: Optional[str] = None
        self.window = Gtk.Dialog(title="Lucid Dream: Looks", transient_for=parent, modal=True)
        self.window.add_button("_Close", Gtk.ResponseType.CLOSE)
        self.window.set_default_size(620, 520)
        area = self.window.get_content_area()
        row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
        self.search = Gtk.SearchEntry()
        self.search.set_placeholder_text("Search looks: dog, feathers, eye…")
        self.search.connect("activate", lambda *_: self.load())
        self.weight = Gtk.SpinButton.new_with_range(-10.0, 10.0, 0.1)
        self.weight.set_digits(2)
        self.weight.set_value(1.0)
        self.weight.set_tooltip_text("The weight a clicked look is added with (negative: away from it)")
        every = Gtk.Button.new_with_mnemonic("_All layers")
        every.set_tooltip_text("Every layer of the network (drawn once, a few minutes; then from the cache)")
        every.connect("clicked", lambda *_: self.load(every=True))
        row.pack_start(self.search, True, True, 0)
        row.pack_start(every, False, False, 0)
        row.pack_start(Gtk.Label(label="Weight"), False, False, 0)
        row.pack_start(self.weight, False, False, 0)
        row.set_border_width(6)
        area.pack_start(row, False, False, 0)
        self.grid = Gtk.FlowBox()
        self.grid.set_selection_mode(Gtk.SelectionMode.NONE)
        self.grid.set_activate_on_single_click(True)
        self.grid.connect("child-activated", lambda _grid, child: self._choose(child.target))
        self.grid.set_max_children_per_line(9)
        self.grid.set_homogeneous(True)
        scroll = Gtk.ScrolledWindow()
        scroll.add(self.grid)
        area.pack_start(scroll, True, True, 0)
        self.status = Gtk.Label(label="Asking the engine for the looks…")
        self.status.set_line_wrap(True)
        area.pack_start(self.status, False, False, 6)

    def first_layers(self) -> Optional[List[str]]:
        """The layer of the dialog's Layer look, so the browser opens on a page that is quick to draw; None
        (every layer) when no layer look is chosen."""
        try:
            targets = self.offer.preset(self.config.get_property("preset")).targets if self.offer else ""
        except Exception:  # "none", or an offer without that preset
            return None
        layers = [t.split(":", 1)[1] for t in targets.split(",") if t.strip().startswith("layer:")]
        return [layer.split("=")[0].strip() for layer in layers] or None

    def run(self) -> Optional[str]:
        self.window.show_all()
        self.load(layers=self.first_layers())
        self.window.run()
        if self.job is not None:
            self.job.cancel()   # the looks finished so far stay in the engine's cache
        self.window.destroy()
        return self.chosen

    def load(self, layers: Optional[List[str]] = None, every: bool = False) -> None:
        word = self.search.get_text().strip() or None
        layers = None if every or word else layers
        self.status.set_text("Asking the engine for the looks…")
        threading.Thread(target=self._fetch, args=(layers, word), name="luciddream-looks", daemon=True).start()

    def _fetch(self, layers: Optional[List[str]], word: Optional[str]) -> None:
        started = time.monotonic()
        try:
            client = self.open_client()
            protocol = sys.modules[type(client).__module__.rsplit(".", 1)[0]]
            read = importlib.import_module(protocol.__name__ + ".looks").read
            self.job = client.looks(layers=layers, search=word)
            for event in self.job.events():
                GLib.idle_add(self.status.set_text, f"Drawing the looks, {event.fraction:.0%}: {event.message}")
            _, pages = read(self.job)
            GLib.idle_add(self._show, pages, None, time.monotonic() - started)
        except kit.UserError as exc:
            GLib.idle_add(self._show, None, str(exc), 0.0)
        except Exception as exc:  # a WorkerError (its sentence), or a bug that must still end in a sentence
            message = getattr(exc, "message", None) or f"Unexpected error in the plug-in: {type(exc).__name__}: {exc}"
            GLib.idle_add(self._show, None, message, 0.0)
        finally:
            self.job = None

    def _show(self, pages: Optional[list], problem: Optional[str], seconds: float) -> bool:
        if pages is None:
            self.status.set_text(problem or "")
            say(f"looks failed: {problem}")
            return False
        for child in self.grid.get_children():
            self.grid.remove(child)
        count, first = 0, None
        for page in pages:
            for look in page:
                loader = GdkPixbuf.PixbufLoader.new_with_type("png")
                loader.write(look.png)
                loader.close()
                picture = loader.get_pixbuf().scale_simple(ICON_SIDE, ICON_SIDE, GdkPixbuf.InterpType.BILINEAR)
                text = look.layer if look.channel is None else f"{look.layer}:{look.channel}"
                box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=2)
                box.pack_start(Gtk.Image.new_from_pixbuf(picture), False, False, 0)
                box.pack_start(Gtk.Label(label=text), False, False, 0)
                child = Gtk.FlowBoxChild()   # the grid's own keyboard walk: arrows move, Space or Return choose
                child.add(box)
                child.set_tooltip_text(look.label)
                child.target = look.target
                self.grid.add(child)
                first = first or child
                count += 1
        self.grid.show_all()
        if first is not None:
            first.grab_focus()   # the keyboard walks the grid from the first look
            GLib.idle_add(self._say_places)
        self.status.set_text("No look matches that word: try a class name (dog, bird, fish…)." if not count else
                             f"{count} looks ({seconds:.1f} s). Click one to add it to Targets.")
        say(f"looks shown: {count} in {seconds:.2f} s")
        return False

    def _say_places(self, tries: int = 50) -> bool:
        """Log where each look is drawn on the screen (root coordinates of its box), so a driven test can click
        one like a user does; once the grid has its layout (a cached page arrives before it)."""
        window = self.window.get_window()
        children = self.grid.get_children()
        if window is None or not children or children[0].get_allocated_width() <= 1:
            if tries > 0:
                GLib.timeout_add(100, self._say_places, tries - 1)
            return False
        origin = window.get_origin()
        left, top = origin[-2], origin[-1]
        for number, child in enumerate(children):
            spot = child.translate_coordinates(self.window, 0, 0)
            if spot is not None:
                say(f"looks place {number} {child.target} {left + spot[0]} {top + spot[1]} "
                    f"{child.get_allocated_width()} {child.get_allocated_height()}")
        return False

    def _choose(self, target: str) -> None:
        weight = float(self.weight.get_value())
        text = with_target(self.config.get_property("targets"), target, weight)
        self.config.set_property("targets", text)
        self.chosen = target
        say(f"looks chose {target} (weight {weight:g}): targets now {text!r}")
        self.window.response(Gtk.ResponseType.CLOSE)
