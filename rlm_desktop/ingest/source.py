"""A file to extract, whether it lives on disk or inside another document (an attachment)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Source:
    """A named byte source. Exactly one of `path` and `data` is set."""

    name: str  # file name used for type detection and as a fallback title
    path: Path | None = None
    data: bytes | None = None
    # what the user typed for an encrypted PDF or DOCX: kept in memory for this extraction only, never in a repr
    password: str | None = field(default=None, repr=False)

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()

    def head(self, n: int = 4096) -> bytes:
        """The first `n` bytes, for sniffing the type without reading a large file whole."""
        if self.data is not None:
            return self.data[:n]
        assert self.path is not None
        with self.path.open("rb") as fh:
            return fh.read(n)

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix.lower()
