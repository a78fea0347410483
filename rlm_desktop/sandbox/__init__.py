"""Sandboxed REPL worker and its asyncio host for the RLM engine."""

from __future__ import annotations

from typing import Any


def walls() -> dict[str, Any]:
    """What this machine can wall the REPL with (see isolation.walls); for `doctor` and the settings dialog."""
    # Imported here, not at the top: the worker imports this package and must not load subprocess machinery.
    from rlm_desktop.sandbox.isolation import walls as machine_walls

    return machine_walls()
