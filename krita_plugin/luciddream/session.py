"""What the Lucid Dream docker shows and does, without any widget: targets, settings, the engine's offer, the job.

Why apart from the docker: the docker and the menu action drive the same dream, and this part can be tested outside
Krita (against a fake of Krita's settings and document API and a real worker). One Session serves every docker of
a Krita process, so all windows show the same settings and the worker is started once.

Threading: the engine runs a job in its own thread; its callbacks go through `post`, which hands a function to the
GUI thread (a queued Qt signal in Krita, see qt.GuiCalls). So every Signal here fires in the GUI thread, and
Krita's API is only ever called from there.
"""
from __future__ import annotations

import logging
import random
from dataclasses import asdict, replace
from typing import Any, Callable, List, Optional, Sequence, Tuple

from . import kit, protocol
from . import settings as stored
from .document import Snapshot, read_snapshot, write_result
from .engine import Callbacks, Engine
from .settings import DreamSettings
from .targets import Choice, layer_name, preset_choice, targets_text

log = logging.getLogger("luciddream")

# Qt's spin boxes hold 32-bit ints; the engine takes seeds up to 2**32 - 1, the docker offers the part both hold.
WIDGET_SEED_MAX = 2 ** 31 - 1
READY = "Select an area and press Dream."


class Signal:
    """A list of plain callbacks: the session's way to say something changed, with no Qt needed."""

    def __init__(self) -> None:
        self._slots: List[Callable[..., None]] = []

    def connect(self, slot: Callable[..., None]) -> None:
        self._slots.append(slot)

    def disconnect(self, slot: Callable[..., None]) -> None:
        if slot in self._slots:
            self._slots.remove(slot)

    def emit(self, *args: Any) -> None:
        for slot in list(self._slots):
            try:
                slot(*args)
            except Exception:  # one broken listener (a closed window's docker) must not stop the others
                log.exception("Lucid Dream: a listener failed")


