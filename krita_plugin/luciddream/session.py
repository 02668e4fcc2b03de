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
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, List, Optional, Sequence, Tuple

from . import kit, protocol
from . import settings as stored
from .document import (GuidePixels, Snapshot, add_group, find_node, guide_layers, read_guide, read_record,
                       read_snapshot, uid_text, write_record, write_result)
from .engine import Callbacks, Engine
from .pixels import display_rgba8
from .settings import DreamSettings
from .targets import Choice, choices_from_record, layer_name, preset_choice, targets_text

log = logging.getLogger("luciddream")

# Qt's spin boxes hold 32-bit ints; the engine takes seeds up to 2**32 - 1, the docker offers the part both hold.
WIDGET_SEED_MAX = 2 ** 31 - 1
READY = "Select an area and press Dream."


@dataclass(frozen=True)
class Guide:
    """What the dream is guided toward: a layer of the image (`key` its uniqueId text) or a picture file (`key` its
    path, `pixels` read by the docker)."""

    kind: str                              # "layer" or "file"
    key: str
    name: str
    pixels: Optional[GuidePixels] = None


@dataclass(frozen=True)
class Preview:
    """A finished quick preview: 8-bit R,G,B,A pixels of the region at the preview's working size."""

    width: int
    height: int
    rgba: bytes
    seconds: float


