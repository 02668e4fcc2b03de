"""The layer a user clicks is the one dreamed: a real mouse click in Krita's Layers docker, then Dream.

The plug-in reads the layer to dream from Document.activeNode() of the active document. Krita 5.2.9 reports no
active layer for a document made and activated within one script call (its synchronized events wait until the
call returns), so this checks the user's way on every version: a document with two layers, Krita's own choice of
active layer once the event loop ran, a click on the other row of the Layers docker, and a dream that must land
right above the clicked layer. Importing this module adds its step to loop.STEPS.
"""
import time

try:
    from PyQt5.QtCore import QPoint, Qt
    from PyQt5.QtTest import QTest
    from PyQt5.QtWidgets import QDockWidget, QTreeView
except ImportError:  # Krita 6
    from PyQt6.QtCore import QPoint, Qt
    from PyQt6.QtTest import QTest
    from PyQt6.QtWidgets import QDockWidget, QTreeView

from . import loop


def _layer_tree(driver):
    """The Layers docker's tree of layers (KisNodeView, a QTreeView) in the driver's window."""
    for dock in driver.window.qwindow().findChildren(QDockWidget):
        if dock.objectName() == "KisLayerBox":
            trees = [t for t in dock.findChildren(QTreeView) if t.model() is not None]
            return trees[0] if trees else None
    return None


def _row_point(tree, name):
    """A point on the row that shows `name`, in the middle of the row's width (away from the eye and lock icons)."""
    viewport = tree.viewport()
    x = viewport.width() // 2
    for y in range(0, viewport.height(), 2):
        index = tree.indexAt(QPoint(x, y))
        if index.isValid() and index.data() == name:
            return QPoint(x, y + 4)
    return None


def _until(driver, ready, then, deadline, ms=50):
    if ready() or time.time() >= deadline:
        then()
        return
    driver.later(_until, driver, ready, then, deadline, ms, ms=ms)


def _active_name(doc):
    node = doc.activeNode()
    return node.name() if node is not None else None


def scenario_click_layer(driver):
    report = driver.report["click"] = {}

    def ready(doc, layer):
        top = doc.createNode("Top", "paintlayer")
        w, h = doc.width(), doc.height()
        top.setPixelData(bytes((0, 0, 0, 0)) * (w * h), 0, 0, w, h)
        layer.parentNode().addChildNode(top, layer)
        driver.click_doc = doc
        # Krita makes a layer added to the image the active one, once this handler has returned
        driver.later(_until, driver, lambda: _active_name(doc) == "Top", lambda: click(doc), time.time() + 5)

    def click(doc):
        report["active_before"] = _active_name(doc)
        tree = _layer_tree(driver)
        point = _row_point(tree, "Background") if tree is not None else None
        report["row_found"] = point is not None
        if point is None:
            driver.later(driver.next)
            return
        QTest.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point)
        driver.later(_until, driver, lambda: _active_name(doc) == "Background", lambda: dream(doc),
                     time.time() + 5)

    def dream(doc):
        report["active_after_click"] = _active_name(doc)
        session = driver.docker.session
        driver.set_settings(driver.spec["dream"])
        if not driver.docker.dream():   # Source: active layer; the targets the dream scenario left listed
            report["status"] = driver.docker.status_label.text()
            driver.later(driver.next)
            return
        session.finished.connect(finished)

    def finished(outcome, message):
        driver.docker.session.finished.disconnect(finished)
        doc = driver.click_doc
        layers = [n.name() for n in doc.topLevelNodes() if n.type() == "paintlayer"]   # not the selection mask
        report.update(outcome=outcome, message=message, layers=layers)
        doc.setModified(False)
        driver.later(driver.next)

    driver.new_document(ready)
    return "wait"


loop.STEPS[scenario_click_layer.__name__] = scenario_click_layer
