# Run by tests/test_gimp_host.py inside real GIMP 3 (gimp-console --batch-interpreter python-fu-eval exec()s this
# file with Gimp, Gegl, Gio, GLib and GObject imported): the artist's loop on one image, as a list of actions.
#
# The job ($LUCIDDREAM_GIMP_JOB) holds "image" [w, h], "selection" [x, y, w, h] and "actions", each one of
#   {"do": "call", "proc": name, "drawable": layer name or "top", "args": {...}, "guide_layer": name}
#   {"do": "save_reopen"}            the image saved as .xcf, closed, and opened again
#   {"do": "snapshot", "tag": t}     every layer's name, record (parasite) and pixels (t-<i>.bin), dirtiness
#   {"do": "add_layer", "name": n}   a striped layer (a guide) below the photo
#   {"do": "gray_file", "path": p}   a grayscale PNG (a guide of another colour model); "rgb_file": a striped one
#   {"do": "other_image_layer"}      a layer of a second, grayscale image (its name: "gray guide")
# and "report.json" gets one entry per action. Judging happens in pytest.
import array
import json
import os
import sys
import time
import traceback

JOB = json.load(open(os.environ["LUCIDDREAM_GIMP_JOB"]))
OUT = JOB["out"]
KEY = "luciddream-record"
FORMAT = "R'G'B'A u8"


def pattern(w, h, stripes=False):
    values = array.array("B")
    for y in range(h):
        for x in range(w):
            if stripes:
                values.extend((255, 60, 0, 255) if x % 8 < 3 else (20, 20, 200, 255))
            else:
                values.extend(((x * 3 + y) % 256, (y * 5 + ((x * 7) % 13) * 4) % 256, ((x ^ y) * 9) % 256, 255))
    return values.tobytes()


def get(layer):
    rect = Gegl.Rectangle.new(0, 0, layer.get_width(), layer.get_height())
    return bytes(layer.get_buffer().get(rect, 1.0, FORMAT, Gegl.AbyssPolicy.NONE))


def put(layer, data):
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, layer.get_width(), layer.get_height()), FORMAT, data)
    buf.flush()


def find(img, name):
    if name == "top":
        return img.get_layers()[0]
    for layer in img.get_layers():
        if layer.get_name() == name:
            return layer
    raise KeyError(name)


def record(layer):
    parasite = layer.get_parasite(KEY)
    return bytes(parasite.get_data()).decode("utf-8") if parasite is not None else None


def call(img, action, extra_images):
    pdb = Gimp.get_pdb()
    proc = pdb.lookup_procedure(action["proc"])
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", img)
    config.set_core_object_array("drawables", [find(img, action.get("drawable", "photo"))])
    for key, value in action.get("args", {}).items():
        config.set_property(key, value)
    if action.get("guide_layer"):
        name = action["guide_layer"]
        layer = extra_images[name].get_layers()[0] if name in extra_images else find(img, name)
        config.set_property("guide-layer", layer)
    if action.get("guide_file"):
        config.set_property("guide-file", Gio.File.new_for_path(action["guide_file"]))
    t0 = time.time()
    result = proc.run(config)
    entry = {"run_s": round(time.time() - t0, 2), "status": result.index(0).value_nick}
    if result.length() > 1:
        entry["value"] = str(result.index(1))
    return entry


def main():
    report = {"ok": False, "gimp": Gimp.version(), "actions": []}
    extra_images = {}
    try:
        w, h = JOB["image"]
        img = Gimp.Image.new(w, h, Gimp.ImageBaseType.RGB)
        layer = Gimp.Layer.new(img, "photo", w, h, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
        img.insert_layer(layer, None, 0)
        put(layer, pattern(w, h))
        if JOB.get("selection"):
            img.select_rectangle(Gimp.ChannelOps.REPLACE, *JOB["selection"])
        img.clean_all()
        for action in JOB["actions"]:
            entry = {"do": action["do"]}
            if action["do"] == "call":
                entry.update(call(img, action, extra_images))
            elif action["do"] == "save_reopen":
                path = os.path.join(OUT, "loop.xcf")
                Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img, Gio.File.new_for_path(path), None)
                img.delete()
                img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
                entry["layers"] = [item.get_name() for item in img.get_layers()]
            elif action["do"] == "snapshot":
                layers = img.get_layers()
                entry["names"] = [item.get_name() for item in layers]
                entry["records"] = [record(item) for item in layers]
                entry["dirty"] = img.is_dirty()
                for i, item in enumerate(layers):
                    with open(os.path.join(OUT, f"{action['tag']}-{i}.bin"), "wb") as f:
                        f.write(get(item))
            elif action["do"] == "add_layer":
                guide = Gimp.Layer.new(img, action["name"], 40, 30, Gimp.ImageType.RGBA_IMAGE, 100.0,
                                       Gimp.LayerMode.NORMAL)
                img.insert_layer(guide, None, len(img.get_layers()))
                put(guide, pattern(40, 30, stripes=True))
            elif action["do"] in ("gray_file", "rgb_file"):
                rgb = action["do"] == "rgb_file"
                gray = Gimp.Image.new(40, 30, Gimp.ImageBaseType.RGB if rgb else Gimp.ImageBaseType.GRAY)
                glayer = Gimp.Layer.new(gray, "g", 40, 30, Gimp.ImageType.RGBA_IMAGE if rgb else
                                        Gimp.ImageType.GRAY_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
                gray.insert_layer(glayer, None, 0)
                if rgb:
                    put(glayer, pattern(40, 30, stripes=True))
                Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, gray, Gio.File.new_for_path(action["path"]), None)
                gray.delete()
            elif action["do"] == "other_image_layer":
                gray = Gimp.Image.new(32, 32, Gimp.ImageBaseType.GRAY)
                glayer = Gimp.Layer.new(gray, "gray guide", 32, 32, Gimp.ImageType.GRAY_IMAGE, 100.0,
                                        Gimp.LayerMode.NORMAL)
                gray.insert_layer(glayer, None, 0)
                extra_images["gray guide"] = gray
            print("LUCIDDREAM_ACTION", json.dumps(entry), file=sys.stderr, flush=True)
            report["actions"].append(entry)
        report["ok"] = True
    except Exception:
        report["error"] = traceback.format_exc()
    with open(os.path.join(OUT, "report.json"), "w") as f:
        json.dump(report, f, indent=1)


main()
