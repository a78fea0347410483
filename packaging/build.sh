#!/usr/bin/env bash
# Build the desktop bundle dist/rlm-desktop/ (PyInstaller, one folder) and print its size and the build time.
# Usage: packaging/build.sh [--clean]   (--clean drops PyInstaller's cache in build/ first: slower)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

"$here/packaging/bootstrap.sh"  # .venv with the app

# Qt's X11 platform plugin links to these; PyInstaller puts them in the bundle only if the build machine has
# them, and a desktop without them would fail with "could not load the Qt platform plugin xcb".
bundled_system_packages=(libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0)
missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${bundled_system_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "build: installing libraries to bundle: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
  else
    echo "build: WARNING: ${missing[*]} not installed: the bundle will need them on the user's machine" >&2
  fi
fi
if ! .venv/bin/python -c 'import PyInstaller' 2>/dev/null; then
  echo "build: installing PyInstaller into .venv (the 'packaging' extra)" >&2
  .venv/bin/python -m pip install -q -e ".[packaging]"
fi

clean=()
[ "${1:-}" = "--clean" ] && clean=(--clean)
started=$(date +%s)
# nice: a build takes minutes of both cores; keep the machine usable meanwhile
nice -n 10 .venv/bin/python -m PyInstaller --noconfirm "${clean[@]}" --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/rlm-desktop.spec
seconds=$(( $(date +%s) - started ))

bundle=dist/rlm-desktop
"$bundle/rlm-desktop" --version >/dev/null  # a bundle that cannot even start is not a build
# Libraries left to the user's machine: glibc, the GL/EGL drivers, libxcb and Wayland's client libraries
# (PyInstaller leaves those out on purpose: they must match the system's graphics stack).
unresolved="$(find "$bundle" -name '*.so*' -type f -exec env LD_LIBRARY_PATH="$bundle/_internal" ldd {} + 2>/dev/null \
  | sed -n 's/^[[:space:]]*\(lib[^ ]*\) => not found/\1/p' | { grep -v '^libwayland-' || true; } | sort -u | tr '\n' ' ')" || true
[ -z "$unresolved" ] || echo "build: WARNING: libraries neither bundled nor on this machine: $unresolved" >&2
echo "build: $bundle/rlm-desktop  size $(du -sh "$bundle" | cut -f1)  ($(find "$bundle" -type f | wc -l) files)" \
  "  build time ${seconds} s"
