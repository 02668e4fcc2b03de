"""The "Looks" page of the docker: what each layer and channel dreams, as a grid of thumbnails to pick targets from.

The pictures are the engine's look atlas (engine/luciddream/atlas.py), asked for with the protocol's "looks"
message over the docker's own worker: drawn once (minutes, with progress), then read from the engine's cache in a
second. Clicking a thumbnail adds its target (`layer:block6` for a layer's classic look, `layer:block6:17` for one
channel) to the session's list with the page's weight; hovering shows the classes the network sees in it. The
search box asks the engine, which knows the class names, their synonyms and a few words such as "feathers".

The atlas builds in the background while the artist works: a dream (or a preview) sent meanwhile pre-empts the
looks job in the worker, which answers it `busy`; the page then says it is paused and asks again every few
seconds, so the build goes on from the cache as soon as the dream ends. The same wait covers asking for the
looks while a dream runs.
"""
from __future__ import annotations

import threading
import time
from typing import Any, List, Optional, Sequence

from .engine import Callbacks
from .kit import UserError
from .qt import Qt, QtCore, QtGui, QtWidgets, pyqtSignal
from .targets import Choice

ICON_SIDE = 72
RETRY_S = 2.0   # while the engine dreams, ask for the looks again this often


def choice_for(target: str, weight: float) -> Choice:
    """The docker's list entry for an atlas target ("layer:block6" or "layer:block6:17")."""
    body = target[len("layer:"):] if target.startswith("layer:") else target
    layer, _, channel = body.partition(":")
    label = f"{layer} ch {channel}" if channel else layer
    return Choice("layer", body, label, float(weight))


