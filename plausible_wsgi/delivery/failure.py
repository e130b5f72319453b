"""How one delivery attempt failed: :class:`FailureKind` and :class:`AttemptError`.

The transport raises, the engine's retry policy judges; neither knows the other's
internals. ``FailureKind`` is a ``str`` enum so ``exc.kind == "cut"`` keeps working.
"""

from __future__ import annotations

import enum
from typing import Optional, Union

__all__ = ["AttemptError", "FailureKind", "NothingSent"]


class FailureKind(str, enum.Enum):
    """Why an attempt failed, as far as the client can know."""

    #: No request reached the server, or it broke before the request went out whole:
    #: sending again is safe.
    CONNECT = "connect"
    #: The TLS handshake failed (certificate, protocol): not retried, nothing was sent.
    TLS = "tls"
    #: The request went out whole and no answer came within the attempt's deadline.
    READ_TIMEOUT = "read_timeout"
    #: The request went out whole and the connection was cut (or the answer was
    #: unreadable) before a status: the server may have recorded the event.
    CUT = "cut"
    #: A status that is not final (5xx, 408, 429).
    STATUS = "status"
    #: The event can never be sent (a header value the request cannot carry).
    INVALID = "invalid"

    def __str__(self) -> str:
        return str(self.value)


class AttemptError(Exception):
    """One delivery attempt failed in a way the retry policy judges.

    :param kind: a :class:`FailureKind` (or its string value).
    """

    def __init__(
        self,
        kind: Union[FailureKind, str],
        description: str,
        *,
        status: Optional[int] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(description)
        self.kind = FailureKind(kind)
        self.status = status
        self.retry_after = retry_after


class NothingSent(Exception):
    """A reused connection failed before a byte of the request left: sending it again on
    a fresh connection is safe, and not a retry."""
