#!/usr/bin/env bash
# Prepare a development checkout: system libraries (as root, on Debian/Ubuntu), then .venv with the app.
# Idempotent and quick when nothing changed. Usage: packaging/bootstrap.sh [--dev]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"

# Qt's xcb/offscreen plugins need these; tesseract gives OCR of scanned pages; bubblewrap isolates the REPL
# and libseccomp2 gives its worker a seccomp filter (with Landlock, the wall where bubblewrap cannot run);
# antiword reads Word 97-2003 .doc files.
apt_packages=(libgl1 libegl1 libxkbcommon0 libglib2.0-0 libfreetype6 libfontconfig1 libdbus-1-3
  libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-render-util0 libxcb-image0 libxcb-randr0
              tesseract-ocr tesseract-ocr-eng bubblewrap libseccomp2 antiword)
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_packages+=(python3-venv)
missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing system packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bootstrap: please install these system packages (as root): ${missing[*]}" >&2
  fi
fi

current() { [ -f "$1" ] && [ ! pyproject.toml -nt "$1" ]; }
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# a dev install (tests) includes everything the app needs, so it also satisfies a plain run
if current ".venv/.installed[dev]" || { [ -z "$extras" ] && current .venv/.installed; }; then
  exit 0
fi
echo "bootstrap: installing the app into .venv (a minute the first time)" >&2
log=".venv/bootstrap.log"
if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e ".$extras"; } \
    >"$log" 2>&1; then
  cat "$log" >&2
  echo "bootstrap: pip install failed (log above, also in $log)" >&2
  exit 1
fi
touch ".venv/.installed$extras"
