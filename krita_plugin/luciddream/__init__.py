"""Lucid Dream for Krita: a docker that dreams inside the selection through the luciddream engine.

Krita imports this package and the registration below runs. Outside Krita (unit tests) the `krita` module is
missing and nothing is registered, so the modules without Qt (pixels, targets, engine, document, settings,
session) import on their own.
"""
try:
    import krita as _krita
except ImportError:
    _krita = None

if _krita is not None:
    from .docker import DOCKER_ID, LucidDreamDocker
    from .extension import LucidDreamExtension

    _app = _krita.Krita.instance()
    _app.addExtension(LucidDreamExtension(_app))
    _positions = getattr(_krita.DockWidgetFactoryBase, "DockPosition", _krita.DockWidgetFactoryBase)
    _app.addDockWidgetFactory(_krita.DockWidgetFactory(DOCKER_ID, _positions.DockRight, LucidDreamDocker))
