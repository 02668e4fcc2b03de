# Run by tests/test_gimp_host.py inside real GIMP 3 (gimp-console-3.0 --batch-interpreter python-fu-eval, which
# exec()s this file with Gimp, Gegl, Gio, GLib and GObject already imported).
#
# It builds an image as the job file says (mode, precision, alpha, layer size and offsets, selection, layer kind),
# calls plug-in-luciddream through the PDB like a script or "Repeat" would, and writes what a test needs to judge
# the result from outside: the layer's pixels before and after, the selection, any new layer, the PDB status and
# message. Judging happens in pytest, so a failure there shows the numbers, not just "not ok".
import array
import json
import os
import sys
import time
import traceback

# One file may hold several jobs ("cases", each with its own "out" folder): one GIMP start-up for all of them.
JOBS = json.load(open(os.environ["LUCIDDREAM_GIMP_JOB"]))
JOBS = JOBS.get("cases", [JOBS])


def fmt_for(job):
    sample = {"u8": "u8", "u16": "u16", "float": "float"}[job["sample"]]
    model = ("Y'" if job["base"] == "gray" else "R'G'B'") + ("A" if job["alpha"] else "")
    return f"{model} {sample}"


def pattern(job, w, h):
    """Smooth gradients with a little texture: something the network can dream on, identical on every run."""
    channels = (1 if job["base"] == "gray" else 3) + (1 if job["alpha"] else 0)
    top = {"u8": 255, "u16": 65535, "float": 1.0}[job["sample"]]
    values = []
    for y in range(h):
        for x in range(w):
            r = (x * 3 + y) % 256 / 255.0
            g = (y * 5 + ((x * 7) % 13) * 4) % 256 / 255.0
            b = ((x ^ y) * 9) % 256 / 255.0
            px = [(r + g + b) / 3.0] if job["base"] == "gray" else [r, g, b]
            if job["alpha"]:
                px.append(1.0 if (x + y) % 5 else 0.75)
            values += [v * top if job["sample"] == "float" else int(round(v * top)) for v in px]
    code = {"u8": "B", "u16": "H", "float": "f"}[job["sample"]]
    return array.array(code, values).tobytes(), channels


def get(drawable, fmt):
    rect = Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height())
    return bytes(drawable.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.NONE))


def save(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)



