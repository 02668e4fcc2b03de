"""The "Lucid Dream" docker: widgets bound to the session (session.py), nothing else.

Every control writes its value into the session and redraws itself from the session's signals, so several dockers
(one per Krita window) and the menu action all show and use the same targets and settings. The choices offered
(presets, models, value ranges) are the engine's offer, as the session holds it.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional

from krita import DockWidget, Krita

from . import kit
from .engine import Engine
from .qt import GuiCalls, Qt, QtWidgets
from .session import WIDGET_SEED_MAX, Session, Signal
from .targets import Choice, class_choice, classes, search

DOCKER_ID = "luciddream_docker"
NO_TARGETS = "Nothing listed: the classic puppyslug look."

_session: Optional[Session] = None
_gui_calls: Optional[GuiCalls] = None
_dockers: List["LucidDreamDocker"] = []


def shared_session() -> Session:
    """One session for the whole Krita process: loading the model is the slow part, so every docker shares the
    worker, and the settings are one set."""
    global _session, _gui_calls
    if _session is None:
        _gui_calls = GuiCalls()   # made here, in the GUI thread, so the calls it is handed run there
        _session = Session(Krita.instance(), Engine(), _gui_calls.post)
    return _session


def shutdown() -> None:
    """Krita is closing: end the worker (it would also notice its parent is gone, but this is immediate)."""
    if _session is not None:
        _session.close()


def dockers() -> List["LucidDreamDocker"]:
    """Every Lucid Dream docker that exists (one per Krita window), for the menu action and tests."""
    alive = [d for d in _dockers if _alive(d)]
    _dockers[:] = alive
    return list(alive)


class LucidDreamDocker(DockWidget):
    """Settings › Dockers › Lucid Dream."""

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Lucid Dream")
        self.setObjectName(DOCKER_ID)
        self.session = shared_session()
        self._build()
        self._bindings: List[tuple] = []
        s = self.session
        self._bind(s.offer_changed, self._show_offer)
        self._bind(s.settings_changed, self._show_settings)
        self._bind(s.targets_changed, self._show_targets)
        self._bind(s.status_changed, self.status_label.setText)
        self._bind(s.progress_changed, lambda fraction: self.progress_bar.setValue(int(fraction * 1000)))
        self._bind(s.running_changed, lambda _running: self._show_running())
        bindings = self._bindings
        self.destroyed.connect(lambda *_: [signal.disconnect(slot) for signal, slot in bindings])
        self._show_offer()
        self._show_settings()
        self._show_targets()
        self._show_running()
        self.status_label.setText(s.status)
        self.progress_bar.setValue(int(s.fraction * 1000))
        _dockers.append(self)

    def _bind(self, signal: Signal, slot: Callable[..., None]) -> None:
        def guarded(*args: Any) -> None:
            if _alive(self):
                slot(*args)
        signal.connect(guarded)
        self._bindings.append((signal, guarded))

    # ------------------------------------------------------------------------------------------------- widgets

    def _build(self) -> None:
        root = QtWidgets.QWidget(self)
        box = QtWidgets.QVBoxLayout(root)
        box.setContentsMargins(4, 4, 4, 4)

        self.search_edit = QtWidgets.QLineEdit()
        self.search_edit.setPlaceholderText("Search ImageNet classes: goldfish, peacock…")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.textChanged.connect(self._on_search)
        self.search_edit.returnPressed.connect(self.add_selected_class)
        self.results = QtWidgets.QListWidget()
        self.results.setMaximumHeight(96)
        self.results.itemDoubleClicked.connect(lambda _item: self.add_selected_class())
        add_class = QtWidgets.QPushButton("Add class")
        add_class.clicked.connect(self.add_selected_class)
        box.addWidget(self.search_edit)
        box.addWidget(self.results)

        row = QtWidgets.QHBoxLayout()
        self.preset_combo = QtWidgets.QComboBox()
        self.preset_combo.setToolTip("Dream a network layer instead of a class: the classic DeepDream looks.")
        self.preset_combo.currentIndexChanged.connect(
            lambda _i: self._set(preset=str(self.preset_combo.currentData() or "")))
        add_preset = QtWidgets.QPushButton("Add look")
        add_preset.clicked.connect(self.add_preset)
        row.addWidget(add_class)
        row.addWidget(self.preset_combo, 1)
        row.addWidget(add_preset)
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
        self.targets_hint = QtWidgets.QLabel(NO_TARGETS)
        self.targets_hint.setWordWrap(True)
        remove = QtWidgets.QPushButton("Remove")
        remove.clicked.connect(self.remove_selected_targets)
        row.addWidget(self.targets_hint, 1)
        row.addWidget(remove)
        box.addLayout(row)

        labels = kit.LABELS
        form = QtWidgets.QFormLayout()
        self.source_combo = QtWidgets.QComboBox()
        self.source_combo.addItem("Active layer", False)
        self.source_combo.addItem("Visible image", True)
        self.source_combo.currentIndexChanged.connect(
            lambda _i: self._set(visible=bool(self.source_combo.currentData())))
        form.addRow("Source", self.source_combo)
        self.model_combo = QtWidgets.QComboBox()
        self.model_combo.currentIndexChanged.connect(
            lambda _i: self.model_combo.currentData() and self._set(model=str(self.model_combo.currentData())))
        form.addRow(labels["model"], self.model_combo)
        strength = QtWidgets.QHBoxLayout()
        self.steps_spin = _spin("Steps per octave: more steps, stronger dream; auto: each look's own.")
        self.steps_spin.setSpecialValueText("auto")  # shown at the minimum, 0: the engine picks per look
        self.steps_spin.valueChanged.connect(lambda v: self._set(steps=int(v)))
        self.step_size_spin = _dspin(0.1, "Change per step in 8-bit levels: higher is bolder.")
        self.step_size_spin.valueChanged.connect(lambda v: self._set(step_size=round(float(v), 3)))
        strength.addWidget(QtWidgets.QLabel("steps"))
        strength.addWidget(self.steps_spin)
        strength.addWidget(QtWidgets.QLabel("× size"))
        strength.addWidget(self.step_size_spin)
        form.addRow(labels["step_size"], strength)
        self.look_combo = QtWidgets.QComboBox()
        self.look_combo.setToolTip("Class targets alone: grow instances out of the photo, or one picture of the "
                                   "class.")
        self.look_combo.currentIndexChanged.connect(
            lambda _i: self.look_combo.currentData() and self._set(look=str(self.look_combo.currentData())))
        form.addRow(labels["look"], self.look_combo)
        self.instance_spin = _spin("Class looks: the size of one instance of the class, in image pixels.")
        self.instance_spin.setSuffix(" px")
        self.instance_spin.valueChanged.connect(lambda v: self._set(instance=int(v)))
        form.addRow(labels["instance"], self.instance_spin)
        self.class_strength_spin = _dspin(0.05, "Grow look: how far the photo may change (0 = untouched, "
                                          "1 = replaced).")
        self.class_strength_spin.valueChanged.connect(lambda v: self._set(class_strength=round(float(v), 3)))
        form.addRow(labels["class_strength"], self.class_strength_spin)
        self.octaves_spin = _spin("Scales to dream at: more octaves grow larger structures.")
        self.octaves_spin.valueChanged.connect(lambda v: self._set(octaves=int(v)))
        form.addRow(labels["octaves"], self.octaves_spin)
        self.detail_spin = _dspin(0.05, "Growth between octaves: larger values dream larger shapes.")
        self.detail_spin.valueChanged.connect(lambda v: self._set(octave_scale=round(float(v), 3)))
        form.addRow(labels["octave_scale"], self.detail_spin)
        self.tile_spin = _spin("Largest window the network sees at once: smaller uses less memory.")
        self.tile_spin.setSingleStep(64)
        self.tile_spin.setSuffix(" px")
        self.tile_spin.setSpecialValueText("auto")  # 0: the engine picks the tile from the free memory
        self.tile_spin.valueChanged.connect(lambda v: self._set(tile=int(v)))
        form.addRow(labels["tile"], self.tile_spin)
        self.feather_spin = _spin("Fade the dream in over this many pixels inside the selection.")
        self.feather_spin.valueChanged.connect(lambda v: self._set(feather=float(v)))
        form.addRow(labels["feather"], self.feather_spin)
        seed = QtWidgets.QHBoxLayout()
        self.seed_spin = _spin("Same seed, same dream.")
        self.seed_spin.valueChanged.connect(lambda v: self._set(seed=int(v)))
        self.dice_button = QtWidgets.QToolButton()
        self.dice_button.setText("Roll")
        self.dice_button.setToolTip("Roll a new random seed")
        self.dice_button.clicked.connect(self.roll_seed)
        seed.addWidget(self.seed_spin, 1)
        seed.addWidget(self.dice_button)
        form.addRow(labels["seed"], seed)
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
        self.status_label = QtWidgets.QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.addWidget(self.status_label)
        box.addStretch(1)
        self.setWidget(root)
        self._settings_widgets = [self.source_combo, self.model_combo, self.steps_spin, self.step_size_spin,
                                  self.octaves_spin, self.detail_spin, self.tile_spin, self.feather_spin,
                                  self.seed_spin, self.preset_combo, self.look_combo, self.instance_spin,
                                  self.class_strength_spin]

    def canvasChanged(self, canvas: Any) -> None:  # required by DockWidget; the active document is read on Dream
        pass

    # ------------------------------------------------------------------------------- the session into the widgets

    def _show_offer(self) -> None:
        """Presets, models and ranges from the engine's offer."""
        offer = self.session.offer
        for widget in self._settings_widgets:
            widget.setEnabled(offer is not None)
        if offer is None:
            return
        with _quiet(self.preset_combo, self.model_combo, self.steps_spin, self.step_size_spin, self.octaves_spin,
                    self.detail_spin, self.tile_spin, self.feather_spin, self.seed_spin, self.look_combo,
                    self.instance_spin, self.class_strength_spin):
            self.preset_combo.clear()
            for preset in offer.presets:
                self.preset_combo.addItem(preset.label, preset.name)
            self.model_combo.clear()
            for name in offer.models:
                self.model_combo.addItem(name, name)
                self.model_combo.setItemData(self.model_combo.count() - 1, offer.model_titles.get(name, name),
                                             Qt.ItemDataRole.ToolTipRole)
            for spin, name in ((self.steps_spin, "steps"), (self.octaves_spin, "octaves"),
                               (self.tile_spin, "tile"), (self.step_size_spin, "step_size"),
                               (self.detail_spin, "octave_scale"), (self.instance_spin, "instance"),
                               (self.class_strength_spin, "class_strength")):
                low, high = offer.range(name)
                spin.setRange(low, high)
            self.look_combo.clear()
            for name in offer.looks:
                self.look_combo.addItem(kit.LOOK_LABELS.get(name, name), name)
            low, high = offer.range("feather")
            self.feather_spin.setRange(int(low), int(high))
            low, high = offer.range("seed")
            self.seed_spin.setRange(int(low), min(int(high), WIDGET_SEED_MAX))
        self._show_settings()

    def _show_settings(self) -> None:
        values = self.session.settings
        if values is None:
            return
        with _quiet(*self._settings_widgets):
            self.source_combo.setCurrentIndex(max(0, self.source_combo.findData(values.visible)))
            self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(values.model)))
            self.preset_combo.setCurrentIndex(max(0, self.preset_combo.findData(values.preset)))
            self.steps_spin.setValue(values.steps)
            self.step_size_spin.setValue(values.step_size)
            self.octaves_spin.setValue(values.octaves)
            self.detail_spin.setValue(values.octave_scale)
            self.tile_spin.setValue(values.tile)
            self.feather_spin.setValue(int(round(values.feather)))
            self.seed_spin.setValue(values.seed)
            self.look_combo.setCurrentIndex(max(0, self.look_combo.findData(values.look)))
            self.instance_spin.setValue(values.instance)
            self.class_strength_spin.setValue(values.class_strength)

    def _show_targets(self) -> None:
        """The target list; weights are updated in place so a spin box being edited keeps its focus."""
        chosen = self.session.targets
        table = self.target_table
        keys = [table.item(row, 0).data(Qt.ItemDataRole.UserRole) for row in range(table.rowCount())]
        if [tuple(k) for k in keys] != [(c.kind, c.key) for c in chosen]:
            table.setRowCount(0)
            for c in chosen:
                self._add_row(c)
        for row, c in enumerate(chosen):
            spin = table.cellWidget(row, 1)
            if spin.value() != c.weight:
                with _quiet(spin):
                    spin.setValue(c.weight)
        n = len(chosen)
        self.targets_hint.setText(NO_TARGETS if n == 0 else f"{n} target{'s' if n > 1 else ''}: weights mix them.")

    def _add_row(self, choice: Choice) -> None:
        table = self.target_table
        row = table.rowCount()
        table.insertRow(row)
        item = QtWidgets.QTableWidgetItem(choice.label if choice.kind == "class" else f"layer {choice.label}")
        key = (choice.kind, choice.key)
        item.setData(Qt.ItemDataRole.UserRole, key)
        table.setItem(row, 0, item)
        weight = _dspin(0.1, "How strongly this target pulls (negative: away).")
        weight.setRange(-10.0, 10.0)
        weight.setValue(choice.weight)
        weight.valueChanged.connect(lambda v: self.session.set_weight(key, float(v)))
        table.setCellWidget(row, 1, weight)

    def _show_running(self) -> None:
        running = self.session.running
        self.dream_button.setEnabled(not running)
        self.cancel_button.setEnabled(running and not self.session.cancelling)

    # ---------------------------------------------------------------------------- the widgets into the session

    def _set(self, **changes: Any) -> None:
        self.session.update(**changes)

    def _on_search(self, text: str) -> None:
        self.results.clear()
        try:
            found = search(text, limit=40)
        except kit.UserError as exc:
            self.session.set_status(str(exc))
            return
        for c in found:
            item = QtWidgets.QListWidgetItem(f"{c.label}  #{c.index}")
            item.setData(Qt.ItemDataRole.UserRole, c.index)
            if c.synonyms:
                item.setToolTip(", ".join(c.synonyms))
            self.results.addItem(item)
        if found:
            self.results.setCurrentRow(0)

    def add_selected_class(self) -> None:
        item = self.results.currentItem()
        if item is None:
            if self.search_edit.text().strip():
                self.session.set_status(f'No ImageNet class matches "{self.search_edit.text().strip()}".')
            return
        self._select_row(self.session.add_target(class_choice(classes()[int(item.data(Qt.ItemDataRole.UserRole))])))

    def add_preset(self) -> None:
        """Add the look chosen in the preset list."""
        name = self.preset_combo.currentData()
        if not name:
            return
        try:
            self._select_row(self.session.add_preset(str(name)))
        except kit.UserError as exc:
            self.session.set_status(str(exc))

    def _select_row(self, row: int) -> None:
        self.target_table.selectRow(row)

    def remove_selected_targets(self) -> None:
        self.session.remove_targets(sorted({i.row() for i in self.target_table.selectedIndexes()}))

    def clear_targets(self) -> None:
        self.session.clear_targets()

    def roll_seed(self) -> None:
        self.session.roll_seed()

    def dream(self) -> bool:
        """Dream in the active document; False (and a sentence in the status line) when it cannot start."""
        return self.session.dream()

    def cancel(self) -> None:
        self.session.cancel()


def _alive(widget: Any) -> bool:
    try:
        widget.objectName()
    except RuntimeError:   # its C++ side was deleted with its window
        return False
    return True


class _quiet:
    """Block the widgets' signals while the session's values are shown, so showing them does not write back."""

    def __init__(self, *widgets: Any) -> None:
        self.widgets = widgets

    def __enter__(self) -> None:
        self.before = [w.blockSignals(True) for w in self.widgets]

    def __exit__(self, *exc: Any) -> None:
        for w, was in zip(self.widgets, self.before):
            w.blockSignals(was)


def _spin(tip: str) -> QtWidgets.QSpinBox:
    spin = QtWidgets.QSpinBox()
    spin.setToolTip(tip)
    return spin


def _dspin(step: float, tip: str) -> QtWidgets.QDoubleSpinBox:
    spin = QtWidgets.QDoubleSpinBox()
    spin.setDecimals(2)
    spin.setSingleStep(step)
    spin.setToolTip(tip)
    return spin
