"""One import for PyQt5 (Krita 5) and PyQt6 (Krita 6).

Whichever PyQt Krita itself has loaded wins: importing the other one into the same process would load a second Qt.
Code elsewhere uses fully scoped enums (Qt.AlignmentFlag.AlignLeft), which both versions accept.
"""
import logging
import sys

if "PyQt6.QtCore" in sys.modules and "PyQt5.QtCore" not in sys.modules:
    try:
        from PyQt6 import QtCore, QtGui, QtWidgets
        QT_MAJOR = 6
    except ImportError:
        from PyQt5 import QtCore, QtGui, QtWidgets
        QT_MAJOR = 5
else:
    try:
        from PyQt5 import QtCore, QtGui, QtWidgets
        QT_MAJOR = 5
    except ImportError:
        from PyQt6 import QtCore, QtGui, QtWidgets
        QT_MAJOR = 6

Qt = QtCore.Qt
pyqtSignal = QtCore.pyqtSignal
QObject = QtCore.QObject
QTimer = QtCore.QTimer


class GuiCalls(QObject):
    """Runs functions handed in from any thread in the thread that made this object (the GUI thread).

    A signal emitted in another thread reaches a slot of an object of the GUI thread queued, through Qt's event
    loop: that is the whole bridge the session needs (session.Session's `post`).
    """

    _call = pyqtSignal(object)

    def __init__(self) -> None:
        super().__init__()
        self._call.connect(self._run)

    def post(self, call) -> None:
        self._call.emit(call)

    def _run(self, call) -> None:
        try:
            call()
        except Exception:  # an exception leaving a PyQt slot can end the whole process: log it instead
            logging.getLogger("luciddream").exception("Lucid Dream: a queued call failed")


__all__ = ["QtCore", "QtGui", "QtWidgets", "Qt", "pyqtSignal", "QObject", "QTimer", "QT_MAJOR", "GuiCalls"]