class LooksPage(QtWidgets.QWidget):
    """Grid, search box and weight; bound to the shared session (its engine and its target list)."""

    _arrived = pyqtSignal(object, object, float)    # (pages or None, sentence or None, seconds): to the GUI thread
    _progressed = pyqtSignal(float, str)
    _said = pyqtSignal(str)

    def __init__(self, session: Any, parent: Optional[Any] = None) -> None:
        super().__init__(parent)
        self.session = session
        self.pages: List[list] = []
        self.shown_s = 0.0            # seconds from asking to a filled grid, for the docs' figures
        self._thread: Optional[threading.Thread] = None
        self._job: Any = None
        self._stop = threading.Event()   # Cancel, also while paused for a dream
        self.paused = 0                  # times the engine paused the looks for a dream, for tests and figures
        box = QtWidgets.QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        row = QtWidgets.QHBoxLayout()
        self.search_edit = QtWidgets.QLineEdit()
        self.search_edit.setPlaceholderText("Search looks: dog, feathers, eye…")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.returnPressed.connect(lambda: self.load())
        self.show_button = QtWidgets.QPushButton("Show looks")
        self.show_button.setToolTip("Show what each layer and its most characteristic channels dream (drawn once, "
                                    "a few minutes; then from the engine's cache).")
        self.show_button.clicked.connect(lambda: self.load())
        row.addWidget(self.search_edit, 1)
        row.addWidget(self.show_button)
        box.addLayout(row)
        self.grid = QtWidgets.QListWidget()
        self.grid.setViewMode(QtWidgets.QListView.ViewMode.IconMode)
        self.grid.setIconSize(QtCore.QSize(ICON_SIDE, ICON_SIDE))
        self.grid.setResizeMode(QtWidgets.QListView.ResizeMode.Adjust)
        self.grid.setMovement(QtWidgets.QListView.Movement.Static)
        self.grid.setWordWrap(True)
        self.grid.setMinimumHeight(2 * ICON_SIDE + 40)
        self.grid.itemClicked.connect(self.choose)
        box.addWidget(self.grid, 1)
        row = QtWidgets.QHBoxLayout()
        self.weight_spin = QtWidgets.QDoubleSpinBox()
        self.weight_spin.setRange(-10.0, 10.0)
        self.weight_spin.setSingleStep(0.1)
        self.weight_spin.setValue(1.0)
        self.weight_spin.setPrefix("weight ")
        self.weight_spin.setToolTip("The weight a clicked look is added with (negative: away from it).")
        self.status_label = QtWidgets.QLabel("Click a look to dream it.")
        self.status_label.setWordWrap(True)
        row.addWidget(self.status_label, 1)
        row.addWidget(self.weight_spin)
        box.addLayout(row)
        self._arrived.connect(self._show)
        self._said.connect(self.status_label.setText)
        self._progressed.connect(lambda fraction, message: self.status_label.setText(
            f"Drawing the looks, {fraction:.0%}: {message}"))

    # ------------------------------------------------------------------------------------------------ asking

    @property
    def loading(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def load(self, layers: Optional[Sequence[str]] = None, search: Optional[str] = None) -> bool:
        """Ask the engine for the looks (all layers, or these; the search box's word unless `search` is given)."""
        if self.loading:
            return False
        word = (self.search_edit.text() if search is None else search).strip() or None
        self.status_label.setText("Asking the engine for the looks…")
        self._stop.clear()
        self._thread = threading.Thread(target=self._fetch, args=(None if layers is None else list(layers), word),
                                        name="luciddream-looks", daemon=True)
        self._thread.start()
        return True

    def cancel(self) -> None:
        self._stop.set()
        job = self._job
        if job is not None:
            job.cancel()

    def _fetch(self, layers: Optional[List[str]], word: Optional[str]) -> None:
        from .protocol import BUSY, JobCancelled, WorkerError
        from .protocol.looks import read

        started = time.monotonic()
        try:
            engine = self.session.engine
            client = engine._connect(Callbacks(lambda f, m: self._progressed.emit(f, m), lambda *a: None))
            model = self.session.settings.model if getattr(self.session, "settings", None) else None
            while True:
                self._job = client.looks(model=model or None, layers=layers, search=word)
                try:
                    for event in self._job.events():
                        self._progressed.emit(float(event.fraction), str(event.message))
                    _, pages = read(self._job)
                    break
                except WorkerError as exc:
                    if exc.code != BUSY or self._stop.is_set():
                        raise
                    self.paused += 1
                    self._said.emit("The looks are paused while the engine dreams; they go on after it.")
                    if self._stop.wait(RETRY_S):
                        raise JobCancelled() from None
            self._arrived.emit(pages, None, time.monotonic() - started)
        except JobCancelled:
            self._arrived.emit(None, "Cancelled: the looks drawn so far stay in the engine's cache.", 0.0)
        except WorkerError as exc:
            self._arrived.emit(None, exc.message, 0.0)
        except UserError as exc:
            self._arrived.emit(None, str(exc), 0.0)
        except Exception as exc:  # a bug must still end in a sentence, never a silent page
            self._arrived.emit(None, f"Unexpected error in the plug-in: {type(exc).__name__}: {exc}", 0.0)
        finally:
            self._job = None

    # ---------------------------------------------------------------------------------------------- showing

    def _show(self, pages: Optional[list], problem: Optional[str], seconds: float) -> None:
        if pages is None:
            self.status_label.setText(problem or "")
            return
        self.pages = pages
        self.grid.clear()
        count = 0
        for page in pages:
            for look in page:
                pixmap = QtGui.QPixmap()
                pixmap.loadFromData(look.png, "PNG")
                text = look.layer if look.channel is None else f"{look.layer}:{look.channel}"
                item = QtWidgets.QListWidgetItem(QtGui.QIcon(pixmap), text)
                item.setToolTip(look.label)
                item.setData(Qt.ItemDataRole.UserRole, look.target)
                self.grid.addItem(item)
                count += 1
        self.shown_s = seconds
        self.status_label.setText("No look matches that word: try a class name (dog, bird, fish…)." if not count
                                  else f"{count} looks ({seconds:.1f} s). Click one to dream it.")

    def choose(self, item: Any) -> Choice:
        """Add the clicked look's target to the session's list with the page's weight."""
        choice = choice_for(str(item.data(Qt.ItemDataRole.UserRole)), self.weight_spin.value())
        self.session.add_target(choice)
        if choice.weight != 1.0:
            self.session.set_weight((choice.kind, choice.key), choice.weight)
        self.status_label.setText(f"Added {choice.label} ×{choice.weight:g}: press Dream.")
        return choice
