#!/usr/bin/env bash
# Smoke-test the desktop bundle as a user's machine would run it: no Python anywhere it can see.
# Usage: packaging/smoke.sh [--no-build]   (--no-build reuses dist/rlm-desktop/)
#
# Builds the bundle, then runs it with `env -i` and a PATH holding only the system tools it uses (bwrap,
# unshare, tesseract). As root it also runs in a private mount namespace where every Python on this machine
# (the build's interpreter, the venv, /usr/bin/python3*, /usr/lib/python3*) is hidden, so a bundle that
# reached for one would fail. Steps: --version; ingest the documents in packaging/smoke/documents (plus notes
# enough to start the spawned extractor processes); docs; search; ask against the scripted fake
# OpenAI-compatible server on 127.0.0.1 (its REPL cells run in the bundle's sandbox worker, whose executable
# must be the bundle's); gui --screenshot offscreen, and on an X server when Xvfb is installed. The screenshot
# is left in dist/smoke-window.png.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

if [ "${1:-}" != "--no-build" ]; then
  packaging/build.sh
fi
bundle="$here/dist/rlm-desktop"
exe="$bundle/rlm-desktop"
[ -x "$exe" ] || { echo "smoke: no bundle at $bundle (run packaging/build.sh)" >&2; exit 1; }

