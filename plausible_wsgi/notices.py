"""Warnings that reach a person even in a process that never configured logging.

The package logs to ``logging.getLogger("plausible_wsgi")``, which has a
``NullHandler``: in an app that set up no logging, records go nowhere, and Python's own
``logging.lastResort`` never fires because that ``NullHandler`` counts as a handler.
For the few warnings that mean "your analytics are being lost" (delivery failing for
minutes, events without a visitor), :func:`warn` logs as usual and, *only when nobody
would see the record*, also writes one line to stderr, as ``logging.lastResort`` would.

"Nobody would see it" means: no handler other than a ``NullHandler`` on the
``plausible_wsgi`` logger or any logger it propagates to (the root included), no level
set on the ``plausible_wsgi`` logger, and logging not disabled for WARNING. An app
that configures logging in any way (``basicConfig``, ``dictConfig``, Django's
``LOGGING``, gunicorn's error log, or ``logging.getLogger("plausible_wsgi").setLevel``
to silence us) gets the record through its own handlers and never a second copy.
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref

from ._log import logger

__all__ = ["logging_configured", "warn", "warn_once"]


def logging_configured(log: logging.Logger = logger) -> bool:
    """Whether the app has a say in where ``log``'s records go (see the module docs)."""
    if log.level != logging.NOTSET or log.manager.disable >= logging.WARNING:
        return True
    current: logging.Logger | None = log
    while current is not None:
        if any(not isinstance(handler, logging.NullHandler) for handler in current.handlers):
            return True
        if not current.propagate:
            break
        current = current.parent
    return False


def warn(msg: str, *args: object) -> None:
    """``logger.warning(msg, *args)``, plus one stderr line when logging is unconfigured.

    Never put a visitor's IP, User-Agent or URL in ``msg``: it may reach stderr.
    """
    logger.warning(msg, *args)
    if not logging_configured():
        try:
            sys.stderr.write(f"plausible_wsgi: WARNING: {msg % args if args else msg}\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # a closed or missing stderr
            pass


_warned: weakref.WeakKeyDictionary[object, set[str]] = weakref.WeakKeyDictionary()
_warned_lock = threading.Lock()


def warn_once(owner: object, key: str, msg: str, *args: object) -> bool:
    """:func:`warn`, once per ``owner`` (a collector) and ``key``; True when it warned."""
    with _warned_lock:
        keys = _warned.setdefault(owner, set())
        if key in keys:
            return False
        keys.add(key)
    warn(msg, *args)
    return True
