"""The two errors of network-pickle reading, and how their messages quote the file.

Both are ``ValueError``: :class:`PickleFormatError` for a file that is not a network pickle
in the expected layout, :class:`UnsafePickleError` for one that asks for something the
format never needs. Messages quote values that come from the file, so they go through
:func:`short_repr`, which bounds depth and length (a hostile file must not make an error
message huge or make building it fail).
"""

from __future__ import annotations

import reprlib

__all__ = ["PickleFormatError", "UnsafePickleError", "short_repr"]


class PickleFormatError(ValueError):
    """The file is not a network pickle in the expected layout (truncated, corrupt, unexpected structure)."""


class UnsafePickleError(PickleFormatError):
    """The file asks for something the format never needs (a global, opcode or persistent id); nothing ran."""


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 80, 80


def short_repr(obj: object, limit: int = 120) -> str:
    """A bounded repr for messages (depth- and size-limited: the objects come from the file); never fails."""
    try:
        text = _REPR.repr(obj)
    except Exception:  # noqa: BLE001 - a message must never fail
        text = f"<{type(obj).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
