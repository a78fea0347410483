#!/usr/bin/env bash
# Run RLM Desktop from this checkout (sets everything up on first use). Arguments go to `rlm-desktop`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/packaging/bootstrap.sh"
exec "$here/.venv/bin/rlm-desktop" "$@"
