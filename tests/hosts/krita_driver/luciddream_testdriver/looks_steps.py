"""The look browser in real Krita (issue 18), as driver steps after loop.loop_setup's document: open the docker's
Looks page, load a small slice of the atlas (the test's cache already holds it, as a user's does after the first
build), click a channel's thumbnail, and dream with the target it added. Importing this module adds its steps to
loop.STEPS.
"""
import os
import time

try:
    from PyQt5.QtCore import QTimer
except ImportError:  # Krita 6
    from PyQt6.QtCore import QTimer

from . import loop

SLICE = ["block1:0,1"]


def _when(driver, ready, then, tries=1200, ms=100):
    """Poll `ready()` every `ms` until true (or tries run out), then `then()`."""
    if ready() or tries <= 0:
        then()
        return
    driver.later(_when, driver, ready, then, tries - 1, ms, ms=ms)


def looks_browse(driver):
    """Show the page, load the slice twice (the second time is a cached page: its seconds are the figure), hover
    text, then click channel 1's thumbnail with weight 0.7."""
    d = driver.docker
    d.clear_targets()
    d.looks_button.setChecked(True)
    page = d.looks_page
    page.weight_spin.setValue(0.7)
    report = driver.report.setdefault("looks_browse", {})
    t0 = time.time()
    page.load(layers=SLICE, search="")

    def first():
        report["first_s"] = round(time.time() - t0, 2)
        report["first_status"] = page.status_label.text()
        page.load(layers=SLICE, search="")
        _when(driver, lambda: not page.loading, shown)

    def shown():
        items = [page.grid.item(i) for i in range(page.grid.count())]
        report.update({"cached_s": round(page.shown_s, 3), "status": page.status_label.text(),
                       "items": [i.text() for i in items], "tips": [i.toolTip() for i in items],
                       "visible": page.isVisible()})
        chosen = [i for i in items if i.text() == "block1:1"]
        if chosen:
            page.grid.itemClicked.emit(chosen[0])   # what a click does
        report["targets"] = [c.spec for c in loop._session(driver).targets]
        report["page_status"] = page.status_label.text()
        QTimer.singleShot(0, driver.next)

    _when(driver, lambda: not page.loading, first)
    return "wait"


def looks_dream(driver):
    """Dream with the clicked target: a new layer appears, named by it."""
    d, doc = driver.docker, driver.loop["doc"]
    loop._small(driver, seed=5)
    before = [n.name() for n in loop._all_nodes(doc)]

    def finished(outcome, message):
        doc.waitForDone()
        after = [n.name() for n in loop._all_nodes(doc)]
        driver.report["looks_dream"] = {"outcome": outcome, "message": message,
                                        "new_layers": [n for n in after if n not in before]}

    loop._once(driver, finished)
    if not d.dream():
        driver.report["looks_dream"] = {"outcome": "refused", "message": loop._session(driver).status}
        return None
    return "wait"


def looks_wait(driver):
    """Ask for the looks while a dream runs (the atlas building beside the artist's work): the worker answers
    busy, the page says it waits and asks again, and shows the slice once the dream is done; the dream is not
    disturbed. (A dream that pre-empts a running looks build ends the same way for the page: tests/test_looks.py
    drives that order through a real worker.)"""
    d = driver.docker
    page, session = d.looks_page, loop._session(driver)
    loop._small(driver, seed=6, steps=30, octaves=2)   # a dream of a few seconds
    report = driver.report.setdefault("looks_wait", {"paused_before": page.paused, "said": []})
    heard = report["said"].append
    page._said.connect(heard)   # every sentence the page puts in its status line
    dreaming = []

    def progressed(fraction):
        if fraction > 0 and not dreaming:   # the worker is dreaming: now ask for the looks
            dreaming.append(fraction)
            report["asked_while"] = session.running
            page.load(layers=SLICE, search="")
            _when(driver, lambda: not page.loading and "dream" in report, shown)

    def finished(outcome, message):
        session.progress_changed.disconnect(progressed)
        report["dream"] = outcome
        report["dream_message"] = message
        return "wait"   # the queue goes on once the page is shown

    def shown():
        items = [page.grid.item(i) for i in range(page.grid.count())]
        page._said.disconnect(heard)
        report.update({"paused": page.paused - report["paused_before"], "items": [i.text() for i in items],
                       "status": page.status_label.text()})
        QTimer.singleShot(0, driver.next)

    session.progress_changed.connect(progressed)
    loop._once(driver, finished)
    if not d.dream():
        session.progress_changed.disconnect(progressed)
        page._said.disconnect(heard)
        report["dream"] = "refused"
        return None
    return "wait"


def looks_screenshot(driver):
    d = driver.docker
    d.show()
    d.raise_()
    driver.report["looks_screenshot"] = bool(d.grab().save(os.path.join(driver.out, "docker-looks.png")))


loop.STEPS.update({f.__name__: f for f in (looks_browse, looks_dream, looks_wait, looks_screenshot)})
