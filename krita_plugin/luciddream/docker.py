"""The "Lucid Dream" docker: targets, settings, Dream / Cancel, progress and a status line.

Threading: the engine job runs in a plain thread (engine.py) whose callbacks only emit Qt signals; Qt queues
them into the GUI thread, where the widgets and the document are touched. So Krita stays responsive while the
worker starts and dreams, and Krita's API is only ever called from the GUI thread.
"""
from __future__ import annotations

import random
from typing import Any, Dict, List, Optional

from krita import DockWidget, Krita

from . import protocol
from .document import DocumentError, Snapshot, read_snapshot, write_result
from .engine import Callbacks, Engine, EngineError
from .qt import QObject, Qt, QtWidgets, pyqtSignal
from .targets import (LAYER_PRESETS, Choice, TargetError, class_choice, classes, layer_choice, layer_name, search,
                      targets_text)

DOCKER_ID = "luciddream_docker"
TILES = (128, 192, 256, 384, 512, 640, 768, 1024)
MODELS = ("lite0", "lite1", "lite2")
SEED_MAX = 2 ** 31 - 1

_engine: Optional[Engine] = None
_dockers: List["LucidDreamDocker"] = []


def shared_engine() -> Engine:
    """One worker for the whole Krita session: loading the model is the slow part, so every docker shares it."""
    global _engine
    if _engine is None:
        _engine = Engine()
    return _engine


def shutdown() -> None:
    """Krita is closing: end the worker (it would also notice its parent is gone, but this is immediate)."""
    global _engine
    if _engine is not None:
        _engine.close()
        _engine = None


def dockers() -> List["LucidDreamDocker"]:
    """Every Lucid Dream docker that exists (one per Krita window), for the menu action and tests."""
    alive = []
    for d in _dockers:
        try:
            d.objectName()
        except RuntimeError:   # its C++ side was deleted with its window
            continue
        alive.append(d)
    _dockers[:] = alive
    return list(alive)


class _Bridge(QObject):
    """Signals emitted from the job thread and delivered in the GUI thread."""

    progress = pyqtSignal(float, str)
    done = pyqtSignal(object, object, str)
    hello = pyqtSignal(object)


