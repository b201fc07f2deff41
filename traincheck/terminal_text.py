"""Text from a trace or an invariants file, made safe to print on a terminal.

Descriptions, ids, API and variable names come from files and processes we do
not control. Printed raw, an ANSI or OSC escape in one of them could set the
window title, clear the screen, or fake a line of output; a newline could fake a
whole alert. Everything user-facing that may carry such text passes through
:func:`printable` right before it is written, one line at a time.
"""

from __future__ import annotations

_BIDI_CONTROLS = [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPED = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *_BIDI_CONTROLS]
}
_TABLE = str.maketrans(_ESCAPED)


def printable(text: str) -> str:
    """``text`` with every control character (newline and tab included, C1 controls
    and bidirectional overrides too) written as a visible escape sequence."""
    return text.translate(_TABLE)
