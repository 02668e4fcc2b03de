# Sourced by the GIMP GUI drivers (gimp_gui_driver.sh, gimp_gui_loop.sh); run_gimp copies it beside them.
# The first visible window whose name matches $1, looked for up to $2 seconds. A window that closes while xdotool
# lists the windows makes it stop with an X error (BadWindow) and find nothing, so the search is repeated.
find_window() {
  tries=0
  while [ $tries -lt $(($2 * 4)) ]; do
    found=$(xdotool search --onlyvisible --name "$1" 2>/dev/null | head -n 1)
    if [ -n "$found" ]; then echo "$found"; return 0; fi
    sleep 0.25; tries=$((tries + 1))
  done
  return 1
}