class Session:
    """Targets, settings, the offer and the running dream, for every docker and the menu action.

    `app` is Krita.instance() (or a fake of it): readSetting/writeSetting, activeDocument, documents.
    """

    def __init__(self, app: Any, engine: Engine, post: Optional[Callable[[Callable[[], None]], None]] = None):
        self.app = app
        self.engine = engine
        self._post = post or (lambda call: call())
        self.targets: List[Choice] = []
        self.status = READY
        self.fraction = 0.0
        self.last_layer: Any = None
        self._snapshot: Optional[Snapshot] = None
        self._name = ""
        self._cancel_requested = False
        self.offer_changed = Signal()       # (): presets, models or ranges changed
        self.settings_changed = Signal()    # ()
        self.targets_changed = Signal()     # ()
        self.status_changed = Signal()      # (text)
        self.progress_changed = Signal()    # (fraction 0..1)
        self.running_changed = Signal()     # (running)
        self.finished = Signal()            # (outcome "done" | "cancelled" | "error", sentence)
        self.offer: Optional[kit.Offer] = None
        self.settings: Optional[DreamSettings] = None
        self.problem: Optional[str] = None
        try:
            offer = engine.cached_offer()
            self.settings = stored.load(app, offer)
            self.offer = offer
        except kit.UserError as exc:   # no usable engine.json: say so, the docker still opens
            self.problem = str(exc)
            self.status = self.problem

    # ------------------------------------------------------------------------------------------------ settings

    def update(self, **changes: Any) -> None:
        """Change some settings (names of DreamSettings fields), keep them in Krita and tell the dockers.

        A value the engine would refuse keeps the previous one (the widgets' ranges come from the same offer, so
        only a script can get here)."""
        if self.settings is None or self.offer is None:
            return
        updated = stored.with_changes(self.settings, changes, self.offer)
        if updated == self.settings:
            return
        self.settings = updated
        stored.save(self.app, updated)
        self.settings_changed.emit()

    def roll_seed(self) -> int:
        """A new random seed (the docker's Roll button)."""
        if self.offer is None:
            return 0
        low, high = self.offer.range("seed")
        self.update(seed=random.randint(int(low), min(int(high), WIDGET_SEED_MAX)))
        return self.settings.seed if self.settings is not None else 0

    def _use_offer(self, offer: kit.Offer) -> None:
        """The worker's live offer replaces the cached one; settings it no longer accepts fall back."""
        if offer == self.offer:
            return
        previous = self.settings
        settings = stored.checked(asdict(previous), offer) if previous is not None else stored.load(self.app, offer)
        self.offer, self.settings, self.problem = offer, settings, None
        if settings != previous:
            stored.save(self.app, settings)
        self.offer_changed.emit()
        self.settings_changed.emit()

    # ------------------------------------------------------------------------------------------------- targets

    def presets(self) -> Tuple[kit.Preset, ...]:
        return self.offer.presets if self.offer is not None else ()

    def preset_target(self, name: str) -> Choice:
        """The list entry a preset adds."""
        if self.offer is None:
            raise kit.UserError(self.problem or "The engine's presets are not known yet.")
        return preset_choice(self.offer.preset(name))

    def add_target(self, choice: Choice) -> int:
        """Add a class or layer to the list once; adding it again keeps the existing row and its weight. Returns
        its row."""
        for row, have in enumerate(self.targets):
            if (have.kind, have.key) == (choice.kind, choice.key):
                return row
        self.targets.append(choice)
        self.targets_changed.emit()
        return len(self.targets) - 1

    def add_preset(self, name: Optional[str] = None) -> int:
        """Add the chosen preset's look (`name`, else the one the settings hold) to the list."""
        return self.add_target(self.preset_target(name or (self.settings.preset if self.settings else "")))

    def set_weight(self, key: Tuple[str, str], weight: float) -> None:
        """Change the weight of the target with this (kind, key)."""
        for row, have in enumerate(self.targets):
            if (have.kind, have.key) == tuple(key) and have.weight != weight:
                self.targets[row] = replace(have, weight=float(weight))
                self.targets_changed.emit()

    def remove_targets(self, rows: Sequence[int]) -> None:
        """Remove these rows; no rows removes the last one (the Remove button without a selection)."""
        chosen = set(rows) if rows else ({len(self.targets) - 1} if self.targets else set())
        if not chosen:
            return
        self.targets = [c for row, c in enumerate(self.targets) if row not in chosen]
        self.targets_changed.emit()

    def clear_targets(self) -> None:
        if self.targets:
            self.targets = []
            self.targets_changed.emit()

    # ---------------------------------------------------------------------------------------------------- dream

    @property
    def running(self) -> bool:
        return self._snapshot is not None

    def set_status(self, text: str) -> None:
        self.status = text
        self.status_changed.emit(text)

    def dream(self, doc: Any = None) -> bool:
        """Dream in `doc` (default: the active document); False, with a sentence in the status, when it cannot
        start."""
        if self.running or self.engine.busy:
            self._refuse("A dream is already running: wait for it or press Cancel.")
            return False
        try:
            if self.offer is None or self.settings is None:
                raise kit.UserError(self.problem or "The engine's settings are not known yet.")
            choices = list(self.targets)
            text = targets_text(choices)
            job_settings = self.settings.engine_settings()
            self.offer.check_settings(job_settings)
            doc = doc if doc is not None else self.app.activeDocument()
            node = doc.activeNode() if doc is not None else None
            snap = read_snapshot(doc, node, self.settings.visible, context=self.offer.context)
            self._name = layer_name(choices, job_settings["seed"])
            self._cancel_requested = False
            self._snapshot = snap
            self.engine.start(snap.job(text, job_settings), Callbacks(self._progress_from_job,
                                                                       self._done_from_job, self._hello_from_job))
        except kit.UserError as exc:
            self._snapshot = None
            self._refuse(str(exc))
            return False
        except Exception as exc:  # Krita's API refused something: a sentence, never a silent dead button
            self._snapshot = None
            self._refuse(f"Could not start the dream: {type(exc).__name__}: {exc}")
            return False
        self._set_progress(0.0)
        self.running_changed.emit(True)
        r = snap.rect
        self.set_status(f"Dreaming {r.width}×{r.height} px…")
        return True

    def cancel(self) -> None:
        """Stop the dream; the document stays exactly as it was (no layer is added, even if a result arrives)."""
        if not self.running or self._cancel_requested:
            return
        self._cancel_requested = True
        self.running_changed.emit(True)   # the dockers grey out Cancel
        self.set_status("Cancelling…")
        self.engine.cancel()

    @property
    def cancelling(self) -> bool:
        return self.running and self._cancel_requested

    def close(self) -> None:
        """Krita is closing: end the worker."""
        self.engine.close()

    # ----------------------------------------------------- the job's callbacks (job thread) and their GUI halves

    def _progress_from_job(self, fraction: float, message: str) -> None:
        self._post(lambda: self._on_progress(fraction, message))

    def _done_from_job(self, pixels: Optional[bytes], code: Optional[str], message: str) -> None:
        self._post(lambda: self._on_done(pixels, code, message))

    def _hello_from_job(self, info: Any) -> None:
        self._post(lambda: self._on_hello(info))

    def _on_progress(self, fraction: float, message: str) -> None:
        if not self.running or self._cancel_requested:
            return
        self._set_progress(fraction)
        if message:
            self.set_status(message[:1].upper() + message[1:])

    def _on_hello(self, info: Any) -> None:
        try:
            self._use_offer(kit.offer_from_hello(info, self.offer))
        except kit.UserError as exc:   # keep the cached offer; the dream itself goes on
            log.warning("Lucid Dream: the engine's offer is unusable: %s", exc)

    def _on_done(self, pixels: Optional[bytes], code: Optional[str], message: str) -> None:
        snap, self._snapshot = self._snapshot, None
        if snap is None:
            return
        self.running_changed.emit(False)
        if self._cancel_requested or code == protocol.CANCELLED:
            self._set_progress(0.0)
            self._finish("cancelled", kit.CANCELLED)
            return
        if code is not None or pixels is None:
            self._set_progress(0.0)
            self._finish("error", message or "The engine failed without saying why.")
            return
        try:
            if not self._is_open(snap.doc):
                raise kit.UserError("The document was closed while dreaming, so the dream was not added.")
            self.last_layer = write_result(snap, pixels, self._name)
        except kit.UserError as exc:
            self._set_progress(0.0)
            self._finish("error", str(exc))
            return
        except Exception as exc:  # Krita refused something unexpected: say it, never leave a half state silently
            self._set_progress(0.0)
            self._finish("error", f"Could not add the dream layer: {type(exc).__name__}: {exc}")
            return
        self._set_progress(1.0)
        r = snap.rect
        self._finish("done", f'Done: "{self._name}" added above the '
                             f'{"image" if snap.visible else "layer"} ({r.width}×{r.height} px).')

    def _set_progress(self, fraction: float) -> None:
        self.fraction = max(0.0, min(1.0, float(fraction)))
        self.progress_changed.emit(self.fraction)

    def _refuse(self, message: str) -> None:
        self.set_status(message)
        self.finished.emit("error", message)

    def _finish(self, outcome: str, message: str) -> None:
        self.set_status(message)
        self.finished.emit(outcome, message)

    def _is_open(self, doc: Any) -> bool:
        try:
            return any(d == doc for d in self.app.documents())
        except Exception:
            return True   # cannot tell: write_result's own checks still guard the layer
