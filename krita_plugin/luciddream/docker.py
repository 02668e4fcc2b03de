"""The "Lucid Dream" docker: widgets bound to the session (session.py), nothing else.

Every control writes its value into the session and redraws itself from the session's signals, so several dockers
(one per Krita window) and the menu action all show and use the same targets and settings. The choices offered
(presets, models, value ranges) are the engine's offer, as the session holds it.
"""
from __future__ import annotations

import os
from typing import Any, Callable, List, Optional

from krita import DockWidget, Krita

from . import controls, kit
from .document import GUIDE_SIDE, GuidePixels
from .engine import Engine
from .looks import LooksPage   # the look browser (issue 18): a grid of what each layer and channel dreams
from .qt import GuiCalls, Qt, QtGui, QtWidgets
from .session import WIDGET_SEED_MAX, Guide, Session, Signal
from .targets import Choice, class_choice, classes, search

DOCKER_ID = "luciddream_docker"
NO_TARGETS = "Nothing listed: the classic puppyslug look."
FILE_ITEM = "\x00file"   # the guide list's "Picture file…" entry

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
        self._bind(s.preview_ready, self._show_preview)
        self._bind(s.guide_changed, self._show_guide)
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
        self.looks_page = LooksPage(self.session)
        self.looks_page.setVisible(False)
        self.looks_button = QtWidgets.QPushButton("Looks…")
        self.looks_button.setCheckable(True)
        self.looks_button.toggled.connect(self.looks_page.setVisible)
        box.addWidget(self.looks_button)
        box.addWidget(self.looks_page)

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

        labels, tips = controls.LABELS, controls.TIPS
        guide = QtWidgets.QHBoxLayout()
        self.guide_combo = _GuideCombo(self._fill_guides)
        self.guide_combo.setToolTip(tips["guide"])
        self.guide_combo.addItem("None", None)
        self.guide_combo.activated.connect(self._on_guide)
        guide.addWidget(QtWidgets.QLabel(labels["guide"]))
        guide.addWidget(self.guide_combo, 1)
        box.addLayout(guide)

        form = QtWidgets.QFormLayout()
        self.source_combo = QtWidgets.QComboBox()
        self.source_combo.addItem("Active layer", False)
        self.source_combo.addItem("Visible image", True)
        self.source_combo.currentIndexChanged.connect(
            lambda _i: self._set(visible=bool(self.source_combo.currentData())))
        self.step_size_spin = _dspin(0.1, "")
        self.step_size_spin.valueChanged.connect(lambda v: self._set(step_size=round(float(v), 3)))
        self.octaves_spin = _spin("")
        self.octaves_spin.valueChanged.connect(lambda v: self._set(octaves=int(v)))
        self.look_combo = QtWidgets.QComboBox()
        self.look_combo.currentIndexChanged.connect(
            lambda _i: self.look_combo.currentData() and self._set(look=str(self.look_combo.currentData())))
        self.instance_spin = _spin("")
        self.instance_spin.setSuffix(" px")
        self.instance_spin.setSpecialValueText("auto")  # 0: the engine sizes it from the selection
        self.instance_spin.valueChanged.connect(lambda v: self._set(instance=int(v)))
        self.class_strength_spin = _dspin(0.05, "")
        self.class_strength_spin.valueChanged.connect(lambda v: self._set(class_strength=round(float(v), 3)))
        self.feather_spin = _spin("")
        self.feather_spin.setSuffix(" px")
        self.feather_spin.valueChanged.connect(lambda v: self._set(feather=float(v)))
        seed = QtWidgets.QHBoxLayout()
        self.seed_spin = _spin("")
        self.seed_spin.valueChanged.connect(lambda v: self._set(seed=int(v)))
        self.dice_button = QtWidgets.QToolButton()
        self.dice_button.setText("Roll")
        self.dice_button.setToolTip("A new random seed: the same settings, another dream.")
        self.dice_button.clicked.connect(self.roll_seed)
        seed.addWidget(self.seed_spin, 1)
        seed.addWidget(self.dice_button)
        for name, widget in (("visible", self.source_combo), ("step_size", self.step_size_spin),
                             ("octaves", self.octaves_spin), ("look", self.look_combo),
                             ("instance", self.instance_spin), ("class_strength", self.class_strength_spin),
                             ("feather", self.feather_spin), ("seed", seed)):
            self._row(form, name, widget)
        box.addLayout(form)

        self.advanced_button = QtWidgets.QToolButton()
        self.advanced_button.setText("Advanced")
        self.advanced_button.setCheckable(True)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_button.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_button.setToolTip("Technical settings: steps, size step, memory tile, network.")
        self.advanced_button.toggled.connect(self._on_advanced)
        box.addWidget(self.advanced_button)
        self.advanced_box = QtWidgets.QWidget()
        fold = QtWidgets.QFormLayout(self.advanced_box)
        fold.setContentsMargins(12, 0, 0, 0)
        self.steps_spin = _spin("")
        self.steps_spin.setSpecialValueText("auto")  # shown at the minimum, 0: the engine picks per look
        self.steps_spin.valueChanged.connect(lambda v: self._set(steps=int(v)))
        self.detail_spin = _dspin(0.05, "")
        self.detail_spin.valueChanged.connect(lambda v: self._set(octave_scale=round(float(v), 3)))
        self.tile_spin = _spin("")
        self.tile_spin.setSingleStep(64)
        self.tile_spin.setSuffix(" px")
        self.tile_spin.setSpecialValueText("auto")  # 0: the engine picks the tile from the free memory
        self.tile_spin.valueChanged.connect(lambda v: self._set(tile=int(v)))
        self.model_combo = QtWidgets.QComboBox()
        self.model_combo.currentIndexChanged.connect(
            lambda _i: self.model_combo.currentData() and self._set(model=str(self.model_combo.currentData())))
        for name, widget in (("steps", self.steps_spin), ("octave_scale", self.detail_spin),
                             ("tile", self.tile_spin), ("model", self.model_combo)):
            self._row(fold, name, widget)
        self.advanced_box.setVisible(False)
        box.addWidget(self.advanced_box)

        row = QtWidgets.QHBoxLayout()
        self.preview_button = self._button("luciddream_preview", "Preview")
        self.preview_button.clicked.connect(self.preview)
        self.dream_button = self._button("luciddream_dream_selection", "Dream")
        self.dream_button.clicked.connect(self.dream)
        self.cancel_button = self._button("luciddream_cancel", "Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.preview_button)
        row.addWidget(self.dream_button, 1)
        row.addWidget(self.cancel_button)
        box.addLayout(row)
        row = QtWidgets.QHBoxLayout()
        self.variations_button = self._button("luciddream_variations", "Variations")
        self.variations_button.clicked.connect(self.variations)
        self.variations_spin = _spin(tips["variations"])
        self.variations_spin.setRange(2, kit.MAX_VARIATIONS)
        self.variations_spin.setPrefix("× ")
        self.variations_spin.valueChanged.connect(lambda v: self._set(variations=int(v)))
        self.again_button = self._button("luciddream_again", "Again")
        self.again_button.clicked.connect(self.again)
        self.again_new_button = self._button("luciddream_again_new_seed", "Again, new seed")
        self.again_new_button.clicked.connect(self.again_new_seed)
        row.addWidget(self.variations_button)
        row.addWidget(self.variations_spin)
        row.addWidget(self.again_button)
        row.addWidget(self.again_new_button)
        box.addLayout(row)
        row = QtWidgets.QHBoxLayout()
        self.full_after_check = QtWidgets.QCheckBox("Full dream after the preview")
        self.full_after_check.setToolTip("When a quick preview is done, start the full dream by itself.")
        self.full_after_check.toggled.connect(lambda on: self._set(full_after_preview=bool(on)))
        self.test_button = self._button("luciddream_test_engine", "Test engine")
        self.test_button.clicked.connect(self.test_engine)
        row.addWidget(self.full_after_check, 1)
        row.addWidget(self.test_button)
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
        self.preview_label = QtWidgets.QLabel()
        self.preview_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview_label.setToolTip("The quick preview: the selection dreamed small. The image is not changed.")
        self.preview_label.setVisible(False)
        box.addWidget(self.preview_label)
        box.addStretch(1)
        self.setWidget(root)
        self._settings_widgets = [self.source_combo, self.model_combo, self.steps_spin, self.step_size_spin,
                                  self.octaves_spin, self.detail_spin, self.tile_spin, self.feather_spin,
                                  self.seed_spin, self.preset_combo, self.look_combo, self.instance_spin,
                                  self.class_strength_spin, self.variations_spin, self.full_after_check,
                                  self.advanced_button]

    def _row(self, form: Any, name: str, widget: Any) -> None:
        """One labelled control; its tooltip (what it changes in the picture) on the label and the control."""
        label = QtWidgets.QLabel(controls.LABELS[name])
        label.setToolTip(controls.TIPS[name])
        if isinstance(widget, QtWidgets.QWidget):
            widget.setToolTip(controls.TIPS[name])
        form.addRow(label, widget)

    def _button(self, action_id: str, text: str) -> Any:
        """A push button whose tooltip is its Krita action's (the same words, and the shortcut, if bound)."""
        button = QtWidgets.QPushButton(text)
        tip = {a[0]: a[2] for a in controls.ACTIONS}[action_id]
        try:
            action = Krita.instance().action(action_id)
            shortcut = action.shortcut().toString() if action is not None else ""
        except Exception:
            shortcut = ""
        button.setToolTip(tip + (f" ({shortcut})" if shortcut else ""))
        return button

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
            self.variations_spin.setValue(values.variations)
            self.full_after_check.setChecked(values.full_after_preview)
            self.advanced_button.setChecked(values.advanced)
        self._fold(values.advanced)

    def _fold(self, open_: bool) -> None:
        self.advanced_box.setVisible(open_)
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if open_ else Qt.ArrowType.RightArrow)

    def _on_advanced(self, open_: bool) -> None:
        self._fold(open_)
        self._set(advanced=bool(open_))

    def _show_preview(self, preview: Any) -> None:
        """The finished preview, scaled to the docker's width (never into the image: no layer, no undo step)."""
        image = QtGui.QImage(preview.rgba, preview.width, preview.height, preview.width * 4,
                             QtGui.QImage.Format.Format_RGBA8888).copy()   # copy: the bytes are not kept
        width = max(64, min(self.preview_label.width() or 256, 320))
        pixmap = QtGui.QPixmap.fromImage(image)
        if pixmap.width() < width:
            pixmap = pixmap.scaledToWidth(width, Qt.TransformationMode.SmoothTransformation)
        self.preview_label.setPixmap(pixmap)
        self.preview_label.setVisible(True)

    def _show_guide(self) -> None:
        guide = self.session.guide
        with _quiet(self.guide_combo):
            if guide is None:
                self.guide_combo.setCurrentIndex(0)
                return
            index = self.guide_combo.findData(guide.key)
            if index < 0:
                self.guide_combo.addItem(guide.name, guide.key)
                index = self.guide_combo.count() - 1
            self.guide_combo.setCurrentIndex(index)

    def _fill_guides(self) -> None:
        """The guide list, read when it opens: None, every layer of the active image, a picture file…"""
        combo = self.guide_combo
        chosen = self.session.guide
        with _quiet(combo):
            combo.clear()
            combo.addItem("None", None)
            for key, name in self.session.guide_layers():
                combo.addItem(name, key)
            if chosen is not None and chosen.kind == "file":
                combo.addItem(chosen.name, chosen.key)
            combo.addItem("Picture file…", FILE_ITEM)
        self._show_guide()

    def _on_guide(self, index: int) -> None:
        key = self.guide_combo.itemData(index)
        if key is None:
            self.session.set_guide(None)
        elif key == FILE_ITEM:
            self.choose_guide_file()
        elif os.path.isabs(str(key)):
            pass   # the file chosen before: kept
        else:
            name = self.guide_combo.itemText(index).strip()
            self.session.set_guide(Guide("layer", str(key), name))
        self._show_guide()

    def choose_guide_file(self, path: Optional[str] = None) -> bool:
        """A picture file as the guide (any format Qt reads), read now into 8-bit RGBA."""
        if path is None:
            path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Guide picture", "",
                                                            "Pictures (*.png *.jpg *.jpeg *.webp *.tif *.tiff "
                                                            "*.bmp);;All files (*)")
            if not path:
                return False
        image = QtGui.QImage(path)
        if image.isNull():
            self.session.set_status(f"The guide picture {path} cannot be read: choose a PNG, JPEG, TIFF or WebP "
                                    f"file.")
            return False
        side = max(image.width(), image.height())
        if side > GUIDE_SIDE:
            image = image.scaled(GUIDE_SIDE, GUIDE_SIDE, Qt.AspectRatioMode.KeepAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation)
        image = image.convertToFormat(QtGui.QImage.Format.Format_RGBA8888)
        w, h = image.width(), image.height()
        bits = image.constBits()
        bits.setsize(image.sizeInBytes()) if hasattr(bits, "setsize") else None
        raw = bytes(bits)
        stride = image.bytesPerLine()
        data = b"".join(raw[y * stride:y * stride + w * 4] for y in range(h))
        self.session.set_guide(Guide("file", path, os.path.basename(path), GuidePixels(data, w, h, 4, "u8")))
        return True

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
        running = self.session.running and not self.session.previewing   # a preview gives way to any button
        for button in (self.dream_button, self.variations_button, self.again_button, self.again_new_button,
                       self.test_button):
            button.setEnabled(not running)
        self.cancel_button.setEnabled(self.session.running and not self.session.cancelling)

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

    def preview(self) -> bool:
        return self.session.preview()

    def variations(self) -> bool:
        return self.session.variations()

    def again(self) -> bool:
        return self.session.again()

    def again_new_seed(self) -> bool:
        return self.session.again(new_seed=True)

    def test_engine(self) -> bool:
        return self.session.test_engine()


class _GuideCombo(QtWidgets.QComboBox):
    """The guide list, filled when it opens, so it always lists the active image's layers as they are now."""

    def __init__(self, fill: Callable[[], None]) -> None:
        super().__init__()
        self._fill = fill

    def showPopup(self) -> None:
        try:
            self._fill()
        except Exception:   # a list that cannot be read must not stop the popup
            pass
        super().showPopup()


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
