"""The menu action (Tools › Scripts › Lucid Dream: dream the selection) and the end of the worker with Krita."""
from __future__ import annotations

from typing import Any

from krita import Extension, Krita

from . import docker as dock
from .qt import QtWidgets

ACTION_ID = "luciddream_dream_selection"


class LucidDreamExtension(Extension):
    """Adds the menu action and ends the engine worker when Krita closes."""

    def __init__(self, parent: Any) -> None:
        super().__init__(parent)

    def setup(self) -> None:
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(dock.shutdown)

    def createActions(self, window: Any) -> None:
        action = window.createAction(ACTION_ID, "Lucid Dream: dream the selection", "tools/scripts")
        action.setToolTip("Dream inside the selection with the Lucid Dream docker's settings")
        # The Window wrapper handed to createActions is deleted later: look the window up when the action fires.
        action.triggered.connect(lambda: dream_from_menu(Krita.instance().activeWindow()))


def dream_from_menu(window: Any) -> None:
    """Dream with the docker of this window (shown if hidden), so the menu and the panel share every setting."""
    qwin = window.qwindow() if window is not None else None
    found = dock.dockers()
    same = [d for d in found if qwin is not None and d.window() is qwin]
    target = (same or found or [None])[0]
    if target is None:
        QtWidgets.QMessageBox.information(qwin, "Lucid Dream", "Open Settings › Dockers › Lucid Dream first.")
        return
    target.show()
    target.raise_()
    target.dream()
