"""kritarunner script: the plug-in's pixel and document code against the real Krita API, for every pixel format.

Run as `kritarunner -s krita_runner_formats -f main PLUGIN_DIR OUT_JSON` with this folder on PYTHONPATH. For each
colour space it paints a known picture through pixels.from_engine, reads it back with document.read_snapshot
(the round trip must be exact), checks what the channels mean by letting Krita convert a pure red picture to 8-bit
sRGB, and writes a fake engine result with document.write_result (new layer above, source untouched, unselected
pixels transparent). No engine is needed: the fake result changes every selected pixel.
"""
import json
import struct
import sys
import traceback
from pathlib import Path

from krita import Krita, Selection

W, H = 24, 16
SEL = (6, 4, 10, 8)
FORMATS = [("RGBA", "U8"), ("RGBA", "U16"), ("RGBA", "F16"), ("RGBA", "F32"), ("GRAYA", "U8"), ("GRAYA", "U16"),
           ("GRAYA", "F32")]


def engine_picture(fmt):
    """A picture in the engine's layout: channel c of pixel i gets a distinct value, alpha full."""
    values = []
    for i in range(W * H):
        for c in range(fmt.channels):
            alpha = c == fmt.channels - 1
            v = 1.0 if alpha else ((i * 7 + c * 3) % 50) / 64.0   # exact in every format, half floats too
            values.append(v)
    if fmt.sample == "u8":
        return bytes(int(round(v * 255)) for v in values)
    if fmt.sample == "u16":
        return struct.pack("=%dH" % len(values), *(int(round(v * 65535)) for v in values))
    return struct.pack("=%df" % len(values), *values)


def changed(data, fmt, mask):
    """A fake engine result: colour channels of selected pixels moved, everything else bit-identical."""
    size = {"u8": 1, "u16": 2, "f32": 4}[fmt.sample]
    out = bytearray(data)
    for i, m in enumerate(mask):
        if not m:
            continue
        for c in range(fmt.channels - 1):
            o = (i * fmt.channels + c) * size
            if fmt.sample == "u8":
                out[o] = (out[o] + 60) % 256
            elif fmt.sample == "u16":
                out[o:o + 2] = struct.pack("=H", (struct.unpack("=H", out[o:o + 2])[0] + 9000) % 65536)
            else:
                out[o:o + 4] = struct.pack("=f", 0.9 - struct.unpack("=f", out[o:o + 4])[0] / 2)
    return bytes(out)


def red_check(app, px, model, depth):
    """Paint pure red through from_engine, let Krita convert to 8-bit sRGB: red must still be red."""
    if model != "RGBA":
        return True
    fmt = px.pixel_format(model, depth)
    one = {"u8": bytes([255, 0, 0, 255]), "u16": struct.pack("=4H", 65535, 0, 0, 65535),
           "f32": struct.pack("=4f", 1.0, 0.0, 0.0, 1.0)}[fmt.sample]
    doc = app.createDocument(2, 1, "red", model, depth, "", 72.0)
    node = doc.topLevelNodes()[0]
    node.setPixelData(px.from_engine(one * 2, fmt, 2), 0, 0, 2, 1)
    node.setColorSpace("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")
    doc.waitForDone()
    bgra = bytes(node.pixelData(0, 0, 1, 1))
    doc.close()
    return bgra[2] >= 250 and bgra[0] <= 5 and bgra[1] <= 5


def main(args):
    plugin_dir, out_path = Path(args[0]), args[1]
    report = {"ok": False, "formats": {}}
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import krita_plugin_loader
        px = krita_plugin_loader.load("pixels", plugin_dir)
        document = krita_plugin_loader.load("document", plugin_dir)
        kit = krita_plugin_loader.load("kit", plugin_dir)
        # the context margin the installed plug-in got from the engine (engine.json's cached offer)
        context = kit.offer_from_config(kit.read_config(str(plugin_dir / "engine.json"))).context
        app = Krita.instance()
        app.setBatchmode(True)
        for model, depth in FORMATS:
            fmt = px.pixel_format(model, depth)
            doc = app.createDocument(W, H, "fmt", model, depth, "", 72.0)
            doc.setBatchmode(True)
            node = doc.topLevelNodes()[0]
            picture = engine_picture(fmt)
            node.setPixelData(px.from_engine(picture, fmt, W * H), 0, 0, W, H)
            sel = Selection()
            sel.select(*SEL, 255)
            doc.setSelection(sel)
            doc.waitForDone()
            before = bytes(node.pixelData(0, 0, W, H))
            snap = document.read_snapshot(doc, node, False, context)
            whole = snap.rect == kit.Rect(0, 0, W, H)
            round_trip = snap.pixels == picture
            new = document.write_result(snap, changed(snap.pixels, fmt, snap.mask), "Dream: test")
            doc.waitForDone()
            names = [n.name() for n in doc.topLevelNodes() if n.type() == "paintlayer"]
            new_px = bytes(new.pixelData(0, 0, W, H))
            bpp = fmt.pixel_bytes
            outside_clear = inside_changed = True
            for y in range(H):
                for x in range(W):
                    o = (y * W + x) * bpp
                    inside = SEL[0] <= x < SEL[0] + SEL[2] and SEL[1] <= y < SEL[1] + SEL[3]
                    if inside and new_px[o:o + bpp] == before[o:o + bpp]:
                        inside_changed = False
                    if not inside and any(new_px[o:o + bpp]):
                        outside_clear = False
            report["formats"][model + " " + depth] = {
                "whole_canvas_read": whole, "round_trip": round_trip, "layers": names,
                "new_layer_space": [new.colorModel(), new.colorDepth()],
                "source_untouched": bytes(node.pixelData(0, 0, W, H)) == before,
                "inside_changed": inside_changed, "outside_transparent": outside_clear,
                "red_is_red": red_check(app, px, model, depth)}
            doc.close()
        report["ok"] = True
    except Exception:
        report["error"] = traceback.format_exc()
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)


def noop(args):
    """Starts Krita's runtime and does nothing: warms a profile for later runs."""
