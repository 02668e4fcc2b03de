"""The artist's loop in real Krita (issue 17), as driver steps: preview, variations, Again, the settings record
through .kra, guides, Test engine and the refusals. One Krita start runs them all (tests/test_krita_host.py's
loop_run); each step writes its part of the report, and a step that waits for the docker returns "wait" and calls
driver.next() itself. Pixels are compared inside Krita and only the verdicts (and a few dumps) are reported.
"""
import hashlib
import os
import signal
import time
import traceback

from krita import Krita, Selection

try:
    from PyQt5.QtCore import QTimer
    from PyQt5.QtGui import QColor, QImage
except ImportError:  # Krita 6
    from PyQt6.QtCore import QTimer
    from PyQt6.QtGui import QColor, QImage

SMALL = {"steps": 2, "octaves": 1, "tile": 0, "step_size": 4.0}


def _session(driver):
    return driver.docker.session


def _once(driver, then):
    """`then(outcome, message)` on the session's next finished signal; its return "wait" keeps the queue."""
    session = _session(driver)

    def handler(outcome, message):
        session.finished.disconnect(handler)
        try:
            if then(outcome, message) != "wait":
                QTimer.singleShot(0, driver.next)
        except Exception:
            driver.failed()
    session.finished.connect(handler)


def _all_nodes(doc):
    found, pending = [], list(doc.topLevelNodes())
    while pending:
        node = pending.pop(0)
        found.append(node)
        pending.extend(node.childNodes())
    return found


def _digest(node, doc):
    return hashlib.sha256(bytes(node.pixelData(0, 0, doc.width(), doc.height()))).hexdigest()


def _undo_text():
    action = Krita.instance().action("edit_undo")
    return [action.text(), action.isEnabled()] if action is not None else None


def _small(driver, **extra):
    d = driver.docker
    values = dict(SMALL, **extra)
    d.steps_spin.setValue(values["steps"])
    d.octaves_spin.setValue(values["octaves"])
    d.tile_spin.setValue(values["tile"])
    d.step_size_spin.setValue(values["step_size"])
    if "seed" in values:
        d.seed_spin.setValue(values["seed"])


