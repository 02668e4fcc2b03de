"""Scenarios run inside real Krita against the real Lucid Dream docker and engine worker.

Default order: registration (and the presets the docker lists) → refused colour model (CMYK) → cancel mid-dream →
dream through the menu action → a click in the Layers docker → screenshot → quit; OUT/scenario.json's "steps" names
others (tests/host_fixtures.py runs these, the look browser's and the loop's in one launch). The settings steps set
values through the docker (persist_set, last before quitting) and read them back in the next launch (persist_read).
Results go to OUT/report.json plus raw pixel dumps (*.bin, Krita's BGRA bytes) and PNG exports, which
tests/test_krita_host.py checks. Geometry and settings come from OUT/scenario.json when present.
"""
import dataclasses
import json
import math
import os
import time
import traceback

from krita import Extension, InfoObject, Krita, Selection

try:
    from PyQt5.QtCore import QTimer
    from PyQt5.QtWidgets import QApplication
except ImportError:  # Krita 6
    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication

DEFAULTS = {"steps": None, "width": 128, "height": 96, "selection": [40, 24, 64, 48], "timeout_s": 240,
            "dream": {"steps": 2, "step_size": 4.0, "octaves": 2, "tile": 128, "seed": 7,
                      "classes": ["goldfish"], "layer_weight": 0.5},
            "cancel": {"steps": 200, "octaves": 1, "tile": 128},
            "persist": {"steps": 37, "step_size": 2.25, "octaves": 5, "octave_scale": 1.75, "tile": 320,
                        "feather": 9, "seed": 4242, "visible": True, "model": "lite1", "preset": "eyes"}}


def pattern(w, h):
    """A smooth, textured RGBA U8 picture in Krita's B,G,R,A byte order (something for the network to see)."""
    out = bytearray()
    for y in range(h):
        for x in range(w):
            r = int(127 + 100 * math.sin(x / 9.0) * math.cos(y / 13.0))
            g = (x * 2 + y) % 256
            b = int(127 + 120 * math.sin((x + y) / 17.0))
            out += bytes((b, g, r, 255))
    return bytes(out)


def _bound(step, driver):
    """A loop step as a method of the driver (next() reads its __name__)."""
    def run():
        return step(driver)
    run.__name__ = step.__name__
    return run


