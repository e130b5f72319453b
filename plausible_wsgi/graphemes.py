"""Counting and cutting text by user-perceived characters (extended grapheme clusters).

Plausible counts an event name's 120 characters and cuts a referrer at 2000 with
Elixir's ``String`` functions, which work on extended grapheme clusters (Unicode
UAX #29): ``"e\\u0301"`` or a family emoji is one. The standard library has no
segmentation, so this uses the ``regex`` package's ``\\X`` (the optional extra
``plausible-wsgi[unicode]``, installed with ``[dev]``); without it a close
approximation from :mod:`unicodedata` is used (combining marks, joiners, variation
selectors, emoji modifiers, flags and Hangul syllables join their cluster).

Both functions are only reached for text longer than the limit in code points, which
is never shorter in graphemes: the common path costs one ``len()``.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import unicodedata
from typing import Any, Callable

__all__ = ["count", "truncate", "uses_regex"]


#: Whether the exact UAX #29 segmentation (``regex``) is in use.
uses_regex = importlib.util.find_spec("regex") is not None


@functools.cache
def _load_regex() -> Callable[[str], list[str]] | None:
    # On first use, not at import: ``regex`` takes longer to import than the rest of
    # the event rules, and only text over a limit ever needs it.
    if not uses_regex:
        return None
    import regex  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415 (optional)

    pattern: Any = regex.compile(r"\X")
    return pattern.findall  # type: ignore[no-any-return]


_JOINS = re.compile(
    "[\u200d\ufe00-\ufe0f\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f\u1160-\u11ff\ud7b0-\ud7ff]"
)
_RI = ("\U0001f1e6", "\U0001f1ff")


def _approximate(text: str) -> list[str]:
    clusters: list[str] = []
    previous = ""
    for char in text:
        joins = bool(clusters) and (
            unicodedata.category(char) in ("Mn", "Me", "Mc")
            or _JOINS.match(char) is not None
            or previous == "\u200d"
            or (previous == "\r" and char == "\n")
            or (
                _RI[0] <= char <= _RI[1]
                and len(clusters[-1]) == 1
                and _RI[0] <= clusters[-1] <= _RI[1]  # a flag is a pair of indicators
            )
        )
        if joins:
            clusters[-1] += char
        else:
            clusters.append(char)
        previous = char
    return clusters


def _clusters(text: str) -> list[str]:
    split = _load_regex()
    return split(text) if split is not None else _approximate(text)


def count(text: str) -> int:
    """The number of grapheme clusters in ``text``."""
    return len(_clusters(text))


def truncate(text: str, limit: int) -> str:
    """``text`` cut to its first ``limit`` grapheme clusters (``String.slice/2``)."""
    if len(text) <= limit:
        return text
    return "".join(_clusters(text)[:limit])
