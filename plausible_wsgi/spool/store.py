"""A durable event store: one SQLite file shared by the processes of a host.

Each row is what one ``POST /api/event`` needs — the encoded JSON body, the visitor's
User-Agent and IP — plus when it was made and who is delivering it. The store knows
nothing of HTTP; :class:`~plausible_wsgi.spool.feeder.SpoolFeeder` moves rows into a delivery
engine.

Durability (``journal_mode=WAL``, ``synchronous=NORMAL``): ``append()`` returns after
its transaction is committed to the write-ahead log, without an ``fsync``. A process
crash, ``SIGKILL`` or OOM kill right after loses nothing (the log is in the kernel's page
cache, and the next connection replays it). A power loss or kernel panic may lose the
transactions of the last moments (those not yet checkpointed or written back by the
kernel — typically under a second, at most the last checkpoint interval); the file is
never corrupted. ``synchronous=FULL`` would close that gap at the cost of an ``fsync``
per event, which for analytics is not worth it.

Ownership: a row is free, or claimed by one process (pid, a tag naming that process
incarnation, and a lease deadline). A process that is gone (its pid no longer exists,
or now belongs to another process) or whose lease ran out loses its rows to the next
:meth:`Spool.claim` of a living one. Owners renew their leases while they hold rows.

In doubt: ``mark_attempt()`` records that a POST is about to go out. A row with an
attempt that comes back free (its owner died mid-POST, or closed with the POST cut
off) may already be counted by Plausible. ``claim(resend_in_doubt=...)`` resends it or
drops it — the same decision as :attr:`RetryConfig.retry_connection_cuts` for a
connection cut before the answer — and counts it either way.

Processes and threads: one connection per thread and per process, safe across
``fork()`` (see :mod:`plausible_wsgi.spool_conn`).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Optional

from .connections import GATE, ThreadConnections, execute
from .owner import alive, process_tag

__all__ = ["Claim", "Spool", "SpoolError", "SpoolRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    created REAL NOT NULL,
    body BLOB NOT NULL,
    user_agent TEXT,
    client_ip TEXT,
    owner_pid INTEGER,
    owner_tag TEXT,
    lease_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0
);
-- No index: one would cost about a third of each append. Claims walk the rows in id
-- order and skip the claimed ones, which are few (at most what deliverers hold).
"""
_INSERT = (
    "INSERT INTO events (created, body, user_agent, client_ip, owner_pid, owner_tag, "
    "lease_until) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = "id, body, user_agent, client_ip, created, attempts"
#: WAL pages after which a commit checkpoints by itself (SQLite's default is 1,000).
_WRITER_CHECKPOINT_PAGES = 16_000
#: The size bound is checked once per this many appends of a process.
_BOUND_CHECK_EVERY = 256


class SpoolError(Exception):
    """The spool file cannot be opened or written (full disk, permissions, corruption)."""


class SpoolRecord(NamedTuple):
    """One stored event, as a delivery engine gets it."""

    id: int
    body: bytes
    user_agent: Optional[str]
    client_ip: Optional[str]
    #: ``time.time()`` when the event was appended.
    created: float
    #: POSTs started for it so far (by any process).
    attempts: int = 0


class Claim(NamedTuple):
    """What one :meth:`Spool.claim` did."""

    records: list[SpoolRecord]
    #: Rows older than ``max_age``, deleted unsent.
    expired: int
    #: Rows reclaimed whose POST had gone out without an answer (resent or dropped).
    in_doubt: int
    #: Of those, the rows deleted unsent (``resend_in_doubt=False``).
    in_doubt_dropped: int
    #: The rows deleted unsent, expired first-come: for the ``on_drop`` hook.
    expired_rows: tuple[SpoolRecord, ...] = ()
    in_doubt_dropped_rows: tuple[SpoolRecord, ...] = ()


# About 300 lines, over the usual ~250: every statement on the file's one table lives
# here, so the schema and each use of it can be read together.
class Spool:
    """A bounded, durable, multi-process event store in one SQLite file.

    :param path: the database file; created with its directory's permissions.
    :param max_age: seconds after which a row is not sent any more (counted expired).
    :param max_rows: bound on the rows in the file; the oldest free rows make room.
    :param max_bytes: bound on the file's used pages, likewise.
    :raises SpoolError: when the file cannot be opened or initialised.
    """

    def __init__(
        self,
        path: str,
        *,
        max_age: float = 1800.0,
        max_rows: int = 100_000,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.path = os.fspath(path)
        self.max_age = max_age
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._appends = 0
        #: Rows this process deleted to keep the bound (oldest first).
        self.evicted = 0
        self._owner()
        self._connections = ThreadConnections(self.path, self._setup)
        self._conn()  # fail now, in the constructor, for a bad path

    def __repr__(self) -> str:
        return f"Spool({self.path!r})"

    def _owner(self) -> None:
        """Who this process is, as a row owner (anew in a forked child)."""
        self._pid = os.getpid()
        self._tag = process_tag(self._pid) or f":{self._pid}"
        self._namespace = self._tag.rpartition(":")[0]

    def _conn(self) -> sqlite3.Connection:
        pid = os.getpid()
        if self._pid != pid:
            self._owner()
        try:
            return self._connections.get(pid)
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot open the spool {self.path!r}: {exc}") from None

    @staticmethod
    def _setup(conn: sqlite3.Connection) -> None:
        execute(conn, "PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # A checkpoint fsyncs: in a commit on the request path it cost up to 250 ms
        # here. Delivering processes checkpoint from their pump thread (checkpoint());
        # this threshold only bounds the log when none runs.
        conn.execute(f"PRAGMA wal_autocheckpoint={_WRITER_CHECKPOINT_PAGES}")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                execute(conn, statement)

    # -- writing ---------------------------------------------------------------------

    def append(
        self,
        body: bytes,
        user_agent: Optional[str],
        client_ip: Optional[str],
        *,
        lease_seconds: Optional[float] = None,
    ) -> SpoolRecord:
        """Store one event, committed when this returns.

        :param lease_seconds: claim the row for this process at once (it will deliver
            it itself); ``None`` leaves it free for any deliverer (a relay).
        :raises SpoolError: the row could not be committed.
        """
        now = time.time()
        owned = lease_seconds is not None
        try:
            conn = self._conn()
            with GATE:
                cursor = execute(
                    conn,
                    _INSERT,
                    (
                        now,
                        body,
                        user_agent,
                        client_ip,
                        self._pid if owned else None,
                        self._tag if owned else None,
                        now + lease_seconds if lease_seconds is not None else None,
                    ),
                )
            self._appends += 1
            if self._appends % _BOUND_CHECK_EVERY == 0:
                self.enforce_bounds()
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot write to the spool {self.path!r}: {exc}") from None
        row_id = cursor.lastrowid
        assert row_id is not None
        return SpoolRecord(row_id, body, user_agent, client_ip, now)

    def mark_attempt(self, row_id: int) -> None:
        """Record that a POST of this row is about to go out."""
        self._write("UPDATE events SET attempts = attempts + 1 WHERE id = ?", ((row_id,),))

    def delete(self, ids: Iterable[int]) -> None:
        """Forget rows whose POST settled (Plausible answered, or they failed for good)."""
        self._write("DELETE FROM events WHERE id = ?", [(i,) for i in ids])

    def release(self, ids: Iterable[int]) -> None:
        """Give rows back, unsent, for any deliverer to claim later."""
        self._write(
            "UPDATE events SET owner_pid = NULL, owner_tag = NULL, lease_until = NULL WHERE id = ?",
            [(i,) for i in ids],
        )

    def renew(self, lease_seconds: float) -> None:
        """Extend the lease of every row this process holds."""
        self._write(
            "UPDATE events SET lease_until = ? WHERE owner_pid = ? AND owner_tag = ?",
            ((time.time() + lease_seconds, self._pid, self._tag),),
        )

    def release_mine(self) -> None:
        """Give back every row this process holds (at close)."""
        self._write(
            "UPDATE events SET owner_pid = NULL, owner_tag = NULL, lease_until = NULL "
            "WHERE owner_pid = ? AND owner_tag = ?",
            ((self._pid, self._tag),),
        )

    def _write(self, sql: str, params: Sequence[tuple[object, ...]]) -> None:
        if not params:
            return
        try:
            conn = self._conn()
            with GATE:
                if len(params) == 1:
                    execute(conn, sql, params[0])
                else:
                    execute(conn, "BEGIN IMMEDIATE")
                    try:
                        conn.executemany(sql, params)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot write to the spool {self.path!r}: {exc}") from None

    # -- claiming --------------------------------------------------------------------

    def claim(
        self,
        limit: int,
        lease_seconds: float,
        *,
        resend_in_doubt: bool = True,
        sweep: bool = True,
    ) -> Claim:
        """Lease up to ``limit`` of the oldest deliverable rows to this process.

        Deletes (and counts) rows older than ``max_age`` on the way, and resends or
        drops in-doubt rows. ``sweep`` first frees the rows of owners that are gone or
        whose lease ran out: a scan of the claimed rows, so not needed on every call.

        :raises SpoolError: the file cannot be read or written.
        """
        now = time.time()
        try:
            conn = self._conn()
            with GATE:
                execute(conn, "BEGIN IMMEDIATE")
                try:
                    if sweep:
                        self._sweep(conn, now)
                    claim = self._claim_free(conn, limit, now, lease_seconds, resend_in_doubt)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot claim from the spool {self.path!r}: {exc}") from None
        return claim

    def _sweep(self, conn: sqlite3.Connection, now: float) -> None:
        """Free the rows of owners that are gone, and of leases that ran out."""
        free = "UPDATE events SET owner_pid = NULL, owner_tag = NULL, lease_until = NULL "
        owners = conn.execute(
            "SELECT DISTINCT owner_pid, owner_tag FROM events WHERE owner_pid IS NOT NULL"
        ).fetchall()
        for pid, tag in owners:
            if (pid, tag) != (self._pid, self._tag) and not alive(pid, tag, self._namespace):
                conn.execute(free + "WHERE owner_pid = ? AND owner_tag IS ?", (pid, tag))
        conn.execute(
            free + "WHERE lease_until < ? AND NOT (owner_pid = ? AND owner_tag = ?)",
            (now, self._pid, self._tag),
        )

    def _claim_free(
        self,
        conn: sqlite3.Connection,
        limit: int,
        now: float,
        lease_seconds: float,
        resend_in_doubt: bool,
    ) -> Claim:
        oldest_allowed = now - self.max_age
        records: list[SpoolRecord] = []
        expired: list[SpoolRecord] = []
        doubtful: list[SpoolRecord] = []
        in_doubt = 0
        after = 0
        # Oldest first (id order); expired rows come first and are deleted on the way,
        # so one more round may be needed to fill ``limit``.
        while len(records) < limit:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE owner_pid IS NULL AND id > ? "
                "ORDER BY id LIMIT ?",
                (after, limit - len(records)),
            ).fetchall()
            if not rows:
                break
            for row in rows:
                record = SpoolRecord(*row)
                after = record.id
                if record.created < oldest_allowed:
                    expired.append(record)
                    continue
                if record.attempts:
                    in_doubt += 1
                    if not resend_in_doubt:
                        doubtful.append(record)
                        continue
                records.append(record)
        conn.executemany("DELETE FROM events WHERE id = ?", [(r.id,) for r in expired + doubtful])
        conn.executemany(
            "UPDATE events SET owner_pid = ?, owner_tag = ?, lease_until = ? WHERE id = ?",
            [(self._pid, self._tag, now + lease_seconds, r.id) for r in records],
        )
        return Claim(
            records, len(expired), in_doubt, len(doubtful), tuple(expired), tuple(doubtful)
        )

    # -- the bound -------------------------------------------------------------------

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the file, without blocking anyone (PASSIVE)."""
        try:
            conn = self._conn()
            with GATE:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot checkpoint the spool {self.path!r}: {exc}") from None

    def enforce_bounds(self) -> int:
        """Delete the oldest free rows beyond ``max_rows``/``max_bytes``; how many."""
        conn = self._conn()
        with GATE:
            # The id span is an upper bound on the rows, read off the rowid tree at once;
            # only when it is over the bound is the table counted.
            low, high = conn.execute(  # one aggregate per SELECT: each reads one leaf
                "SELECT (SELECT min(id) FROM events), (SELECT max(id) FROM events)"
            ).fetchone()
            rows = 0 if low is None else high - low + 1
            if rows > self.max_rows:
                rows = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            excess = rows - self.max_rows
            used = self._used_bytes(conn)
            if used > self.max_bytes and rows:
                # Rows are of similar size: drop the share of them that is too much.
                excess = max(excess, int(rows * (used - self.max_bytes) / used) + 1)
            if excess <= 0:
                return 0
            deleted: int = execute(
                conn,
                "DELETE FROM events WHERE id IN (SELECT id FROM events "
                "WHERE owner_pid IS NULL ORDER BY id LIMIT ?)",
                (excess,),
            ).rowcount
        self.evicted += deleted
        return deleted

    @staticmethod
    def _used_bytes(conn: sqlite3.Connection) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        unused = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - unused) * size)

    # -- reading ---------------------------------------------------------------------

    def backlog(self) -> int:
        """Rows in the file (every process's, claimed or not)."""
        try:
            conn = self._conn()
            with GATE:
                count: int = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot read the spool {self.path!r}: {exc}") from None
        return count

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        self._connections.close()
