"""RLM Desktop: investigate large document collections with a Recursive Language Model."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Answer", "Case", "Citation", "open_case"]


def __getattr__(name: str) -> Any:
    # `import rlm_desktop` stays cheap (the CLI, the sandbox worker and the bundle import it first): the
    # Python API loads its modules only when a script uses it.
    if name in __all__:
        from rlm_desktop import api

        return getattr(api, name)
    raise AttributeError(f"module 'rlm_desktop' has no attribute {name!r}")
