"""Quoting values in messages: a bounded ``repr`` that never builds the full text.

A configuration can hold a value whose text is huge (a YAML alias bomb expands to a list
of 9^9 strings: its full ``repr`` alone takes gigabytes), and a file can store a name of
any length.  Every message that quotes a user's value goes through :func:`short` (a value)
or :func:`clip` (text already formatted).  A leaf module: it imports nothing of the package.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["short", "clip"]

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = _REPR.maxdeque = _REPR.maxarray = 8
_REPR.maxdict = 6


def short(value: Any, n: int = 80) -> str:
    """The ``repr`` of ``value`` cut to at most ``n`` characters (``...`` marks a cut).

    Containers and strings are abbreviated while the text is made (:mod:`reprlib`), so a
    huge or deeply shared value costs no more than its first few items.

    Examples
    --------
    >>> short("x" * 1000, 12)
    "'xxx...xxxx'"
    >>> short(list(range(100)), 30)
    '[0, 1, 2, 3, 4, 5, 6, 7, ...]'
    """
    _REPR.maxstring = _REPR.maxother = _REPR.maxlong = max(8, n)
    try:
        text = _REPR.repr(value)
    except Exception:  # a broken __repr__ must not hide the error being reported
        text = f"<{type(value).__name__} object>"
    return clip(text, n)


def clip(text: str, n: int = 80) -> str:
    """``text`` cut to at most ``n`` characters, ``...`` at the end when cut (for quoting text
    that is already formatted, such as a parser's message)."""
    text = str(text)
    return text if len(text) <= n else text[: max(0, n - 3)] + "..."
