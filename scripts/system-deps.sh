#!/usr/bin/env bash
# System packages the test suite uses beyond Python: Debian's Chromium renders and screenshots
# report.html. Installs only what is missing, only as root with apt-get; otherwise says what to
# install and leaves the tests that need it to skip with that reason.
set -uo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing ${need[*]} (install them as root); dependent tests will skip" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}"
apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
  || echo "system-deps: apt-get could not install ${need[*]}" >&2
