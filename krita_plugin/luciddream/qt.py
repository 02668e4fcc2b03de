"""One import for PyQt5 (Krita 5) and PyQt6 (Krita 6).

Whichever PyQt Krita itself has loaded wins: importing the other one into the same process would load a second Qt.
Code elsewhere uses fully scoped enums (Qt.AlignmentFlag.AlignLeft), which both versions accept.
"""
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

__all__ = ["QtCore", "QtGui", "QtWidgets", "Qt", "pyqtSignal", "QObject", "QTimer", "QT_MAJOR"]
