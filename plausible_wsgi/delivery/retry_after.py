"""Reading a server's ``Retry-After`` (delta-seconds or HTTP-date).

The retry policy's decisions are :class:`~plausible_wsgi.delivery.policies.RetryConfig`'s;
the retries are run by :mod:`plausible_wsgi.delivery.retry`.
"""

from __future__ import annotations

import datetime
import time
from typing import Optional

__all__ = ["parse_retry_after"]


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
    # Plausible sends seconds; the email package (2 MB) loads only for a date.
    import email.utils  # noqa: PLC0415

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
