#!/usr/bin/env bash
# Install the built bundle for the current user: the app in ~/.local/lib/rlm-desktop/, the command
# ~/.local/bin/rlm-desktop, a menu entry and icons. No root, no Python needed on the machine.
# Usage: packaging/install-linux.sh [--uninstall] [BUNDLE_DIR]   (default bundle: dist/rlm-desktop;
#        PREFIX overrides ~/.local, XDG_DATA_HOME the menu and icon location)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
uninstall=0
if [ "${1:-}" = "--uninstall" ]; then uninstall=1; shift; fi
bundle="${1:-$here/dist/rlm-desktop}"
prefix="${PREFIX:-$HOME/.local}"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
app_dir="$prefix/lib/rlm-desktop"
sizes=(16 32 48 64 128 256 512)

refresh() {  # let menus notice; harmless where these tools are missing
  command -v update-desktop-database >/dev/null && update-desktop-database -q "$data/applications" || true
  command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$data/icons/hicolor" || true
}

if [ "$uninstall" = 1 ]; then
  rm -rf "$app_dir"
  rm -f "$prefix/bin/rlm-desktop" "$data/applications/rlm-desktop.desktop" \
        "$data/icons/hicolor/scalable/apps/rlm-desktop.svg"
  for s in "${sizes[@]}"; do rm -f "$data/icons/hicolor/${s}x${s}/apps/rlm-desktop.png"; done
  refresh
  echo "removed RLM Desktop from $prefix (your cases in ~/.local/share/rlm-desktop are kept)"
  exit 0
fi

[ -x "$bundle/rlm-desktop" ] || { echo "install: no bundle at $bundle (run packaging/build.sh)" >&2; exit 1; }
resources="$bundle/_internal/resources"  # the bundle carries its own .desktop file and icons
rm -rf "$app_dir.new"
mkdir -p "$prefix/lib" "$prefix/bin"
cp -a "$bundle" "$app_dir.new"
rm -rf "$app_dir"
mv "$app_dir.new" "$app_dir"
ln -sfn "$app_dir/rlm-desktop" "$prefix/bin/rlm-desktop"
mkdir -p "$data/applications"
# an absolute Exec: the menu works even where ~/.local/bin is not on the session's PATH
sed -e "s|^Exec=rlm-desktop|Exec=$prefix/bin/rlm-desktop|" -e "s|^TryExec=rlm-desktop|TryExec=$prefix/bin/rlm-desktop|" \
  "$resources/rlm-desktop.desktop" >"$data/applications/rlm-desktop.desktop"
install -Dm644 "$resources/icons/rlm-desktop.svg" "$data/icons/hicolor/scalable/apps/rlm-desktop.svg"
for s in "${sizes[@]}"; do
  install -Dm644 "$resources/icons/rlm-desktop-$s.png" "$data/icons/hicolor/${s}x${s}/apps/rlm-desktop.png"
done
refresh
echo "installed RLM Desktop $("$prefix/bin/rlm-desktop" --version | cut -d' ' -f2) in $app_dir;" \
  "command $prefix/bin/rlm-desktop; menu entry $data/applications/rlm-desktop.desktop"
