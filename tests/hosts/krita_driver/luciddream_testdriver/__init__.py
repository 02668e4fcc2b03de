"""Test-only Krita plug-in: drives the real Lucid Dream docker in a real Krita window, writes a report, quits.

Installed beside the product plug-in by tests/test_krita_host.py only. It does nothing unless the environment
variable LUCIDDREAM_KRITA_DRIVER names an output folder. Every step is wrapped: an exception inside a Krita plug-in
never reaches stderr and Krita never quits by itself, so the report is always written and Krita always told to quit.
"""
import os

OUT = os.environ.get("LUCIDDREAM_KRITA_DRIVER")

if OUT:
    from krita import Krita

    from .driver import DriverExtension

    Krita.instance().addExtension(DriverExtension(Krita.instance(), OUT))