@dataclass
class _Run:
    """One click's work: a dream, N variations or a preview, from one snapshot of the document."""

    kind: str                       # "dream", "variations" or "preview"
    snap: Snapshot
    records: List[kit.Record]       # one per job
    total: int
    choices: List[Choice]
    guide: Optional[tuple]
    started: float
    made: List[Any] = field(default_factory=list)   # the layers written so far
    group: Any = None
    plan: Optional[kit.PreviewPlan] = None
    job_started: float = 0.0
    cancelling: bool = False
    quiet: bool = False             # cancelled to make way for a newer request: no "Cancelled" sentence


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
        self._run: Optional[_Run] = None
        self._queued: Optional[Callable[[], Any]] = None
        self.guide: Optional[Guide] = None
        self.last_preview: Optional[Preview] = None
        self.superseded_previews = 0   # previews cancelled in the worker because a newer request came
        self.offer_changed = Signal()       # (): presets, models or ranges changed
        self.settings_changed = Signal()    # ()
        self.targets_changed = Signal()     # ()
        self.status_changed = Signal()      # (text)
        self.progress_changed = Signal()    # (fraction 0..1)
        self.running_changed = Signal()     # (running)
        self.finished = Signal()            # (outcome "done" | "preview" | "tested" | "cancelled" | "error", sentence)
        self.preview_ready = Signal()       # (Preview)
        self.guide_changed = Signal()       # ()
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

    # ---------------------------------------------------------------------------------------------------- guide

    def set_guide(self, guide: Optional[Guide]) -> None:
        """Dream toward this guide (a layer of the image or a picture file), or none."""
        if guide != self.guide:
            self.guide = guide
            self.guide_changed.emit()

    def guide_layers(self, doc: Any = None) -> List[Tuple[str, str]]:
        """(id, name) of the layers of `doc` (default: the active document) that can guide."""
        try:
            return guide_layers(doc if doc is not None else self.app.activeDocument())
        except Exception:   # a document being closed: nothing to offer
            return []

    def _guide_pixels(self, doc: Any) -> Optional[tuple]:
        guide = self.guide
        if guide is None:
            return None
        if guide.kind == "file":
            if guide.pixels is None:
                raise kit.UserError(f"The guide picture {guide.name} could not be read: choose it again.")
            return guide.pixels.wire()
        return read_guide(doc, guide.key).wire()

    # ---------------------------------------------------------------------------------------------------- dream

    @property
    def running(self) -> bool:
        return self._run is not None

    @property
    def previewing(self) -> bool:
        return self._run is not None and self._run.kind == "preview"

    def set_status(self, text: str) -> None:
        self.status = text
        self.status_changed.emit(text)

    def dream(self, doc: Any = None, node: Any = None, record: Optional[kit.Record] = None) -> bool:
        """Dream in `doc` (default: the active document) on `node` (default: its active layer) into a new layer;
        False, with a sentence in the status, when it cannot start. A running preview gives way (cancelled)."""
        return self._begin("dream", doc, node, record)

    def variations(self, count: Optional[int] = None, doc: Any = None) -> bool:
        """Dream `count` seeds (default: the settings' number) one after another into a new group layer; Cancel
        stops the rest and keeps the finished ones."""
        return self._begin("variations", doc, None, None, count)

    def preview(self, doc: Any = None) -> bool:
        """A quick, small dream of the selection shown in the docker (preview_ready), never in the document: no
        layer, no undo step. A preview still running is cancelled in the worker and this one starts after it."""
        return self._begin("preview", doc, None, None)

    def again(self, new_seed: bool = False, doc: Any = None) -> bool:
        """Dream the selected result layer's recorded settings again (same seed: the same pixels), or with a new
        seed; the docker then shows those settings and targets."""
        try:
            doc = doc if doc is not None else self.app.activeDocument()
            node = doc.activeNode() if doc is not None else None
            record = read_record(doc, node)
            record = kit.again(record, new=new_seed)
            source = self._apply_record(doc, record)
        except kit.UserError as exc:
            self._refuse(str(exc))
            return False
        except Exception as exc:  # Krita's API refused something: a sentence, never a silent dead button
            self._refuse(f"Could not read the layer's settings: {type(exc).__name__}: {exc}")
            return False
        return self._begin("dream", doc, source, record)

    def _apply_record(self, doc: Any, record: kit.Record) -> Any:
        """Load a record into the session (settings, seed, targets, source) and return the source layer (None:
        the visible image)."""
        if self.offer is None or self.settings is None:
            raise kit.UserError(self.problem or "The engine's settings are not known yet.")
        krita = record.extra.get("krita") if isinstance(record.extra.get("krita"), dict) else {}
        choices = choices_from_record(record, krita.get("targets"))
        visible = bool(krita.get("visible", False))
        source = None
        if not visible:
            source = find_node(doc, str(krita.get("source_id") or ""))
            if source is None:
                raise kit.UserError(f'The layer this dream was made from ("{record.source}") is no longer in the '
                                    f'image: select its result on another layer, or dream anew.')
        self.set_guide(self._recorded_guide(record, krita.get("guide")))
        values = {k: v for k, v in record.settings.items() if k in stored.ENGINE_FIELDS}
        values["seed"] = record.seed
        values["visible"] = visible
        self.update(**values)
        self.targets = choices
        self.targets_changed.emit()
        return source

    def _recorded_guide(self, record: kit.Record, listed: Any) -> Optional[Guide]:
        """The guide a record names: its layer again, or the picture file if the docker still holds it."""
        if not record.guide:
            return None
        if isinstance(listed, list) and len(listed) == 3 and listed[0] == "layer":
            return Guide("layer", str(listed[1]), str(listed[2]))
        if self.guide is not None and isinstance(listed, list) and len(listed) == 3 and self.guide.key == listed[1]:
            return self.guide
        raise kit.UserError(f'This dream was guided by the picture "{record.guide}": choose it again as the guide, '
                            f'then press Again.')

    def _begin(self, kind: str, doc: Any, node: Any, record: Optional[kit.Record], count: Optional[int] = None) \
            -> bool:
        if self.previewing:   # a preview gives way to any newer request: cancelled in the worker, then this one
            self._queued = lambda: self._begin(kind, doc, node, record, count)
            if not self._run.cancelling:
                self.superseded_previews += 1
            self._cancel_run(quiet=True)
            return True
        if self.running or self.engine.busy:
            self._refuse("A dream is already running: wait for it or press Cancel.")
            return False
        try:
            run = self._plan(kind, doc, node, record, count)
            self._run = run
            self._start_next()
        except kit.UserError as exc:
            self._run = None
            self._refuse(str(exc))
            return False
        except Exception as exc:  # Krita's API refused something: a sentence, never a silent dead button
            self._run = None
            self._refuse(f"Could not start the dream: {type(exc).__name__}: {exc}")
            return False
        self._set_progress(0.0)
        self.running_changed.emit(True)
        r = run.snap.rect
        words = {"dream": "Dreaming", "variations": f"Dreaming {run.total} variations of",
                 "preview": "Previewing"}[kind]
        self.set_status(f"{words} {r.width}×{r.height} px…")
        return True

    def _plan(self, kind: str, doc: Any, node: Any, record: Optional[kit.Record], count: Optional[int]) -> "_Run":
        if self.offer is None or self.settings is None:
            raise kit.UserError(self.problem or "The engine's settings are not known yet.")
        choices = list(self.targets)
        text = targets_text(choices)
        job_settings = self.settings.engine_settings()
        self.offer.check_settings(job_settings)
        doc = doc if doc is not None else self.app.activeDocument()
        if doc is not None and node is None and not self.settings.visible:
            node = doc.activeNode()
        visible = self.settings.visible if record is None else node is None
        snap = read_snapshot(doc, node, visible, context=self.offer.context)
        guide = self._guide_pixels(doc)
        if record is None:
            source = "visible image" if visible else str(node.name())
            record = kit.make_record(text or None, job_settings, int(job_settings["seed"]),
                                     str(self.engine.info.get("engine", "")), self.settings.preset or None, source,
                                     self.guide.name if self.guide is not None else None)
            krita = {"targets": [[c.kind, c.key, c.label, c.weight] for c in choices], "visible": visible,
                     "source_id": None if visible else uid_text(node),
                     "region": [snap.rect.x, snap.rect.y, snap.rect.width, snap.rect.height],
                     "guide": None if self.guide is None else [self.guide.kind, self.guide.key, self.guide.name]}
            record = replace(record, extra={**record.extra, "krita": krita})
        records = [record]
        if kind == "variations":
            n = int(count if count is not None else self.settings.variations)
            if not 1 <= n <= kit.MAX_VARIATIONS:
                raise kit.UserError(f"Variations must be between 1 and {kit.MAX_VARIATIONS}; got {n}.")
            records = kit.variations(record, n)
        run = _Run(kind, snap, records, len(records), choices, guide, time.monotonic())
        if kind == "preview":
            run.plan = kit.plan_preview(snap.rect.width, snap.rect.height, record.engine_settings(),
                                        record.target_text)
        return run

    def _start_next(self) -> None:
        """Send the run's next job to the engine (its first, or the next variation)."""
        run = self._run
        record = run.records[len(run.made)]
        text = record.target_text or ""
        if run.kind == "preview":
            plan = run.plan
            spec = run.snap.preview_job(text, plan.settings, plan.width, plan.height, run.guide)
        else:
            spec = run.snap.job(text, record.engine_settings(), run.guide)
        run.job_started = time.monotonic()
        self.engine.start(spec, Callbacks(self._progress_from_job, self._done_from_job, self._hello_from_job))

    def cancel(self) -> None:
        """Stop the dream; the document stays exactly as it was (no layer is added, even if a result arrives).
        Variations keep the ones already finished."""
        self._queued = None
        self._cancel_run()

    def _cancel_run(self, quiet: bool = False) -> None:
        run = self._run
        if run is None or run.cancelling:
            return
        run.cancelling = True
        run.quiet = quiet
        self.running_changed.emit(True)   # the dockers grey out Cancel
        if not quiet:
            self.set_status("Cancelling…")
        self.engine.cancel()

    @property
    def cancelling(self) -> bool:
        return self._run is not None and self._run.cancelling

    def test_engine(self) -> bool:
        """Start the worker and dream a tiny picture; the status then says the engine's version, device, models
        and the seconds it took, or what failed and how to fix it (finished: "tested" or "error")."""
        if self.running or self.engine.busy:
            self._refuse("A dream is running: test the engine when it has finished (or press Cancel).")
            return False
        try:
            self.engine.check(lambda info, seconds, problem: self._post(
                lambda: self._on_checked(info, seconds, problem)))
        except kit.UserError as exc:
            self._refuse(kit.failure_line(str(exc)))
            return False
        self.set_status("Testing the engine (starting it if needed)…")
        return True

    def _on_checked(self, info: Optional[dict], seconds: float, problem: Optional[str]) -> None:
        if problem is not None or info is None:
            self._finish("error", kit.failure_line(problem or "the engine gave no reason"))
            return
        self._on_hello(info)
        self._finish("tested", "\n".join(kit.report_lines(info, seconds)))

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
        run = self._run
        if run is None or run.cancelling:
            return
        self._set_progress((len(run.made) + fraction) / run.total)
        if message:
            text = message[:1].upper() + message[1:]
            if run.kind == "variations":
                text = f"Variation {len(run.made) + 1} of {run.total}: {text}"
            self.set_status(text)

    def _on_hello(self, info: Any) -> None:
        try:
            self._use_offer(kit.offer_from_hello(info, self.offer))
        except kit.UserError as exc:   # keep the cached offer; the dream itself goes on
            log.warning("Lucid Dream: the engine's offer is unusable: %s", exc)

    def _on_done(self, pixels: Optional[bytes], code: Optional[str], message: str) -> None:
        run = self._run
        if run is None:
            return
        ok = code is None and pixels is not None and not run.cancelling
        problem = None
        if ok:
            try:
                if not self._is_open(run.snap.doc):
                    raise kit.UserError("The document was closed while dreaming, so the dream was not added.")
                if run.kind == "preview":
                    self._show_preview(run, pixels)
                else:
                    self._add_layer(run, pixels)
            except kit.UserError as exc:
                problem = str(exc)
            except Exception as exc:  # Krita refused something unexpected: say it, never a half state silently
                problem = f"Could not add the dream layer: {type(exc).__name__}: {exc}"
        if ok and problem is None and run.kind == "variations" and len(run.made) < run.total:
            try:
                self._start_next()
                return
            except kit.UserError as exc:
                problem = str(exc)
        self._run = None
        self.running_changed.emit(False)
        queued, self._queued = self._queued, None
        if run.cancelling or code == protocol.CANCELLED:
            self._set_progress(0.0)
            if not run.quiet:
                kept = len(run.made)
                self._finish("cancelled", kit.CANCELLED if not kept else
                             f"Cancelled: kept the {kept} finished variation{'s' if kept > 1 else ''} of "
                             f"{run.total}.")
        elif problem is not None or code is not None or pixels is None:
            self._set_progress(0.0)
            self._finish("error", problem or message or "The engine failed without saying why.")
        else:
            self._set_progress(1.0)
            self._finish(*self._success(run))
            if run.kind == "preview" and self.settings is not None and self.settings.full_after_preview \
                    and queued is None:
                queued = lambda: self.dream(run.snap.doc)   # noqa: E731
        if queued is not None:
            queued()

    def _success(self, run: "_Run") -> Tuple[str, str]:
        r = run.snap.dreamed   # the selection's size, not the region read around it (its context margin)
        if run.kind == "preview":
            seconds = time.monotonic() - run.started
            return "preview", (f"Preview ({run.plan.width}×{run.plan.height} px) in {seconds:.1f} s: press Dream "
                               f"for the full result.")
        where = "image" if run.snap.visible else "layer"
        if run.kind == "variations":
            return "done", f'Done: {run.total} variations in the group "{run.group.name()}" above the {where}.'
        return "done", f'Done: "{run.made[0].name()}" added above the {where} ({r.width}×{r.height} px).'

    def _show_preview(self, run: "_Run", pixels: bytes) -> None:
        plan, fmt = run.plan, run.snap.fmt
        rgba = display_rgba8(pixels, fmt.channels, fmt.sample, plan.width * plan.height)
        self.last_preview = Preview(plan.width, plan.height, rgba, time.monotonic() - run.started)
        self.preview_ready.emit(self.last_preview)

    def _add_layer(self, run: "_Run", pixels: bytes) -> None:
        index = len(run.made)
        record = run.records[index]
        if not record.engine:   # the first dream's record was made before the worker's hello named its version
            record = replace(record, engine=str(self.engine.info.get("engine", "")))
        guide = record.guide
        if run.kind == "variations":
            what = layer_name(run.choices, None, guide=guide)
            if run.group is None:
                run.group = add_group(run.snap, f"{what} ({run.total} variations)")
            name = f"{what} ({kit.variation_label(record, index, run.total)})"
        else:
            name = layer_name(run.choices, record.seed, guide=guide)
        layer = write_result(run.snap, pixels, name, into=run.group)
        try:
            write_record(run.snap.doc, layer, record.to_json())
        except Exception as exc:   # the layer is there; only "Again" will not know its settings
            log.warning("Lucid Dream: could not keep the settings with the layer: %s", exc)
        run.made.append(layer)
        self.last_layer = layer

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
