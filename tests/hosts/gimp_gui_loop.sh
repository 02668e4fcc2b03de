#!/bin/sh
# Run inside a GIMP root by tests/test_gimp_host.py and benchmarks/gimp_loop.py: the real GIMP 3 window on a
# private Xvfb, the Lucid Dream dialog opened by the batch script ($BATCH, job in $LUCIDDREAM_GIMP_JOB), and a user
# played by xdotool: the steps in $LOOP_STEPS (comma-separated), each bounded in time:
#   preview    Alt+P (the dialog's Preview) and wait until the plug-in says the preview is shown (or failed)
#   supersede  Alt+P twice 0.3 s apart: the first preview is cancelled in the worker, the second is shown
#   kill       Alt+P, then kill the engine worker 1 s later (mid-preview): the plug-in must say so in one sentence
#   shot       a picture of the screen (Xvfb's frame buffer, XWD) and the dialog's geometry, in $OUT
#   ok         Return (OK: the full dream); cancel: Escape; await: wait for the result without pressing anything
#   looks      Alt+X (Explore looks…) until its grid is shown; pick: Space chooses the focused first look;
#   pickchannel  a mouse click on the second look (a channel), at the place the browser logged for it
# GIMP's terminal goes to $OUT/gimp.log (the plug-in's "luciddream: ..." lines); $OUT/times gets a line
# "<step> <seconds since the epoch>" as each step starts and "done <seconds>" when the result is written.
set -u
OUT=${OUT:-/work-share}
BATCH=${BATCH:-/work-share/gimp_dream_batch.py}
N=${DISPLAY_NUMBER:-78}
LOG="$OUT/gimp.log"
log() { echo "gui-loop: $*" >&2; }
. "$(dirname "$0")/gimp_gui_find.sh"   # find_window NAME SECONDS
now() { date +%s.%N; }
mkdir -p "$OUT/fb"
Xvfb ":$N" -screen 0 1280x1024x24 -fbdir "$OUT/fb" -nolisten tcp >/dev/null 2>&1 &
XVFB=$!
i=0
while [ ! -S "/tmp/.X11-unix/X$N" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
export DISPLAY=":$N"
: > "$LOG"
"${GIMP_GUI:-gimp-3.0}" -n -d -f --batch-interpreter python-fu-eval -b "exec(open('$BATCH').read())" --quit \
  >> "$LOG" 2>&1 &
GIMP=$!

count() { grep -c "$1" "$LOG" 2>/dev/null || true; }
wait_for() {   # wait_for PATTERN COUNT SECONDS: until PATTERN has appeared COUNT times in the log
  k=0
  while [ "$(count "$1")" -lt "$2" ] && [ $k -lt $(($3 * 10)) ] && kill -0 $GIMP 2>/dev/null; do
    sleep 0.1; k=$((k + 1))
  done
}
press() { xdotool windowfocus "$dialog" 2>/dev/null; xdotool key --clearmodifiers "$1"; }
ended() { echo $(( $(count "luciddream: preview shown") + $(count "luciddream: preview failed") )); }

dialog=$(find_window '^Lucid Dream$' 180)
if [ -z "$dialog" ]; then
  log "the dialog never appeared"
else
  log "dialog $dialog is open"
  sleep 2
  for step in $(echo "${LOOP_STEPS:-preview,cancel}" | tr ',' ' '); do
    echo "$step $(now)" >> "$OUT/times"
    before=$(ended)
    case $step in
      preview) press alt+p; wait_for "luciddream: preview \(shown\|failed\)" $((before + 1)) 120 ;;
      supersede) press alt+p; sleep 0.3; press alt+p; wait_for "luciddream: preview \(shown\|failed\)" $((before + 1)) 120 ;;
      kill)
        press alt+p; sleep 1
        # Only this GIMP's worker (a child of its plug-in): /proc is the machine's, other people's workers run too.
        for p in /proc/[0-9]*; do
          tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -q "luciddream.worker" || continue
          plugin=$(cut -d')' -f2 "$p/stat" 2>/dev/null | awk '{print $2}')
          owner=$(cut -d')' -f2 "/proc/$plugin/stat" 2>/dev/null | awk '{print $2}')
          if [ "$owner" = "$GIMP" ]; then kill -9 "${p#/proc/}"; log "killed worker ${p#/proc/}"; fi
        done
        wait_for "luciddream: preview \(shown\|failed\)" $((before + 1)) 60 ;;
      shot)
        sleep 0.5
        cp "$OUT/fb/Xvfb_screen0" "$OUT/screen.xwd"
        xdotool getwindowgeometry --shell "$dialog" > "$OUT/dialog.geometry" 2>/dev/null ;;
      ok)
        press Return
        k=0
        while ! grep -q "luciddream: result written\|luciddream: variation .* written" "$LOG" && [ $k -lt 3000 ] && kill -0 $GIMP 2>/dev/null; do
          sleep 0.05; k=$((k + 1))
        done
        echo "done $(now)" >> "$OUT/times" ;;
      await)   # the dialog closed by itself (Dream at full size after the preview): wait for the result
        k=0
        while ! grep -q "luciddream: result written" "$LOG" && [ $k -lt 3000 ] && kill -0 $GIMP 2>/dev/null; do
          sleep 0.05; k=$((k + 1))
        done
        echo "done $(now)" >> "$OUT/times" ;;
      looks)   # Alt+X (Explore looks…), until the browser shows its grid (or says why not)
        shown=$(count "luciddream: looks \(shown\|failed\)")
        press alt+x; wait_for "luciddream: looks \(shown\|failed\)" $((shown + 1)) 240 ;;
      pick)    # the keyboard in the browser: the first look has the focus; Space chooses it
        chosen=$(count "luciddream: looks chose")
        sleep 0.5; xdotool key --clearmodifiers space; wait_for "luciddream: looks chose" $((chosen + 1)) 20; sleep 0.5 ;;
      pickchannel)   # a mouse click on the second look (the layer's first channel), where the browser says it is
        chosen=$(count "luciddream: looks chose")
        sleep 0.5
        place=$(grep "luciddream: looks place 1 " "$LOG" | tail -n 1 | sed 's/.*looks place 1 //')
        cx=$(echo "$place" | awk '{print int($2 + $4 / 2)}'); cy=$(echo "$place" | awk '{print int($3 + $5 / 3)}')
        log "clicking $place at $cx,$cy"
        xdotool mousemove "$cx" "$cy" click 1; wait_for "luciddream: looks chose" $((chosen + 1)) 20; sleep 0.5 ;;
      cancel) press Escape ;;
    esac
    log "step $step finished"
  done
fi
i=0
while kill -0 $GIMP 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
kill $GIMP 2>/dev/null
kill $XVFB 2>/dev/null
wait $GIMP 2>/dev/null
cat "$LOG" >&2
log "gimp exited"
exit 0
