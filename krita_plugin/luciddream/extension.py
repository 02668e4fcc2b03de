"""The menu actions (Tools › Scripts › Lucid Dream: …, one per docker button, so each can have a shortcut) and the end
of the worker with Krita."""
from __future__ import annotations

from typing import Any

from krita import Extension, Krita

from . import docker as dock
from .controls import ACTIONS
from .qt import QtWidgets

ACTION_ID = ACTIONS[0][0]   # "luciddream_dream_selection"


class LucidDreamExtension(Extension):
    """Adds the menu action and ends the engine worker when Krita closes."""

    def __init__(self, parent: Any) -> None:
        super().__init__(parent)

    def setup(self) -> None:
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(dock.shutdown)

    def createActions(self, window: Any) -> None:
        for action_id, text, tip in ACTIONS:
            action = window.createAction(action_id, text, "tools/scripts")
            action.setToolTip(tip)
            # The Window wrapper handed to createActions is deleted later: look the window up when the action
            # fires.
            action.triggered.connect(lambda _checked=False, name=action_id: run_action(
                name, Krita.instance().activeWindow()))


def _do(session: Any, action_id: str) -> bool:
    """What each action does: the same session call as the docker's button."""
    if action_id == "luciddream_preview":
        return session.preview()
    if action_id == "luciddream_variations":
        return session.variations()
    if action_id == "luciddream_again":
        return session.again()
    if action_id == "luciddream_again_new_seed":
        return session.again(new_seed=True)
    if action_id == "luciddream_cancel":
        session.cancel()
        return True
    if action_id == "luciddream_test_engine":
        return session.test_engine()
    return session.dream()


def run_action(action_id: str, window: Any) -> None:
    """Run an action with the shared session, the same targets and settings the dockers show; this window's
    docker is shown (if hidden) so the progress and the status line are in sight."""
    qwin = window.qwindow() if window is not None else None
    found = dock.dockers()
    same = [d for d in found if qwin is not None and d.window() is qwin]
    shown = (same or found or [None])[0]
    if shown is not None:
        shown.show()
        shown.raise_()
    session = dock.shared_session()
    if not _do(session, action_id) and shown is None:   # no docker to show the sentence in
        QtWidgets.QMessageBox.information(qwin, "Lucid Dream", session.status)


def dream_from_menu(window: Any) -> None:
    """The first action: dream the selection."""
    run_action(ACTION_ID, window)
