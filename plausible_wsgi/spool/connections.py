"""SQLite connections for many threads and processes, safe across ``fork()``.

- One connection per thread and per process (sqlite3's rule), opened on first use and
  found again by pid, so a process forked without Python's at-fork hooks (a uWSGI
  worker) opens its own too. The connection a child inherits is never used, and never
  closed by us (SQLite's rule: a connection must not cross a fork); the child keeps a
  reference to it, one file descriptor.
- :data:`GATE`: SQLite keeps process-wide mutexes (the unix VFS's among them). A fork()
  while another thread is inside SQLite would leave the child one of them locked
  forever, so every call goes through the gate and ``fork()`` waits until no thread
  is inside.
- :func:`execute` tries a statement again with short pauses while another process
  holds the write lock.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Callable, Optional

__all__ = ["GATE", "ForkGate", "ThreadConnections", "execute"]

#: Seconds a writer waits for another process's write transaction before giving up.
_BUSY_TIMEOUT = 2.0
#: First and longest pause, in seconds, between tries while another writer holds the
#: lock. SQLite's own busy handler sleeps 1 ms at first, then longer: with 4 processes
#: writing one file that cut the appends per second to a quarter of one process's.
_BUSY_FIRST_PAUSE = 0.00005
_BUSY_MAX_PAUSE = 0.002


class ForkGate:
    """Threads call into SQLite concurrently; ``fork()`` waits until none is inside.

    SQLite keeps process-wide mutexes (the unix VFS's among them). A fork() while
    another thread is inside SQLite would leave the child one of them locked forever.
    Not a plain lock: a checkpoint's fsync in the pump thread must not hold up the
    request threads' appends.
    """

    def __init__(self) -> None:
        self.reset()

    # On every append: the lock itself (a C context manager), not the Condition's
    # Python-level one, and a notify only when a fork waits (about 1 µs a call).
    def __enter__(self) -> None:
        with self._lock:
            while self._forking:
                self._cond.wait()
            self._inside += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._inside -= 1
            if self._forking and not self._inside:
                self._cond.notify_all()

    def close(self) -> None:
        """Before fork(): wait until no thread is inside, and let none in."""
        with self._lock:
            self._forking = True
            while self._inside:
                self._cond.wait()

    def open(self) -> None:
        """After fork(), in the parent: let threads in again."""
        with self._lock:
            self._forking = False
            self._cond.notify_all()

    def reset(self) -> None:
        """After fork(), in the child: the only thread left; nobody is inside."""
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._inside = 0
        self._forking = False


#: The gate of this process (reset in place in a forked child).
GATE = ForkGate()
#: Connections inherited through fork(): kept referenced so they are never closed.
_inherited: list[sqlite3.Connection] = []


def execute(conn: sqlite3.Connection, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
    """``conn.execute``, tried again with short pauses while the file is locked."""
    pause, deadline = _BUSY_FIRST_PAUSE, 0.0
    while True:
        try:
            return conn.execute(sql, params)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            now = time.monotonic()
            if not deadline:
                deadline = now + _BUSY_TIMEOUT
            elif now > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, _BUSY_MAX_PAUSE)


class ThreadConnections:
    """This thread's connection to one database file, opened by ``setup(conn)``."""

    def __init__(self, path: str, setup: Callable[[sqlite3.Connection], None]) -> None:
        self.path = path
        self._setup = setup
        self._reset()
        _all.add(self)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._local = threading.local()

    def after_fork_in_child(self) -> None:
        """Forget the parent's connections, keeping them referenced (never closed)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            _inherited.append(conn)
        self._reset()

    def get(self, pid: Optional[int] = None) -> sqlite3.Connection:
        """This thread's connection; :class:`sqlite3.Error` when it cannot be opened.

        :param pid: ``os.getpid()`` when the caller has just read it (a call saved).
        """
        if self._pid != (os.getpid() if pid is None else pid):  # forked without the
            self.after_fork_in_child()  # at-fork hooks (uWSGI)
        conn: Optional[sqlite3.Connection] = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with GATE:
            conn = sqlite3.connect(
                self.path,
                timeout=0,  # busy: execute() tries again, sooner than SQLite would
                isolation_level=None,  # autocommit; transactions are explicit
                check_same_thread=True,
            )
            try:
                self._setup(conn)
            except BaseException:
                conn.close()
                raise
        self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn: Optional[sqlite3.Connection] = getattr(self._local, "conn", None)
        if conn is not None and self._pid == os.getpid():
            self._local.conn = None
            with GATE:
                conn.close()


_all: weakref.WeakSet[ThreadConnections] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    GATE.reset()
    for connections in list(_all):
        connections.after_fork_in_child()


os.register_at_fork(
    before=GATE.close, after_in_parent=GATE.open, after_in_child=_after_fork_in_child
)
