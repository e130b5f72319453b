"""Reading a server's ``Retry-After``; :class:`AttemptError` is re-exported from
:mod:`plausible_wsgi.attempt` for the modules that imported it from here.

The retry policy's decisions are :class:`~plausible_wsgi.config.RetryConfig`'s, the
retries are run by :mod:`plausible_wsgi.retry`, the breaker is
:mod:`plausible_wsgi.breaker`.
"""

from __future__ import annotations

import datetime
import email.utils
import time
from typing import Optional

from .attempt import AttemptError

__all__ = ["AttemptError", "parse_retry_after"]


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
