"""Where an email's stored text leaves its header lines (From/To/Cc/Date/Subject) for the body.

The viewer hides those lines: the header panel above the text already shows them. They stay in the
stored text (citations' offsets count them), so they are hidden, never cut.
"""

from __future__ import annotations

import re

# the lines ingest/mail.py writes before the body, in this order, each only when it has a value
_HEADER_LINE = re.compile(r"(?:From|To|Cc|Date|Subject): [^\n]*\n")


def header_block_end(text: str) -> int:
    """The offset of the body: just past the header lines and the blank line after them; 0 when the
    text does not start with such a block (then nothing is hidden)."""
    at = 0
    while match := _HEADER_LINE.match(text, at):
        at = match.end()
    if at == 0 or not text.startswith("\n", at):
        return 0
    return at + 1