def loop_setup(driver):
    """A document with the test picture, a guide layer painted over part of it, and a CMYK layer."""
    def ready(doc, layer):
        driver.loop = {"doc": doc, "source": layer}
        guide = doc.createNode("Guide stripes", "paintlayer")
        w, h = doc.width(), doc.height()
        stripes = bytearray()
        for _y in range(h):
            for x in range(w):
                on = (x // 6) % 2 == 0
                stripes += bytes((40, 200, 250, 255) if on else (250, 40, 90, 255))
        guide.setPixelData(bytes(stripes), 0, 0, w, h)
        guide.setVisible(False)
        doc.rootNode().addChildNode(guide, None)
        cmyk = doc.createNode("Guide in CMYK", "paintlayer")
        doc.rootNode().addChildNode(cmyk, None)
        profiles = list(Krita.instance().profiles("CMYKA", "U8"))
        driver.loop["cmyk_converted"] = bool(profiles) and cmyk.setColorSpace("CMYKA", "U8", profiles[0])
        cmyk.setPixelData(bytes((0, 128, 255, 0, 255)) * (w * h), 0, 0, w, h)
        cmyk.setVisible(False)
        driver.later(_activate_source, driver, doc, layer)
    driver.new_document(ready)
    return "wait"


def _activate_source(driver, doc, layer, tries=40):
    doc.setActiveNode(layer)
    if (doc.activeNode() is None or doc.activeNode().name() != layer.name()) and tries:
        driver.later(_activate_source, driver, doc, layer, tries - 1, ms=50)
        return
    d = driver.docker
    d.clear_targets()
    d.preset_combo.setCurrentIndex(1)   # fine textures: a layer look
    d.add_preset()
    driver.loop["before"] = driver.state(doc)
    driver.loop["undo_before"] = _undo_text()
    from luciddream.controls import ACTIONS
    app = Krita.instance()
    buttons = [d.dream_button, d.preview_button, d.variations_button, d.again_button, d.again_new_button,
               d.cancel_button, d.test_button]
    driver.report["loop_setup"] = {"layers": [n.name() for n in _all_nodes(doc)],
                                   "active": doc.activeNode().name() if doc.activeNode() else None,
                                   "actions": {a[0]: app.action(a[0]) is not None for a in ACTIONS},
                                   "buttons_with_tips": sum(bool(b.toolTip()) for b in buttons),
                                   "cmyk": [driver.loop["cmyk_converted"], [n.colorModel() for n in _all_nodes(doc)
                                                                            if n.name() == "Guide in CMYK"]]}
    QTimer.singleShot(0, driver.next)


def loop_preview(driver):
    """Two clicks on Preview: the first is cancelled in the worker (superseded), the second is shown in the
    docker; the document, its undo history and its pixels stay as they were."""
    d, doc = driver.docker, driver.loop["doc"]
    _small(driver, steps=0, octaves=3, seed=11)
    session = _session(driver)
    t0 = time.time()
    shown = []
    session.preview_ready.connect(shown.append)
    first = d.preview_button.isEnabled() and d.preview()

    def second():
        again = d.preview()   # supersedes the running one
        _once(driver, lambda outcome, message: finished(outcome, message, again))

    def finished(outcome, message, again):
        session.preview_ready.disconnect(shown.append)
        doc.waitForDone()
        p = session.last_preview
        driver.report["loop_preview"] = {
            "first": first, "second": again, "outcome": outcome, "message": message,
            "shown": len(shown), "size": [p.width, p.height] if p else None,
            "seconds": round(p.seconds, 2) if p else None, "click_to_shown_s": round(time.time() - t0, 2),
            "label_visible": d.preview_label.isVisible() and d.preview_label.pixmap() is not None,
            "unchanged": driver.state(doc) == driver.loop["before"],
            "undo_before": driver.loop["undo_before"], "undo_after": _undo_text(),
            "superseded": session.superseded_previews}
    QTimer.singleShot(300, second)
    return "wait"


def loop_variations(driver):
    """Three variations, Cancel while the third dreams: a group with the two finished ones, named by seed, each
    with its record."""
    d, doc = driver.docker, driver.loop["doc"]
    _small(driver, seed=21)
    d.variations_spin.setValue(3)
    session = _session(driver)
    pressed = []

    def progress(fraction):
        if session._run is not None and len(session._run.made) == 2 and not pressed:
            pressed.append(fraction)
            d.cancel_button.click()
    session.progress_changed.connect(progress)

    def finished(outcome, message):
        session.progress_changed.disconnect(progress)
        groups = [n for n in _all_nodes(doc) if n.type() == "grouplayer"]
        children = [c for c in groups[0].childNodes()] if groups else []
        records = []
        for child in children:
            try:
                rec = session_record(driver, doc, child)
                records.append({"seed": rec.seed, "targets": [list(t) for t in rec.targets],
                                "settings": rec.settings})
            except Exception as exc:
                records.append({"error": str(exc)})
        driver.loop["variation_layers"] = children
        driver.report["loop_variations"] = {
            "outcome": outcome, "message": message, "groups": [g.name() for g in groups],
            "children": [c.name() for c in children], "records": records, "pressed": bool(pressed),
            "digests_differ": len({_digest(c, doc) for c in children}) == len(children)}
    _once(driver, finished)
    driver.report["loop_variations_started"] = d.variations()
    return "wait"


def session_record(driver, doc, node):
    import luciddream.document as product_document
    return product_document.read_record(doc, node)


def loop_again(driver):
    """Select the first variation, press Again (same seed: the same pixels), then Again, new seed."""
    d, doc = driver.docker, driver.loop["doc"]
    first = driver.loop["variation_layers"][0]
    doc.setActiveNode(first)
    _small(driver, seed=999)   # the settings shown now differ: Again must bring the record's back
    d.clear_targets()
    before = {n.uniqueId().toString() for n in _all_nodes(doc)}

    def new_layers():
        return [n for n in _all_nodes(doc) if n.uniqueId().toString() not in before]

    def same_seed(outcome, message):
        made = new_layers()
        driver.report["loop_again"] = {
            "outcome": outcome, "message": message, "layers": [n.name() for n in made],
            "same_pixels": bool(made) and _digest(made[0], doc) == _digest(first, doc),
            "seed_shown": d.seed_spin.value(), "targets_shown": [c.spec for c in _session(driver).targets]}
        before.update(n.uniqueId().toString() for n in made)
        doc.setActiveNode(first)
        _once(driver, new_seed)
        driver.later(lambda: driver.report.__setitem__("loop_again_new_started", d.again_new_seed()), ms=200)
        return "wait"

    def new_seed(outcome, message):
        made = new_layers()
        rec = session_record(driver, doc, made[0]) if made else None
        driver.report["loop_again_new"] = {
            "outcome": outcome, "message": message, "layers": [n.name() for n in made],
            "seed": rec.seed if rec else None,
            "differs": bool(made) and _digest(made[0], doc) != _digest(first, doc)}
        QTimer.singleShot(0, driver.next)
        return "wait"
    _once(driver, same_seed)
    driver.report["loop_again_started"] = d.again()
    return "wait"


def loop_guide(driver):
    """A dream guided by another layer of the image; then a CMYK guide layer is refused with a sentence."""
    d, doc, source = driver.docker, driver.loop["doc"], driver.loop["source"]
    doc.setActiveNode(source)
    _small(driver, seed=5)
    d.clear_targets()   # a guide alone pulls by itself
    d._fill_guides()
    index = d.guide_combo.findText("Guide stripes")
    d.guide_combo.setCurrentIndex(index)
    d._on_guide(index)
    listed = [d.guide_combo.itemText(i) for i in range(d.guide_combo.count())]
    count = len(_all_nodes(doc))

    def finished(outcome, message):
        made = _all_nodes(doc)
        guide = _session(driver).guide
        driver.report["loop_guide"] = {"outcome": outcome, "message": message, "listed": listed,
                                       "guide": guide.name if guide else None, "added": len(made) - count}
        try:
            layer = _session(driver).last_layer
            driver.report["loop_guide"]["layer"] = layer.name()
            driver.report["loop_guide"]["record_guide"] = session_record(driver, doc, layer).guide
        except Exception as exc:
            driver.report["loop_guide"]["record_guide"] = "error: %s" % exc
        cmyk = d.guide_combo.findText("Guide in CMYK")
        d.guide_combo.setCurrentIndex(cmyk)
        d._on_guide(cmyk)
        doc.setActiveNode(source)
        state = driver.state(doc)
        started = d.dream()
        driver.report["loop_guide_cmyk"] = {"started": started, "status": d.status_label.text(),
                                            "unchanged": driver.state(doc) == state}
        picture = os.path.join(driver.out, "guide.png")   # a picture file as the guide, read through Qt
        image = QImage(600, 300, QImage.Format.Format_RGB32)
        image.fill(QColor(20, 160, 90))
        image.save(picture)
        loaded = d.choose_guide_file(picture)
        chosen = _session(driver).guide
        driver.report["loop_guide_file"] = {
            "loaded": loaded, "kind": chosen.kind if chosen else None,
            "size": [chosen.pixels.width, chosen.pixels.height, len(chosen.pixels.pixels)] if loaded else None,
            "first_pixel": list(chosen.pixels.pixels[:4]) if loaded else None,
            "bad": d.choose_guide_file(os.path.join(driver.out, "missing.png")), "status": d.status_label.text()}
        d.guide_combo.setCurrentIndex(0)
        d._on_guide(0)
    _once(driver, finished)
    driver.report["loop_guide_started"] = d.dream()
    return "wait"


def loop_empty_selection(driver):
    """A selection with nothing in it: one sentence, nothing changes."""
    d, doc, source = driver.docker, driver.loop["doc"], driver.loop["source"]
    doc.setActiveNode(source)
    sel = Selection()
    sel.select(10, 10, 20, 20, 255)
    sel.select(0, 0, doc.width(), doc.height(), 0)
    doc.setSelection(sel)
    state = driver.state(doc)
    started = d.dream()
    driver.report["loop_empty_selection"] = {"started": started, "status": d.status_label.text(),
                                             "unchanged": driver.state(doc) == state,
                                             "selection": None if doc.selection() is None else
                                             [doc.selection().width(), doc.selection().height()]}
    sel = Selection()
    sel.select(*driver.spec["selection"], 255)
    doc.setSelection(sel)


def loop_killed_preview(driver):
    """The worker killed in the middle of a preview: one sentence; the next preview starts a new worker. The kill
    comes as soon as the job is in the worker (the engine polled every 10 ms): a layer preview is over in well
    under a second, and its first progress signal can reach this GUI thread after the result did."""
    d, doc = driver.docker, driver.loop["doc"]
    _small(driver, steps=300, octaves=1)
    session = _session(driver)
    killed = []
    ended = []

    def poll(tries=3000):
        engine = session.engine
        client = engine._client
        if ended or killed:
            return
        if client is not None and engine._job is not None:
            killed.append(client._t.proc.pid)
            os.kill(client._t.proc.pid, signal.SIGKILL)
        elif tries > 0:
            QTimer.singleShot(10, lambda: poll(tries - 1))

    def finished(outcome, message):
        ended.append(outcome)
        driver.report["loop_killed_preview"] = {"outcome": outcome, "message": message, "killed": bool(killed),
                                                "unchanged": driver.state(doc) == state}
        _small(driver)
        _once(driver, lambda o, m: driver.report.__setitem__("loop_after_kill", {"outcome": o, "message": m}))
        driver.report["loop_after_kill_started"] = d.preview()
        return "wait"
    state = driver.state(doc)
    _once(driver, finished)
    driver.report["loop_killed_started"] = d.preview()
    poll()
    return "wait"


def loop_closed_document(driver):
    """A document closed while its dream runs: the result is dropped with a sentence, nothing crashes. (A
    document without a view: closing one with a view crashes Krita 5.1 in scripts.)"""
    app = Krita.instance()
    other = app.createDocument(64, 48, "closing", "RGBA", "U8", "", 72.0)
    layer = other.topLevelNodes()[0]
    import luciddream.docker as product_docker
    _small(driver, steps=40)
    session = product_docker.shared_session()
    closed = []

    def progress(fraction):
        if fraction > 0 and not closed:
            closed.append(True)
            other.close()
    session.progress_changed.connect(progress)

    def finished(outcome, message):
        session.progress_changed.disconnect(progress)
        driver.report["loop_closed_document"] = {"outcome": outcome, "message": message, "closed": bool(closed),
                                                 "documents": len(app.documents())}
    _once(driver, finished)
    driver.report["loop_closed_started"] = session.dream(other, layer)
    return "wait"


def loop_test_engine(driver):
    d = driver.docker

    def finished(outcome, message):
        driver.report["loop_test_engine"] = {"outcome": outcome, "message": message}
    _once(driver, finished)
    d.test_button.click()
    return "wait"


def loop_save_reopen(driver):
    """Save as .kra, open the file again, read every result layer's record there."""
    doc = driver.loop["doc"]
    path = os.path.join(driver.out, "loop.kra")
    saved = doc.saveAs(path)
    expected = {}
    for node in _all_nodes(doc):
        try:
            expected[node.uniqueId().toString()] = session_record(driver, doc, node).to_json()
        except Exception:
            pass
    again = Krita.instance().openDocument(path)
    found = {}
    for node in _all_nodes(again):
        try:
            found[node.uniqueId().toString()] = session_record(driver, again, node).to_json()
        except Exception:
            pass
    driver.report["loop_save_reopen"] = {"saved": bool(saved), "records": len(expected),
                                         "same": found == expected and bool(expected)}
    try:
        again.close()
    except Exception:
        driver.log("close failed " + traceback.format_exc())


def loop_screenshot(driver):
    """The docker with the preview shown and the Advanced fold open, for docs/."""
    d = driver.docker
    d.advanced_button.setChecked(True)
    d.show()
    d.raise_()
    driver.report["loop_screenshot"] = bool(d.grab().save(os.path.join(driver.out, "docker-loop.png")))
    d.advanced_button.setChecked(False)


STEPS = {f.__name__: f for f in (loop_setup, loop_preview, loop_variations, loop_again, loop_guide,
                                 loop_empty_selection, loop_killed_preview, loop_closed_document, loop_test_engine,
                                 loop_save_reopen, loop_screenshot)}


# ------------------------------------------------------------------------------------------- benchmarks/krita_loop.py

def bench_setup(driver):
    """The benchmark's picture (spec "bench": {"image": PNG path, "selection": [x, y, w, h]}) opened and shown."""
    bench = driver.spec["bench"]
    app = Krita.instance()
    app.setBatchmode(True)
    doc = app.openDocument(bench["image"])
    doc.setBatchmode(True)
    layer = doc.topLevelNodes()[0]
    sel = Selection()
    sel.select(*bench["selection"], 255)
    doc.setSelection(sel)
    driver.loop = {"doc": doc, "source": layer}

    def shown(doc, layer):
        d = driver.docker
        d.test_button.click()   # starts the worker and loads the default model: what follows is warm
        _once(driver, lambda outcome, message: driver.report.__setitem__("bench_engine", [outcome, message]))
    driver.later(driver._show_document, doc, layer, shown)
    return "wait"


def _bench_look(driver, name, targets):
    """Preview twice (the first also loads what this look needs), then the full dream: click-to-shown seconds."""
    d, session = driver.docker, _session(driver)
    d.clear_targets()
    for kind, value in targets:
        if kind == "class":
            d.search_edit.setText(value)
            d.add_selected_class()
        else:
            d.preset_combo.setCurrentIndex(d.preset_combo.findData(value))
            d.add_preset()
    figures = driver.report.setdefault("bench", {}).setdefault(name, {})
    runs = [("preview_first", d.preview), ("preview", d.preview), ("full", d.dream)]

    def step(index):
        if index == len(runs):
            QTimer.singleShot(0, driver.next)
            return
        label, click = runs[index]
        t0 = time.time()

        def done(outcome, message):
            figures[label] = {"seconds": round(time.time() - t0, 2), "outcome": outcome, "message": message}
            if session.last_preview is not None and label.startswith("preview"):
                figures[label]["size"] = [session.last_preview.width, session.last_preview.height]
            driver.later(step, index + 1, ms=200)
            return "wait"
        _once(driver, done)
        click()
    step(0)
    return "wait"


def bench_layer(driver):
    return _bench_look(driver, "layer look (classic)", [("preset", "classic")])


def bench_class(driver):
    return _bench_look(driver, "class look (grow, tabby)", [("class", "tabby")])


def bench_screenshot(driver):
    d = driver.docker
    d.advanced_button.setChecked(True)
    d.show()
    d.raise_()
    driver.report["bench_screenshot"] = bool(d.grab().save(os.path.join(driver.out, "docker-bench.png")))


STEPS.update({f.__name__: f for f in (bench_setup, bench_layer, bench_class, bench_screenshot)})