class DriverExtension(Extension):
    def __init__(self, parent, out):
        super().__init__(parent)
        self.out = out
        self.report = {"ok": False, "steps": []}
        self.t0 = time.time()
        self.spec = dict(DEFAULTS)
        path = os.path.join(out, "scenario.json")
        if os.path.exists(path):
            with open(path) as f:
                self.spec.update(json.load(f))
        self.queue = []
        self.docker = None
        self.window = None
        self.finished_quit = False

    # ------------------------------------------------------------------------------------------ plumbing

    def setup(self):
        notifier = Krita.instance().notifier()
        notifier.setActive(True)
        notifier.windowCreated.connect(self._started)

    def createActions(self, window):
        pass

    def log(self, text):
        with open(os.path.join(self.out, "driver.log"), "a", encoding="utf-8") as f:
            f.write("%.2f %s\n" % (time.time() - self.t0, text))

    def _started(self):
        self.log("window created")
        QTimer.singleShot(int(self.spec["timeout_s"] * 1000), self._watchdog)
        names = self.spec.get("steps")
        if names is None:
            names = ["check_registration", "scenario_refused", "scenario_cancel", "scenario_dream",
                     "scenario_click_layer", "screenshot"]
        from . import loop   # the artist's loop steps (issue 17) live there, each a function of this driver
        from . import click_steps  # noqa: F401  (a click in the Layers docker, then Dream: joins loop.STEPS)
        from . import looks_steps  # noqa: F401  (the look browser's steps, issue 18, join loop.STEPS)
        self.queue = [getattr(self, n) if hasattr(self, n) else _bound(loop.STEPS[n], self) for n in names]
        QTimer.singleShot(500, self.next)

    def next(self):
        """Run the next step; a step that waits for the docker calls next() itself when it is done."""
        if not self.queue:
            self.report["ok"] = True
            self.quit()
            return
        step = self.queue.pop(0)
        self.log("step " + step.__name__)
        self.report["steps"].append(step.__name__)
        try:
            if step() != "wait":
                QTimer.singleShot(0, self.next)
        except Exception:
            self.failed()

    def failed(self):
        self.report["error"] = traceback.format_exc()
        self.log(self.report["error"])
        self.quit()

    def later(self, call, *args, ms=0):
        """`call(*args)` from the event loop, after this handler returns; an exception ends the run as in next()."""
        def run():
            try:
                call(*args)
            except Exception:
                self.failed()
        QTimer.singleShot(ms, run)

    def _watchdog(self):
        if not self.finished_quit:
            try:
                app = QApplication.instance()
                app.primaryScreen().grabWindow(0).save(os.path.join(self.out, "watchdog.png"))
                modal = app.activeModalWidget()
                self.report["watchdog_modal"] = None if modal is None else [type(modal).__name__,
                                                                              modal.windowTitle()]
                self.report["watchdog_status"] = self.docker.status_label.text() if self.docker else None
            except Exception:
                pass
            self.report["error"] = "watchdog: the scenarios did not finish in time"
            self.quit()

    def quit(self):
        if self.finished_quit:
            return
        self.finished_quit = True
        self.report["elapsed_s"] = round(time.time() - self.t0, 2)
        try:   # the worker's pid, so the test can check that it ends with Krita
            import luciddream.docker as product
            client = product._session.engine._client if product._session is not None else None
            self.report["worker_pid"] = client._t.proc.pid if client is not None else None
        except Exception:
            self.report["worker_pid"] = None
        with open(os.path.join(self.out, "report.json"), "w") as f:
            json.dump(self.report, f, indent=1)
        self.log("report written")
        try:   # closing documents that have views crashes Krita 5.1; unmodified ones just go with the window
            for doc in Krita.instance().documents():
                doc.setModified(False)
        except Exception:
            self.log("close failed " + traceback.format_exc())
        Krita.instance().action("file_quit").trigger()

    def dump(self, name, data):
        with open(os.path.join(self.out, name), "wb") as f:
            f.write(bytes(data))

    def new_document(self, then, model="RGBA", depth="U8", select=True):
        """A new document shown in a view of the window with its layer active, then `then(doc, layer)`.

        In two parts with the event loop between, as a user's File › New and later click are: Krita 5.2's
        KisApplication::notify holds back its synchronized-connection events while any handler runs, so the
        layer shapes of a document made in this same handler do not exist yet and setActiveNode finds none
        (SAFE ASSERT "shape", no active layer) until the handler returns."""
        app = Krita.instance()
        w, h = self.spec["width"], self.spec["height"]
        app.setBatchmode(True)   # exportImage must not open its options dialog
        doc = app.createDocument(w, h, "dreamtest", model, depth, "", 72.0)
        doc.setBatchmode(True)
        layer = doc.topLevelNodes()[0]
        if (model, depth) == ("RGBA", "U8"):
            layer.setPixelData(pattern(w, h), 0, 0, w, h)
        if select:
            sel = Selection()
            sel.select(*self.spec["selection"], 255)
            doc.setSelection(sel)
        self.later(self._show_document, doc, layer, then)

    def _show_document(self, doc, layer, then):
        app = Krita.instance()
        view = self.window.addView(doc)
        self.window.showView(view)   # Krita 5.2+: a view added is not the active one until shown
        app.setActiveDocument(doc) if hasattr(app, "setActiveDocument") else None
        # Krita 5.2 and later switch the window's view manager to the new view a moment later, through events:
        # ask from the event loop until Krita reports the layer active, bounded.
        self._activate(doc, layer, then, time.time() + 5)

    def _activate(self, doc, layer, then, deadline):
        app = Krita.instance()
        if not self._is_active(app, doc, layer) and time.time() < deadline:
            doc.setActiveNode(layer)
            self.later(self._activate, doc, layer, then, deadline, ms=50)
            return
        self.report.setdefault("activation", []).append(self._is_active(app, doc, layer))
        doc.refreshProjection()
        doc.waitForDone()
        then(doc, layer)

    @staticmethod
    def _is_active(app, doc, layer):
        active, node = app.activeDocument(), doc.activeNode()
        return (active is not None and active.fileName() == doc.fileName() and active.name() == doc.name()
                and node is not None and node.name() == layer.name())

    def state(self, doc):
        """What must not change: the layer stack and every layer's pixels."""
        w, h = doc.width(), doc.height()
        return [(n.name(), n.type(), bytes(n.pixelData(0, 0, w, h))) for n in doc.topLevelNodes()]

    def set_settings(self, values):
        d = self.docker
        d.steps_spin.setValue(values["steps"])
        d.octaves_spin.setValue(values["octaves"])
        d.tile_spin.setValue(values["tile"])
        if "step_size" in values:
            d.step_size_spin.setValue(values["step_size"])
        if "seed" in values:
            d.seed_spin.setValue(values["seed"])

    # ------------------------------------------------------------------------------------------ steps

    def check_registration(self):
        app = Krita.instance()
        self.window = app.activeWindow()
        found = [d for d in app.dockers() if d.objectName() == "luciddream_docker"]
        self.report["docker_registered"] = bool(found)
        self.report["docker_title"] = found[0].windowTitle() if found else None
        self.report["action_registered"] = app.action("luciddream_dream_selection") is not None
        import luciddream.docker as product  # the plug-in package Krita loaded from pykrita
        self.report["product_file"] = product.__file__
        self.docker = found[0]
        combo = self.docker.preset_combo
        session = self.docker.session
        self.report["presets"] = [{"name": combo.itemData(i), "label": combo.itemText(i),
                                   "targets": session.preset_target(combo.itemData(i)).spec}
                                  for i in range(combo.count())]
        d = self.docker   # the class-look controls, as the offer set them up
        self.report["class_looks"] = {
            "looks": [d.look_combo.itemData(i) for i in range(d.look_combo.count())],
            "look": d.look_combo.currentData(),
            "instance": [d.instance_spin.minimum(), d.instance_spin.maximum(), d.instance_spin.value()],
            "class_strength": [d.class_strength_spin.minimum(), d.class_strength_spin.maximum(),
                               round(d.class_strength_spin.value(), 3)]}
        self.docker.setFloating(False)
        self.docker.show()
        self.docker.raise_()

    def scenario_refused(self):
        self.new_document(self._refused_ready, "CMYKA", "U8")
        return "wait"

    def _refused_ready(self, doc, layer):
        before = self.state(doc)
        started = self.docker.dream()
        self.report["refused"] = {"started": started, "status": self.docker.status_label.text(),
                                  "unchanged": self.state(doc) == before}
        doc.setModified(False)
        self.later(self.next)

    def scenario_cancel(self):
        self.new_document(self._cancel_ready)
        return "wait"

    def _cancel_ready(self, doc, layer):
        self.cancel_doc = doc
        self.cancel_before = self.state(doc)
        self.set_settings(self.spec["cancel"])
        self.docker.clear_targets()
        self.docker.preset_combo.setCurrentIndex(1)   # fine textures
        self.docker.add_preset()
        self.cancel_events = []
        session = self.docker.session
        session.progress_changed.connect(self._cancel_progress)
        self.cancel_t0 = time.time()
        # finished is connected only once the dream runs: a refusal emits it at once, inside dream()
        if not self.docker.dream():
            self.report["cancel"] = {"started": False, "status": self.docker.status_label.text()}
            session.progress_changed.disconnect(self._cancel_progress)
            self.later(self.next)
            return
        session.finished.connect(self._cancel_finished)

    def _cancel_progress(self, fraction):
        self.cancel_events.append([round(time.time() - self.cancel_t0, 2), fraction,
                                   self.docker.status_label.text()])
        if fraction > 0 and not getattr(self, "cancel_pressed", False):
            self.cancel_pressed = True
            self.docker.cancel_button.click()   # the real button

    def _cancel_finished(self, outcome, message):
        self.docker.session.finished.disconnect(self._cancel_finished)
        self.docker.session.progress_changed.disconnect(self._cancel_progress)
        doc = self.cancel_doc
        doc.waitForDone()
        after = self.state(doc)
        self.report["cancel"] = {
            "started": True, "outcome": outcome, "message": message, "events": self.cancel_events[:5],
            "pressed": getattr(self, "cancel_pressed", False), "unchanged": after == self.cancel_before,
            "layers_before": [n for n, _, _ in self.cancel_before], "layers_after": [n for n, _, _ in after],
            "seconds": round(time.time() - self.cancel_t0, 2)}
        doc.setModified(False)
        QTimer.singleShot(0, self.next)

    def scenario_dream(self):
        self.new_document(self._dream_ready)
        return "wait"

    def _dream_ready(self, doc, layer):
        self.dream_doc, self.dream_layer = doc, layer
        w, h = doc.width(), doc.height()
        self.dump("before_layer.bin", layer.pixelData(0, 0, w, h))
        self.dump("before_image.bin", doc.pixelData(0, 0, w, h))
        doc.exportImage(os.path.join(self.out, "before.png"), InfoObject())
        spec = self.spec["dream"]
        self.set_settings(spec)
        d = self.docker
        d.clear_targets()
        for name in spec["classes"]:          # search by name and add, as a user would
            d.search_edit.setText(name)
            d.add_selected_class()
        d.preset_combo.setCurrentIndex(0)     # puppyslugs, with a weight
        d.add_preset()
        d.target_table.cellWidget(d.target_table.rowCount() - 1, 1).setValue(spec["layer_weight"])
        self.report["dream_targets"] = [c.spec for c in d.session.targets]
        d.session.finished.connect(self._dream_finished)
        self.dream_t0 = time.time()
        import luciddream.docker as product
        self.log("dockers known to the plug-in: %d" % len(product.dockers()))
        Krita.instance().action("luciddream_dream_selection").trigger()   # the menu action
        self.log("action triggered; status: " + d.status_label.text())

    def _dream_finished(self, outcome, message):
        self.docker.session.finished.disconnect(self._dream_finished)
        doc, layer = self.dream_doc, self.dream_layer
        doc.refreshProjection()
        doc.waitForDone()
        w, h = doc.width(), doc.height()
        self.dump("after_layer.bin", layer.pixelData(0, 0, w, h))
        self.dump("after_image.bin", doc.pixelData(0, 0, w, h))
        nodes = doc.topLevelNodes()
        new = [n for n in nodes if n.name().startswith("Dream:")]
        if new:
            self.dump("new_layer.bin", new[0].pixelData(0, 0, w, h))
        exported = doc.exportImage(os.path.join(self.out, "after.png"), InfoObject())
        saved = doc.saveAs(os.path.join(self.out, "after.kra"))
        self.report["dream"] = {
            "outcome": outcome, "message": message, "seconds": round(time.time() - self.dream_t0, 2),
            "layers": [[n.name(), n.type()] for n in nodes], "new_layers": [n.name() for n in new],
            "exported": bool(exported), "saved": bool(saved), "status": self.docker.status_label.text(),
            "size": [w, h], "selection": self.spec["selection"]}
        self.later(self._dream_active, doc, new[0].name() if new else None, time.time() + 3)

    def _dream_active(self, doc, wanted, deadline):
        """The active layer as the user sees it once the event loop ran (Krita 5.2 shows a layer added during a
        handler only afterwards), waiting a moment for the dream layer."""
        node = doc.activeNode()
        active = node.name() if node is not None else None
        if active != wanted and time.time() < deadline:
            self.later(self._dream_active, doc, wanted, deadline, ms=50)
            return
        self.report["dream"]["active"] = active
        self.next()

    def screenshot(self):
        self.docker.show()
        self.docker.raise_()
        path = os.path.join(self.out, "screenshot.png")
        self.report["screenshot"] = bool(self.window.qwindow().grab().save(path))
        docker_path = os.path.join(self.out, "docker.png")
        self.report["docker_screenshot"] = bool(self.docker.grab().save(docker_path))

    # ------------------------------------------------------------------------------------------ settings

    def docker_values(self):
        """What the docker's controls show, named as the engine's settings."""
        d = self.docker
        return {"steps": d.steps_spin.value(), "step_size": round(d.step_size_spin.value(), 3),
                "octaves": d.octaves_spin.value(), "octave_scale": round(d.detail_spin.value(), 3),
                "tile": d.tile_spin.value(), "feather": d.feather_spin.value(), "seed": d.seed_spin.value(),
                "visible": bool(d.source_combo.currentData()), "model": d.model_combo.currentData(),
                "preset": d.preset_combo.currentData(), "look": d.look_combo.currentData(),
                "instance": d.instance_spin.value(), "class_strength": round(d.class_strength_spin.value(), 3),
                "variations": d.variations_spin.value(), "full_after_preview": d.full_after_check.isChecked(),
                "advanced": d.advanced_button.isChecked()}

    def first_start_values(self):
        """What the docker shows before any step changed it (on a first start: the engine's defaults)."""
        self.report["defaults_shown"] = self.docker_values()

    def looks_close(self):
        """Fold the Looks page away again, so the steps after it see the docker as a user who closed it."""
        self.docker.looks_button.setChecked(False)

    def fresh_worker(self):
        """End the engine worker, so the next step starts a new one as the first dream of a Krita session does
        (loop_preview's superseded first preview relies on a worker that is not warm yet)."""
        self.docker.session.engine.close()

    def persist_set(self):
        """Change every setting through the docker's own widgets, as a user would; Krita quits next. (What the
        docker showed before: first_start_values, or here when no step took it.)"""
        d = self.docker
        self.report.setdefault("defaults_shown", self.docker_values())
        wanted = self.spec["persist"]
        d.steps_spin.setValue(wanted["steps"])
        d.step_size_spin.setValue(wanted["step_size"])
        d.octaves_spin.setValue(wanted["octaves"])
        d.detail_spin.setValue(wanted["octave_scale"])
        d.tile_spin.setValue(wanted["tile"])
        d.feather_spin.setValue(wanted["feather"])
        d.seed_spin.setValue(wanted["seed"])
        d.source_combo.setCurrentIndex(d.source_combo.findData(wanted["visible"]))
        d.model_combo.setCurrentIndex(d.model_combo.findData(wanted["model"]))
        d.preset_combo.setCurrentIndex(d.preset_combo.findData(wanted["preset"]))
        d.look_combo.setCurrentIndex(d.look_combo.findData(wanted["look"]))
        d.instance_spin.setValue(wanted["instance"])
        d.class_strength_spin.setValue(wanted["class_strength"])
        d.variations_spin.setValue(wanted["variations"])
        d.full_after_check.setChecked(wanted["full_after_preview"])
        d.advanced_button.setChecked(wanted["advanced"])
        self.report["persist_set"] = self.docker_values()
        self.report["session_settings"] = dataclasses.asdict(d.session.settings)

    def persist_read(self):
        """After the restart: what the docker shows."""
        self.report["persist_read"] = self.docker_values()
