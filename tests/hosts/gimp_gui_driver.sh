#!/bin/sh
# Run inside a GIMP root by tests/test_gimp_host.py: the real GIMP 3 window ($GIMP_GUI: gimp-3.0 or gimp-3.2) on
# a private Xvfb, so the plug-in's dialog really opens (INTERACTIVE run), and Ctrl+Z really goes through GIMP's
# undo, which no PDB call can do.
#
# GIMP runs tests/hosts/gimp_dream_batch.py (job in $LUCIDDREAM_GIMP_JOB, results in $OUT); this script plays the
# user: Return on the "Lucid Dream" dialog (OK), then, once the batch script says it dreamed, Ctrl+Z in the image
# window. Every wait is bounded; the test judges the files the batch script writes.
set -u
OUT=${OUT:-/work-share}
BATCH=${BATCH:-/work-share/gimp_dream_batch.py}
N=${DISPLAY_NUMBER:-77}
log() { echo "gui-driver: $*" >&2; }
. "$(dirname "$0")/gimp_gui_find.sh"   # find_window NAME SECONDS

Xvfb ":$N" -screen 0 1280x1024x24 -nolisten tcp >/dev/null 2>&1 &
XVFB=$!
i=0
while [ ! -S "/tmp/.X11-unix/X$N" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
export DISPLAY=":$N"

"${GIMP_GUI:-gimp-3.0}" -n -d -f --batch-interpreter python-fu-eval -b "exec(open('$BATCH').read())" --quit &
GIMP=$!

# OK on the dialog: the plug-in's GimpUi.ProcedureDialog is titled "Lucid Dream".
dialog=$(find_window '^Lucid Dream$' 120)
if [ -n "$dialog" ]; then
  log "dialog $dialog is open; pressing OK (Return)"
  sleep 1
  # A picture of the dialog for people (docs/); roots with x11-apps have xwd.
  if command -v xwd >/dev/null 2>&1; then xwd -id "$dialog" -silent > "$OUT/dialog.xwd" 2>/dev/null || true; fi
  xdotool windowfocus "$dialog"; sleep 0.3
  xdotool key --clearmodifiers Return
else
  log "the dialog never appeared"
fi

# Ctrl+Z once the batch script has read the dreamed pixels.
i=0
while [ ! -f "$OUT/dreamed" ] && [ $i -lt 1200 ] && kill -0 $GIMP 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
if [ -f "$OUT/dreamed" ]; then
  image=$(find_window 'GIMP$' 10)
  log "image window ${image:-not found}; pressing Ctrl+Z"
  if [ -n "$image" ]; then
    xdotool windowfocus "$image"; sleep 0.5
    xdotool key --clearmodifiers ctrl+z
  fi
fi

i=0
while kill -0 $GIMP 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
kill $GIMP 2>/dev/null
kill $XVFB 2>/dev/null
wait $GIMP 2>/dev/null
status=$?
log "gimp exited with $status"
exit 0