def run_case():
    """One job: JOB and OUT are this case's (module globals, as the helpers above read them)."""
    report = {"ok": False, "gimp": Gimp.version()}
    try:
        t0 = time.time()
        W, H = JOB["image"]
        base = Gimp.ImageBaseType.GRAY if JOB["base"] == "gray" else Gimp.ImageBaseType.RGB
        precision = getattr(Gimp.Precision, JOB["precision"])
        img = Gimp.Image.new_with_precision(W, H, base, precision)
        lw, lh, ox, oy = JOB["layer"]
        if JOB["base"] == "gray":
            ltype = Gimp.ImageType.GRAYA_IMAGE if JOB["alpha"] else Gimp.ImageType.GRAY_IMAGE
        else:
            ltype = Gimp.ImageType.RGBA_IMAGE if JOB["alpha"] else Gimp.ImageType.RGB_IMAGE
        layer = Gimp.Layer.new(img, "photo", lw, lh, ltype, 100.0, Gimp.LayerMode.NORMAL)
        img.insert_layer(layer, None, 0)
        layer.set_offsets(ox, oy)
        fmt = fmt_for(JOB)
        data, channels = pattern(JOB, lw, lh)
        if JOB.get("pixels_file"):   # a photo as raw samples in the job's format (benchmarks/gimp_loop.py)
            data = open(JOB["pixels_file"], "rb").read()
        buf = layer.get_buffer()
        buf.set(Gegl.Rectangle.new(0, 0, lw, lh), fmt, data)
        buf.flush()
        drawable = layer
        if JOB.get("kind") == "text":
            drawable = Gimp.TextLayer.new(img, "Hello", Gimp.context_get_font(), 24.0, Gimp.Unit.pixel())
            img.insert_layer(drawable, None, 0)
        elif JOB.get("kind") == "group":
            drawable = Gimp.GroupLayer.new(img, "group")
            img.insert_layer(drawable, None, 0)
        elif JOB.get("kind") == "mask":
            drawable = layer.create_mask(Gimp.AddMaskType.WHITE)
            layer.add_mask(drawable)
        elif JOB.get("kind") == "locked":
            layer.set_lock_content(True)
        if JOB.get("indexed"):
            img.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE, 16, False, False, "")
        sel = JOB.get("selection")
        if sel:
            if JOB.get("ellipse"):
                img.select_ellipse(Gimp.ChannelOps.REPLACE, *sel)
            else:
                img.select_rectangle(Gimp.ChannelOps.REPLACE, *sel)
            for extra in JOB.get("add_selection", []):
                img.select_rectangle(Gimp.ChannelOps.ADD, *extra)
            if JOB.get("feather"):
                Gimp.Selection.feather(img, JOB["feather"])
            srect = Gegl.Rectangle.new(ox, oy, lw, lh)
            save("selection.bin", bytes(img.get_selection().get_buffer().get(srect, 1.0, "Y u8",
                                                                               Gegl.AbyssPolicy.NONE)))
        if not JOB.get("indexed"):
            save("before.bin", get(layer, fmt))
        if JOB.get("gui"):
            Gimp.Display.new(img)      # the window gimp_gui_driver.sh sends Ctrl+Z to
            Gimp.displays_flush()
        report["layers_before"] = len(img.get_layers())
        report["setup_s"] = round(time.time() - t0, 2)

        pdb = Gimp.get_pdb()
        proc = pdb.lookup_procedure("plug-in-luciddream")
        report["found"] = proc is not None
        try:   # what the dialog's preset menu lists: (nick, label) in menu order
            preset = proc.find_argument("preset")
            if preset is not None:
                choice = Gimp.param_spec_choice_get_choice(preset)
                report["preset_choices"] = [[nick, choice.get_label(nick)] for nick in choice.list_nicks()]
        except Exception:   # only the preset test needs these; it shows this error, the others go on
            report["preset_choices_error"] = traceback.format_exc()
        try:   # the class-look controls: the look menu, and the bounds and defaults of instance and class strength
            look = proc.find_argument("look")
            if look is not None:
                choice = Gimp.param_spec_choice_get_choice(look)
                report["look_choices"] = [[nick, choice.get_label(nick)] for nick in choice.list_nicks()]
                report["look_default"] = look.get_default_value()
            for name in ("instance", "class-strength"):
                spec = proc.find_argument(name)
                if spec is not None:
                    report[f"{name}_spec"] = [spec.minimum, spec.maximum, spec.get_default_value()]
        except Exception:
            report["look_choices_error"] = traceback.format_exc()
        config = proc.create_config()
        if JOB.get("last_values"):
            # What an interactive run leaves behind (only INTERACTIVE runs save them); Filters › Repeat reads it back.
            folder = os.path.join(Gimp.directory(), "plug-in-settings")
            os.makedirs(folder, exist_ok=True)
            # The plug-in's own run config is named GimpProcedureConfigRun-PROC; GIMP saves it as that name + ".last".
            with open(os.path.join(folder, "GimpProcedureConfigRun-plug-in-luciddream.last"), "w") as f:
                f.write(JOB["last_values"])
        config.set_property("run-mode", getattr(Gimp.RunMode, JOB.get("run_mode", "NONINTERACTIVE")))
        config.set_property("image", img)
        config.set_core_object_array("drawables", [drawable])
        for key, value in JOB["args"].items() if JOB.get("run_mode", "NONINTERACTIVE") == "NONINTERACTIVE" else ():
            config.set_property(key, value)
        with open(os.path.join(OUT, "started"), "w") as f:
            f.write(str(os.getpid()))
        img.clean_all()          # so that report["dirty"] says whether the run pushed anything onto the undo stack
        t1 = time.time()
        result = proc.run(config)
        report["run_s"] = round(time.time() - t1, 2)
        status = result.index(0)
        report["status"] = status.value_nick
        report["dirty"] = img.is_dirty()
        if status != Gimp.PDBStatusType.SUCCESS and result.length() > 1:
            report["message"] = str(result.index(1))
        if not JOB.get("indexed"):
            save("after.bin", get(layer, fmt))
        layers = img.get_layers()
        report["layers_after"] = len(layers)
        report["layer_names"] = [item.get_name() for item in layers]
        if len(layers) > report["layers_before"]:
            new = layers[0]
            report["new_offsets"] = list(new.get_offsets()[1:])
            report["new_size"] = [new.get_width(), new.get_height()]
            parasite = new.get_parasite("luciddream-record")   # the settings record (kit/record.py)
            report["new_record"] = bytes(parasite.get_data()).decode("utf-8") if parasite is not None else None
            save("new.bin", get(new, fmt))
        if JOB.get("gui"):
            settings = os.path.join(Gimp.directory(), "plug-in-settings",
                                    "GimpProcedureConfigRun-plug-in-luciddream.last")
            report["last_values"] = open(settings).read() if os.path.exists(settings) else None
            open(os.path.join(OUT, "dreamed"), "w").close()
            dreamed = get(layer, fmt)

            def undone():
                if len(img.get_layers()) < report["layers_after"]:
                    return True                       # the new layer went away
                return get(layer, fmt) != dreamed     # this layer changed back

            deadline = time.time() + 30
            while time.time() < deadline and not undone():   # the driver presses Ctrl+Z in the image window
                time.sleep(0.2)
            time.sleep(0.5)
            report["layers_after_undo"] = len(img.get_layers())
            save("undone.bin", get(layer, fmt))
        report["channels"] = channels
        report["ok"] = True
    except Exception:
        report["error"] = traceback.format_exc()
    with open(os.path.join(OUT, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    print("LUCIDDREAM_REPORT", json.dumps(report), file=sys.stderr)


for JOB in JOBS:
    OUT = JOB["out"]
    run_case()
