"""Who a receiver's visitors are: a daily visitor hash and the sessions it keeps.

Plausible drops an ``engagement`` or ``pageleave`` from a visitor with no session
(an earlier event within 30 minutes); :class:`Visitors` remembers the last event of
each (site, visitor), bounded, to decide it the same way.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone

__all__ = ["Visitors", "root_domain"]

_SESSION_SECONDS = 30 * 60  # Plausible's session length
_MAX_SESSIONS = 100_000


class Visitors:
    """Visitor ids and sessions, safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._salt_day = ""
        self._salt = b""

    def id(self, user_agent: str, client_ip: str, domain: str, hostname: str) -> str:
        """A daily visitor hash, like Plausible's but not equal to it.

        Plausible hashes ``user_agent <> remote_ip <> domain <> root_domain(hostname)``
        with SipHash and a daily salt; we use keyed BLAKE2b (SipHash is not in
        :mod:`hashlib`) with a random salt drawn per app and per UTC day. So the same
        visitor keeps one id for a day, and ids mean nothing outside this app.
        """
        day = datetime.now(timezone.utc).date().isoformat()
        with self._lock:
            if day != self._salt_day:
                self._salt_day, self._salt = day, secrets.token_bytes(16)
            salt = self._salt
        material = user_agent + client_ip + domain + root_domain(hostname)
        return hashlib.blake2b(material.encode("utf-8"), digest_size=8, key=salt).hexdigest()

    def visit(self, domain: str, visitor: str, *, needs_session: bool) -> bool:
        """Note an event of ``visitor`` on ``domain``; ``False`` (and nothing noted)
        when it needs a session and the visitor has none."""
        now, key = time.monotonic(), (domain, visitor)
        with self._lock:
            if needs_session:
                last = self._sessions.get(key)
                if last is None or now - last > _SESSION_SECONDS:
                    return False
            self._sessions[key] = now
            self._sessions.move_to_end(key)
            while len(self._sessions) > _MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return True

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()


def root_domain(hostname: str) -> str:
    """The registrable domain of ``hostname``, approximated as its last two labels.

    The server asks the Public Suffix List, so ``shop.example.co.uk`` gives
    ``example.co.uk`` there and ``co.uk`` here; IP addresses and single labels are
    returned unchanged. Only the visitor id depends on it.
    """
    labels = hostname.split(".")
    if len(labels) <= 2 or ":" in hostname or labels[-1].isdigit():
        return hostname
    return ".".join(labels[-2:])