class LucidDreamDocker(DockWidget):
    """Settings › Dockers › Lucid Dream."""

    # outcome ("done", "cancelled", "error") and the status sentence, whenever a dream attempt ends
    finished = pyqtSignal(str, str)

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Lucid Dream")
        self.setObjectName(DOCKER_ID)
        self.engine = shared_engine()
        self._snapshot: Optional[Snapshot] = None
        self._name = ""
        self._cancel_requested = False
        self.last_layer: Any = None
        self._bridge = _Bridge()
        self._bridge.progress.connect(self._on_progress)
        self._bridge.done.connect(self._on_done)
        self._bridge.hello.connect(self._on_hello)
        self._build()
        _dockers.append(self)

    # ------------------------------------------------------------------------------------------------- widgets

    def _build(self) -> None:
        root = QtWidgets.QWidget(self)
        box = QtWidgets.QVBoxLayout(root)
        box.setContentsMargins(4, 4, 4, 4)

        self.search_edit = QtWidgets.QLineEdit()
        self.search_edit.setPlaceholderText("Search ImageNet classes: goldfish, peacock…")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.textChanged.connect(self._on_search)
        self.search_edit.returnPressed.connect(self._add_selected_class)
        self.results = QtWidgets.QListWidget()
        self.results.setMaximumHeight(96)
        self.results.itemDoubleClicked.connect(lambda _item: self._add_selected_class())
        add_class = QtWidgets.QPushButton("Add class")
        add_class.clicked.connect(self._add_selected_class)
        box.addWidget(self.search_edit)
        box.addWidget(self.results)

        row = QtWidgets.QHBoxLayout()
        self.layer_combo = QtWidgets.QComboBox()
        for label, layer in LAYER_PRESETS:
            self.layer_combo.addItem(label, layer)
        self.layer_combo.setToolTip("Dream a network layer instead of a class: the classic DeepDream looks.")
        add_layer = QtWidgets.QPushButton("Add look")
        add_layer.clicked.connect(self._add_layer_preset)
        row.addWidget(add_class)
        row.addWidget(self.layer_combo, 1)
        row.addWidget(add_layer)
        box.addLayout(row)

        self.target_table = QtWidgets.QTableWidget(0, 2)
        self.target_table.setHorizontalHeaderLabels(["Dream of", "Weight"])
        header = self.target_table.horizontalHeader()
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.target_table.verticalHeader().setVisible(False)
        self.target_table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.target_table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.target_table.setMaximumHeight(130)
        box.addWidget(self.target_table)
        row = QtWidgets.QHBoxLayout()
        self.targets_hint = QtWidgets.QLabel("Nothing listed: the classic puppyslug look.")
        self.targets_hint.setWordWrap(True)
        remove = QtWidgets.QPushButton("Remove")
        remove.clicked.connect(self._remove_selected_targets)
        row.addWidget(self.targets_hint, 1)
        row.addWidget(remove)
        box.addLayout(row)

        form = QtWidgets.QFormLayout()
        self.source_combo = QtWidgets.QComboBox()
        self.source_combo.addItem("Active layer", False)
        self.source_combo.addItem("Visible image", True)
        form.addRow("Source", self.source_combo)
        self.model_combo = QtWidgets.QComboBox()
        for name in MODELS:
            self.model_combo.addItem(name)
        form.addRow("Model", self.model_combo)
        strength = QtWidgets.QHBoxLayout()
        self.steps_spin = _spin(1, 200, 10, "Gradient steps per octave: more steps, stronger dream.")
        self.step_size_spin = _dspin(0.1, 16.0, 1.5, 0.1, "Change per step in 8-bit levels: higher is bolder.")
        strength.addWidget(QtWidgets.QLabel("steps"))
        strength.addWidget(self.steps_spin)
        strength.addWidget(QtWidgets.QLabel("× size"))
        strength.addWidget(self.step_size_spin)
        form.addRow("Strength", strength)
        self.octaves_spin = _spin(1, 8, 4, "Scales to dream at: more octaves grow larger structures.")
        form.addRow("Octaves", self.octaves_spin)
        self.tile_combo = QtWidgets.QComboBox()
        for t in TILES:
            self.tile_combo.addItem(f"{t} px", t)
        self.tile_combo.setCurrentIndex(TILES.index(640))
        self.tile_combo.setToolTip("Largest window the network sees at once: smaller uses less memory.")
        form.addRow("Detail size", self.tile_combo)
        self.feather_spin = _spin(0, 500, 0, "Fade the dream in over this many pixels inside the selection.")
        form.addRow("Feather", self.feather_spin)
        seed = QtWidgets.QHBoxLayout()
        self.seed_spin = _spin(0, SEED_MAX, random.randint(0, 99999), "Same seed, same dream.")
        self.dice_button = QtWidgets.QToolButton()
        self.dice_button.setText("Roll")
        self.dice_button.setToolTip("Roll a new random seed")
        self.dice_button.clicked.connect(self.roll_seed)
        seed.addWidget(self.seed_spin, 1)
        seed.addWidget(self.dice_button)
        form.addRow("Seed", seed)
        box.addLayout(form)

        row = QtWidgets.QHBoxLayout()
        self.dream_button = QtWidgets.QPushButton("Dream")
        self.dream_button.setToolTip("Dream inside the selection (the whole layer when nothing is selected) into "
                                     "a new layer")
        self.dream_button.clicked.connect(self.dream)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.dream_button, 1)
        row.addWidget(self.cancel_button)
        box.addLayout(row)
        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(False)
        box.addWidget(self.progress_bar)
        self.status_label = QtWidgets.QLabel("Select an area and press Dream.")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.addWidget(self.status_label)
        box.addStretch(1)
        self.setWidget(root)

    def canvasChanged(self, canvas: Any) -> None:  # required by DockWidget; the active document is read on Dream
        pass

    # ------------------------------------------------------------------------------------------------- targets

    def _on_search(self, text: str) -> None:
        self.results.clear()
        try:
            found = search(text, limit=40)
        except TargetError as exc:
            self.set_status(str(exc))
            return
        for c in found:
            item = QtWidgets.QListWidgetItem(f"{c.label}  #{c.index}")
            item.setData(Qt.ItemDataRole.UserRole, c.index)
            if c.synonyms:
                item.setToolTip(", ".join(c.synonyms))
            self.results.addItem(item)
        if found:
            self.results.setCurrentRow(0)

    def _add_selected_class(self) -> None:
        item = self.results.currentItem()
        if item is None:
            if self.search_edit.text().strip():
                self.set_status(f'No ImageNet class matches "{self.search_edit.text().strip()}".')
            return
        self.add_target(class_choice(classes()[int(item.data(Qt.ItemDataRole.UserRole))]))

    def _add_layer_preset(self) -> None:
        self.add_target(layer_choice(str(self.layer_combo.currentData())))

    def add_target(self, choice: Choice) -> None:
        """Add a class or layer to the list (once; adding it again keeps the existing row and its weight)."""
        for row in range(self.target_table.rowCount()):
            if self.target_table.item(row, 0).data(Qt.ItemDataRole.UserRole) == (choice.kind, choice.key):
                self.target_table.selectRow(row)
                return
        row = self.target_table.rowCount()
        self.target_table.insertRow(row)
        item = QtWidgets.QTableWidgetItem(choice.label if choice.kind == "class" else f"layer {choice.label}")
        item.setData(Qt.ItemDataRole.UserRole, (choice.kind, choice.key))
        self.target_table.setItem(row, 0, item)
        weight = _dspin(-10.0, 10.0, choice.weight, 0.1, "How strongly this target pulls (negative: away).")
        self.target_table.setCellWidget(row, 1, weight)
        self._update_hint()

    def _remove_selected_targets(self) -> None:
        rows = sorted({i.row() for i in self.target_table.selectedIndexes()}, reverse=True)
        if not rows and self.target_table.rowCount():
            rows = [self.target_table.rowCount() - 1]
        for row in rows:
            self.target_table.removeRow(row)
        self._update_hint()

    def clear_targets(self) -> None:
        self.target_table.setRowCount(0)
        self._update_hint()

    def _update_hint(self) -> None:
        n = self.target_table.rowCount()
        self.targets_hint.setText("Nothing listed: the classic puppyslug look." if n == 0 else
                                  f"{n} target{'s' if n > 1 else ''}: weights mix them.")

    def choices(self) -> List[Choice]:
        """The target list as the engine will get it."""
        out = []
        for row in range(self.target_table.rowCount()):
            item = self.target_table.item(row, 0)
            kind, key = item.data(Qt.ItemDataRole.UserRole)
            label = item.text()[len("layer "):] if kind == "layer" else item.text()
            out.append(Choice(kind, key, label, float(self.target_table.cellWidget(row, 1).value())))
        return out

    # ------------------------------------------------------------------------------------------------ settings

    def roll_seed(self) -> None:
        self.seed_spin.setValue(random.randint(0, SEED_MAX))

    def settings(self) -> Dict[str, Any]:
        """The engine's Settings fields, as the widgets show them."""
        return {"model": self.model_combo.currentText(), "octaves": self.octaves_spin.value(),
                "steps": self.steps_spin.value(), "step_size": round(self.step_size_spin.value(), 3),
                "tile": int(self.tile_combo.currentData()), "seed": self.seed_spin.value(),
                "feather": float(self.feather_spin.value())}

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    # ---------------------------------------------------------------------------------------------------- dream

    @property
    def running(self) -> bool:
        return self._snapshot is not None

    def dream(self) -> bool:
        """Start a dream of the active document; False (and a sentence in the status line) when it cannot start."""
        if self.running or self.engine.busy:
            self._refuse("A dream is already running: wait for it or press Cancel.")
            return False
        try:
            choices = self.choices()
            targets = targets_text(choices)
            settings = self.settings()
            doc = Krita.instance().activeDocument()
            node = doc.activeNode() if doc is not None else None
            snap = read_snapshot(doc, node, bool(self.source_combo.currentData()))
            self._name = layer_name(choices, settings["seed"])
            self._cancel_requested = False
            self._snapshot = snap
            self.engine.start(snap.job(targets, settings),
                              Callbacks(self._bridge.progress.emit, self._bridge.done.emit, self._bridge.hello.emit))
        except (DocumentError, TargetError, EngineError) as exc:
            self._snapshot = None
            self._refuse(str(exc))
            return False
        except Exception as exc:  # Krita's API refused something: a sentence, never a silent dead button
            self._snapshot = None
            self._refuse(f"Could not start the dream: {type(exc).__name__}: {exc}")
            return False
        self._set_running(True)
        r = snap.rect
        self.set_status(f"Dreaming {r.width}×{r.height} px…")
        return True

    def cancel(self) -> None:
        """Stop the dream; the document stays exactly as it was (no layer is added, even if a result arrives)."""
        if not self.running:
            return
        self._cancel_requested = True
        self.cancel_button.setEnabled(False)
        self.set_status("Cancelling…")
        self.engine.cancel()

    def _refuse(self, message: str) -> None:
        self.set_status(message)
        self.finished.emit("error", message)

    def _set_running(self, running: bool) -> None:
        self.dream_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress_bar.setValue(0)

    def _on_progress(self, fraction: float, message: str) -> None:
        if not self.running or self._cancel_requested:
            return
        self.progress_bar.setValue(int(max(0.0, min(1.0, fraction)) * 1000))
        if message:
            self.set_status(message[:1].upper() + message[1:])

    def _on_hello(self, info: Any) -> None:
        models = info.get("models") if isinstance(info, dict) else None
        if isinstance(models, list) and models:
            current = self.model_combo.currentText()
            for d in dockers():
                d.model_combo.blockSignals(True)
                d.model_combo.clear()
                for name in models:
                    d.model_combo.addItem(str(name))
                d.model_combo.setCurrentIndex(max(0, d.model_combo.findText(current)))
                d.model_combo.blockSignals(False)

    def _on_done(self, pixels: Optional[bytes], code: Optional[str], message: str) -> None:
        snap, self._snapshot = self._snapshot, None
        self._set_running(False)
        if snap is None:
            return
        if self._cancel_requested or code == protocol.CANCELLED:
            self.progress_bar.setValue(0)
            self._finish("cancelled", "Cancelled: the document was not changed.")
            return
        if code is not None or pixels is None:
            self.progress_bar.setValue(0)
            self._finish("error", message or "The engine failed without saying why.")
            return
        try:
            if not _is_open(snap.doc):
                raise DocumentError("The document was closed while dreaming, so the dream was not added.")
            self.last_layer = write_result(snap, pixels, self._name)
        except DocumentError as exc:
            self.progress_bar.setValue(0)
            self._finish("error", str(exc))
            return
        except Exception as exc:  # Krita refused something unexpected: say it, never leave a half state silently
            self.progress_bar.setValue(0)
            self._finish("error", f"Could not add the dream layer: {type(exc).__name__}: {exc}")
            return
        self.progress_bar.setValue(1000)
        r = snap.rect
        self._finish("done", f'Done: "{self._name}" added above the '
                             f'{"image" if snap.visible else "layer"} ({r.width}×{r.height} px).')

    def _finish(self, outcome: str, message: str) -> None:
        self.set_status(message)
        self.finished.emit(outcome, message)


def _is_open(doc: Any) -> bool:
    try:
        return any(d == doc for d in Krita.instance().documents())
    except Exception:
        return True   # cannot tell: write_result's own checks still guard the layer


def _spin(low: int, high: int, value: int, tip: str) -> QtWidgets.QSpinBox:
    spin = QtWidgets.QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def _dspin(low: float, high: float, value: float, step: float, tip: str) -> QtWidgets.QDoubleSpinBox:
    spin = QtWidgets.QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setDecimals(2)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin
