"""The exception hierarchy: one root, two programmer-error branches.

Delivery problems never raise into the caller; they are counted in
:meth:`plausible_wsgi.PlausibleCollector.stats` and logged (rate-limited).
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "InvalidEventError", "PlausibleError"]


class PlausibleError(Exception):
    """Root of every exception raised by :mod:`plausible_wsgi`."""


class ConfigurationError(PlausibleError, ValueError):
    """A constructor or option received a value it cannot work with.

    The message names the argument and what was expected.
    """


class InvalidEventError(PlausibleError, ValueError):
    """An event Plausible would reject (HTTP 400) or silently mangle.

    Raised by ``track()`` and friends before anything is queued.

    :param field: the event field at fault (``"name"``, ``"url"``, ``"props"``, ...).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        #: The event field at fault.
        self.field = field
