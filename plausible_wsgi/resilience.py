"""How one delivery attempt fails: the vocabulary between the transport and the engine.

- :class:`AttemptError` is what a transport raises for a failed attempt; the retry
  policy (:meth:`~plausible_wsgi.config.RetryConfig.is_retry`) and the breaker judge it.
- :func:`parse_retry_after` reads ``Retry-After`` in both of its forms.
"""

from __future__ import annotations

import datetime
import email.utils
import time
from typing import Optional

__all__ = ["AttemptError", "parse_retry_after"]


class AttemptError(Exception):
    """One delivery attempt failed in a way that may be temporary.

    :param kind: ``"connect"`` (no request reached the server, or the connection
        broke before the request went out), ``"read_timeout"`` (the request went out
        and no answer came in time), ``"cut"`` (the request went out and the
        connection was cut before any answer), ``"status"``, ``"tls"`` (the server's
        certificate does not verify), or ``"invalid"`` (the event can never be sent).
        Compare with these strings (a ``str`` enum of them compares equal).
    """

    def __init__(
        self,
        kind: str,
        description: str,
        *,
        status: Optional[int] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(description)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after


def parse_retry_after(value: Optional[str], *, now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    Returns ``None`` for a missing or unreadable value and ``0.0`` for a date in the
    past; clamping to a sane maximum is the caller's job.
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
