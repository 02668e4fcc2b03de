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
    """Dream with the shared session, the same targets and settings the dockers show; this window's docker is
    shown (if hidden) so the progress and the status line are in sight."""
    qwin = window.qwindow() if window is not None else None
    found = dock.dockers()
    same = [d for d in found if qwin is not None and d.window() is qwin]
    shown = (same or found or [None])[0]
    if shown is not None:
        shown.show()
        shown.raise_()
    session = dock.shared_session()
    if not session.dream() and shown is None:   # no docker to show the sentence in
        QtWidgets.QMessageBox.information(qwin, "Lucid Dream", session.status)
