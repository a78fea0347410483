#!/usr/bin/env bash
# Run the whole test suite (sets everything up on first use). Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/packaging/bootstrap.sh" --dev
cd "$here"
export QT_QPA_PLATFORM=offscreen
.venv/bin/ruff check rlm_desktop tests benchmarks
.venv/bin/lint-imports --no-cache  # the layers and the Qt-free core (contracts in pyproject.toml)
exec .venv/bin/python -m pytest "$@"
