#!/usr/bin/env bash
# System packages the test suite uses beyond Python: Debian's Chromium renders and screenshots
# report.html. Installs only what is missing, only as root with apt-get; otherwise says what to
# install and leaves the tests that need it to skip with that reason. HARNESS_REQUIRE_CHROMIUM=1
# (CI) makes a missing Chromium exit 1 instead, as the tests then fail rather than skip.
set -uo pipefail
give_up() {
  echo "system-deps: $*" >&2
  [ "${HARNESS_REQUIRE_CHROMIUM:-0}" = 1 ] && exit 1
  exit 0
}
# Where the harness looks (harness/report/browser.py): $HARNESS_CHROMIUM, /usr/bin/chromium, PATH.
have_chromium() {
  local c
  for c in "${HARNESS_CHROMIUM:-}" /usr/bin/chromium "$(command -v chromium 2>/dev/null)"; do
    [ -n "$c" ] && [ -f "$c" ] && [ -x "$c" ] && return 0
  done
  return 1
}
need=()
have_chromium || need+=(chromium fonts-dejavu-core)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  give_up "missing ${need[*]} (install them as root); dependent tests will skip"
fi
echo "system-deps: installing ${need[*]}"
apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
  || give_up "apt-get could not install ${need[*]}; dependent tests will skip"
have_chromium || give_up "no chromium after installing ${need[*]}"
exit 0
