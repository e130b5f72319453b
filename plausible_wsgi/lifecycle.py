"""One registry for the process lifecycle: fork and interpreter exit.

- Fork (gunicorn ``--preload``, uWSGI, Celery prefork): ``os.register_at_fork`` runs
  :func:`_after_fork_in_child` in the child, which gives every registered object a
  fresh start through its ``after_fork_in_child()``: engines (new locks, buffer,
  threads; inherited events counted as ``fork``), and everything else holding a lock
  that a thread of the parent may have held at fork time (the rate-limited logs, the
  collectors' rejection log). Nothing there may log: the logging lock may be held.
- Exit: one ``atexit`` hook closes every engine within one shared deadline. Delivery
  threads are daemon threads, so this hook runs after the interpreter has joined the
  app's own non-daemon threads and ``concurrent.futures`` has run the app's pending
  jobs: events they track on their way out are delivered too. The hook is registered
  when the first engine starts its threads, so it runs before the ``atexit`` hooks
  registered earlier (a middleware's, which closes its other collectors).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Optional, Protocol

if TYPE_CHECKING:
    from .stats import CollectorStats

__all__ = [
    "check_fork",
    "close_all",
    "engines",
    "install_exit_hook",
    "register",
    "renew_after_fork",
]


class Closable(Protocol):
    shutdown_timeout: float

    @property
    def closed(self) -> bool: ...

    def after_fork_in_child(self) -> None: ...

    def begin_close(self) -> bool: ...

    def finish_close(self, deadline: float) -> None: ...

    def forked(self) -> bool: ...

    def stats(self) -> CollectorStats: ...


class Renewable(Protocol):
    def after_fork_in_child(self) -> None: ...


_engines: weakref.WeakSet[Closable] = weakref.WeakSet()
_renewables: weakref.WeakSet[Renewable] = weakref.WeakSet()
_by_key: dict[object, weakref.WeakSet[Closable]] = {}
_lock = threading.Lock()
#: Live engines for one endpoint and site beyond which a collector is built per request.
MANY_ALIKE = 16
_many_warned = False
_fork_hook_installed = False
_exit_hook_installed = False


def register(engine: Closable, key: object) -> bool:
    """Track ``engine`` for fork and exit; True when too many live engines share ``key``.

    Many live engines for one endpoint and site mean a collector built per request
    (2,000 requests held 4,000 threads and 2,000 sockets): warned about once, with
    the fix; the engine then bounds the damage itself.
    """
    global _fork_hook_installed, _many_warned
    with _lock:
        _engines.add(engine)
        same = _by_key.setdefault(key, weakref.WeakSet())
        same.add(engine)
        many = len(same) > MANY_ALIKE and sum(not e.closed for e in same) > MANY_ALIKE
        warn = many and not _many_warned
        _many_warned = _many_warned or many
        install = not _fork_hook_installed
        _fork_hook_installed = True
    if install:
        os.register_at_fork(after_in_child=_after_fork_in_child)
    if warn:
        logging.getLogger("plausible_wsgi").warning(
            "more than %d collectors for the same site are alive (%s); build one collector "
            "at startup and share it: a collector per request leaks threads and "
            "connections. These now send at once and release their thread when idle.",
            MANY_ALIKE,
            getattr(engine, "name", "?"),
        )
    return many


def renew_after_fork(obj: Renewable) -> None:
    """Call ``obj.after_fork_in_child()`` in every forked child while ``obj`` lives."""
    global _fork_hook_installed
    with _lock:
        _renewables.add(obj)
        install = not _fork_hook_installed
        _fork_hook_installed = True
    if install:
        os.register_at_fork(after_in_child=_after_fork_in_child)


def engines() -> list[Closable]:
    """Every live engine of this process (for reports and benchmarks)."""
    return list(_engines)


def install_exit_hook() -> None:
    """Register the exit flush (once); engines call this when they start threads."""
    global _exit_hook_installed
    with _lock:
        if _exit_hook_installed:
            return
        _exit_hook_installed = True
    atexit.register(close_all)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent may have held it: never acquire the old one
    for obj in list(_renewables):
        obj.after_fork_in_child()
    for engine in list(_engines):
        engine.after_fork_in_child()


def check_fork() -> None:
    """Reset now every engine inherited from a parent process.

    ``os.register_at_fork`` and the pid check in ``put()`` already do this; server
    hooks (gunicorn ``post_fork``, uWSGI ``postfork``) call it to make it explicit.
    """
    for engine in list(_engines):
        if engine.forked():
            engine.after_fork_in_child()


def close_all(timeout: Optional[float] = None) -> None:
    """Close every engine of this process within one shared deadline.

    ``timeout`` defaults to the largest ``shutdown_timeout`` among them: one budget
    for the whole process, not one per collector.
    """
    engines = [e for e in list(_engines) if e.begin_close()]
    if not engines:
        return
    budget = max(e.shutdown_timeout for e in engines) if timeout is None else timeout
    deadline = time.monotonic() + budget
    for engine in engines:
        engine.finish_close(deadline)