work="$(mktemp -d /tmp/rlm-smoke.XXXXXX)"
server_pid=""
xvfb_pid=""
cleanup() {
  for pid in $server_pid $xvfb_pid; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
started=$(date +%s)
step() { echo "smoke: $*" >&2; }
# jget FILE EXPR: a Python expression over the JSON in FILE (as `d`), evaluated by the build's Python (host side)
jget() { .venv/bin/python -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
fail() { echo "smoke: FAILED: $*" >&2; exit 1; }

# --- a PATH with the system tools the app may start, and no Python --------------------------------------
mkdir -p "$work/bin" "$work/home"
for tool in bwrap unshare tesseract; do
  found="$(PATH=/usr/local/bin:/usr/bin:/bin command -v "$tool" || true)"
  [ -n "$found" ] && ln -s "$found" "$work/bin/$tool"
done

# --- hide every Python (root only: a private mount namespace) --------------------------------------------
hidden=()
if [ "$(id -u)" = 0 ] && unshare --mount --propagation private true 2>/dev/null; then
  build_python_prefix="$(.venv/bin/python -c 'import os, sys; print(os.path.realpath(sys.base_prefix))')"
  for d in "$build_python_prefix" "$here/.venv" /usr/lib/python3* /usr/local/lib/python3* "${HOME:-/root}/.pyenv"; do
    [ -d "$d" ] && hidden+=("$d")
  done
  for f in /usr/bin/python* /usr/local/bin/python*; do
    [ -f "$f" ] && [ ! -L "$f" ] && hidden+=("$f")
  done
fi
cat >"$work/isolate.sh" <<'EOF'
#!/usr/bin/env bash
# isolate.sh N HIDDEN... -- COMMAND...: hide N paths (tmpfs over folders, /dev/null over files), then run COMMAND.
set -euo pipefail
n="$1"; shift
for ((i = 0; i < n; i++)); do
  if [ -d "$1" ]; then mount -t tmpfs -o ro,size=4k none "$1"; else mount --bind /dev/null "$1"; fi
  shift
done
[ "$1" = "--" ] && shift
exec "$@"
EOF
chmod +x "$work/isolate.sh"

# Run the bundle: clean environment, no Python on PATH (and none on the machine when root).
display_env=("QT_QPA_PLATFORM=offscreen")
app() {
  local env=(env -i "PATH=$work/bin:/usr/bin:/bin" "HOME=$work/home" "LANG=C.UTF-8"
             "RLM_DESKTOP_HOME=$work/home" "${display_env[@]}" "OPENAI_API_KEY=sk-smoke")
  if [ "${#hidden[@]}" -gt 0 ]; then
    timeout 300 unshare --mount --propagation private "$work/isolate.sh" "${#hidden[@]}" "${hidden[@]}" -- \
      "${env[@]}" "$exe" "$@"
  else
    timeout 300 "${env[@]}" "$exe" "$@"
  fi
}

if [ "${#hidden[@]}" -gt 0 ]; then
  # prove the hiding works: the machine's python3 must not run inside
  if unshare --mount --propagation private "$work/isolate.sh" "${#hidden[@]}" "${hidden[@]}" -- \
      /usr/bin/env PATH=/usr/local/bin:/usr/bin:/bin python3 -c 'print(1)' >/dev/null 2>&1; then
    fail "a python3 still runs inside the isolated view"
  fi
  step "no Python visible to the bundle (hidden: ${hidden[*]})"
else
  step "not root: Python stays on the machine, but the bundle runs with env -i and a PATH without it"
fi
# no python3 on the PATH the bundle gets (/usr/bin/python3 is hidden above when root)
[ ! -e "$work/bin/python3" ] || fail "python3 on the bundle's PATH"

# --- 1. --version -----------------------------------------------------------------------------------------
version="$(app --version)"
step "--version: $version"
[[ "$version" == rlm-desktop\ * ]] || fail "--version printed '$version'"

# --- 2. ingest (9 files: enough for the spawned extractor processes, which are the bundle again) ------------
cp -r packaging/smoke/documents "$work/documents"
for i in 1 2 3 4; do
  printf 'Note %s: the harbour master phoned about container %s.\n' "$i" "$((i * 7))" >"$work/documents/note $i.txt"
done
app ingest "$work/documents" --case smoke --json >"$work/ingest.json"
read -r added failed documents < <(jget "$work/ingest.json" '" ".join(map(str, (d["added"], len(d["failed"]), d["documents"])))')
step "ingest: $added files added, $failed failed, $documents documents"
[ "$added" -ge 9 ] && [ "$failed" = 0 ] || fail "ingest: $(cat "$work/ingest.json")"

# --- 3. docs ----------------------------------------------------------------------------------------------
app docs --case smoke --json >"$work/docs.json"
kinds="$(jget "$work/docs.json" '",".join(sorted({x["kind"] for x in d}))')"
step "docs: $(jget "$work/docs.json" 'len(d)') documents, kinds $kinds"
for kind in pdf docx email text; do
  [[ ",$kinds," == *",$kind,"* ]] || fail "docs: no $kind document"
done

# --- 4. search (SQLite FTS5 inside the bundle) ------------------------------------------------------------
app search Rotterdam --case smoke --json >"$work/search.json"
hits="$(jget "$work/search.json" 'len(d)')"
step "search: $hits hits for 'Rotterdam'"
[ "$hits" -ge 1 ] || fail "search found nothing"

# --- 5. ask against the fake model server (the test's server runs on the build Python: it is not the app) ---
.venv/bin/python packaging/smoke/fake_server.py "$work/base_url" &
server_pid=$!
for _ in $(seq 100); do [ -s "$work/base_url" ] && break; sleep 0.1; done
[ -s "$work/base_url" ] || fail "the fake model server did not start"
app ask "When did the shipment leave Rotterdam?" --case smoke --json --base-url "$(cat "$work/base_url")" \
  --root-model gpt-5 --sub-model gpt-5-mini --price gpt-5=1.25:10 --price gpt-5-mini=0.25:2 --cap 1 \
  >"$work/ask.json" || fail "ask exited $?: $(head -c 2000 "$work/ask.json")"
status="$(jget "$work/ask.json" 'd["status"]')"
answer="$(jget "$work/ask.json" 'd["answer"]')"
verified="$(jget "$work/ask.json" 'sum(c["verified"] for c in d["citations"])')"
run_id="$(jget "$work/ask.json" 'd["run_id"]')"
step "ask: $status, $verified verified citation(s), \$$(jget "$work/ask.json" 'd["cost_usd"]'); answer: $answer"
[ "$status" = completed ] && [ "$verified" -ge 1 ] || fail "ask: $(head -c 2000 "$work/ask.json")"
worker_exe="$(sed -n 's/.*worker=\([^ ]*\) .*/\1/p' <<<"$answer")"
[ "$worker_exe" = "$(realpath "$exe")" ] || fail "the REPL worker ran '$worker_exe', not the bundle's $exe"
[[ "$answer" == *"frozen=True"* ]] || fail "the REPL worker was not the frozen app"
if [[ "$answer" == *"uid=65534"* ]]; then
  step "ask: the REPL worker was the bundle's executable, inside bubblewrap (uid nobody)"
else
  step "ask: the REPL worker was the bundle's executable (no bubblewrap here: Landlock and seccomp, or refused)"
fi

# --- 6. the window, offscreen ---------------------------------------------------------------------------
shot="$here/dist/smoke-window.png"
rm -f "$shot"
app gui --case smoke --open-run "$run_id" --screenshot "$work/window.png" >/dev/null
[ -s "$work/window.png" ] && [ "$(head -c 8 "$work/window.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] \
  || fail "gui --screenshot wrote no PNG"
cp "$work/window.png" "$shot"
step "gui: screenshot $shot ($(du -h "$shot" | cut -f1))"

# --- 7. the same window on a real X server (Qt's xcb plugin and the X libraries it needs), if Xvfb is here ---
if command -v Xvfb >/dev/null; then
  display=$(( 90 + RANDOM % 100 ))
  Xvfb ":$display" -screen 0 1600x1000x24 -nolisten tcp >/dev/null 2>&1 &
  xvfb_pid=$!
  for _ in $(seq 50); do [ -S "/tmp/.X11-unix/X$display" ] && break; sleep 0.1; done
  display_env=("DISPLAY=:$display" "QT_QPA_PLATFORM=xcb")
  app gui --case smoke --open-run "$run_id" --screenshot "$work/window-x11.png" >/dev/null \
    || fail "the window did not open on an X server (Qt's xcb platform plugin)"
  [ -s "$work/window-x11.png" ] || fail "gui on X11 wrote no screenshot"
  step "gui: the window also opens on an X server (Xvfb :$display, Qt xcb plugin)"
else
  step "gui: Xvfb not installed: the X11 check was skipped (apt-get install xvfb)"
fi

step "PASSED in $(( $(date +%s) - started )) s; bundle $(du -sh "$bundle" | cut -f1)"
