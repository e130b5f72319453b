"""The durable spool alone: SQLite settings, ownership, leases, expiry, bounds, fork.

Other processes are real subprocesses: a row's owner is "dead" only when its pid is.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from plausible_wsgi.spool.feeder import SpoolFeeder
from plausible_wsgi.spool.kept import KeptRows
from plausible_wsgi.spool.store import Spool, SpoolError, SpoolRecord
from plausible_wsgi.stats import CollectorStats, DropReason

BODY = b'{"domain":"example.com","name":"pageview","url":"https://example.com/"}'
ROOT = Path(__file__).resolve().parent.parent


def run_script(code: str, *args: str, timeout: float = 30.0) -> str:
    """Run ``code`` in a fresh interpreter; its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def rows(path: Path) -> list[tuple[int, object, int]]:
    """(id, owner_pid, attempts) of every row, read through a connection of our own."""
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT id, owner_pid, attempts FROM events ORDER BY id").fetchall()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "spool.sqlite3"


def test_the_file_is_wal_with_synchronous_normal(path: Path) -> None:
    spool = Spool(str(path))
    spool.append(BODY, "UA", "1.2.3.4")
    conn = spool._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    spool.close()


def test_a_row_is_committed_when_append_returns(path: Path) -> None:
    spool = Spool(str(path))
    record = spool.append(BODY, "Mozilla/5.0", "203.0.113.9")
    # Another connection (another process would do the same) sees it at once.
    with sqlite3.connect(path) as conn:
        stored = conn.execute(
            "SELECT body, user_agent, client_ip, created FROM events WHERE id = ?", (record.id,)
        ).fetchone()
    assert stored == (BODY, "Mozilla/5.0", "203.0.113.9", record.created)
    spool.close()


def test_claim_delete_release(path: Path) -> None:
    spool = Spool(str(path))
    ids = [spool.append(BODY, "UA", None).id for _ in range(5)]
    first = spool.claim(3, 60.0)
    assert [r.id for r in first.records] == ids[:3]
    assert spool.claim(10, 60.0).records[0].id == ids[3]  # claimed rows are not offered
    spool.delete(ids[:2])
    spool.release([ids[2]])
    again = spool.claim(10, 60.0)
    assert [r.id for r in again.records] == [ids[2]]
    assert spool.backlog() == 3
    spool.close()


def test_rows_of_a_dead_process_are_reclaimed_of_a_living_one_not(path: Path) -> None:
    writer = """
        import sys, time
        from plausible_wsgi.spool.store import Spool
        spool = Spool(sys.argv[1])
        for _ in range(3):
            spool.append(b"{}", "UA", None, lease_seconds=600)
        print("written", flush=True)
        if sys.argv[2] == "live":
            time.sleep(60)
    """
    living = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(writer), str(path), "live"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert living.stdout is not None
        assert living.stdout.readline().strip() == "written"
        run_script(writer, str(path), "dead")  # exits: its rows are orphans
        spool = Spool(str(path))
        claim = spool.claim(10, 60.0)
        assert len(claim.records) == 3  # the dead writer's, not the living one's
        assert {owner for _, owner, _ in rows(path)} == {living.pid, os.getpid()}
        assert claim.in_doubt == 0  # never attempted
    finally:
        living.kill()
        living.communicate()
    # Now the living one is gone too.
    assert len(spool.claim(10, 60.0).records) == 3
    spool.close()


def test_an_expired_lease_is_reclaimed_from_a_living_owner(path: Path) -> None:
    writer = """
        import sys, time
        from plausible_wsgi.spool.store import Spool
        Spool(sys.argv[1]).append(b"{}", "UA", None, lease_seconds=0.05)
        print("written", flush=True)
        time.sleep(60)
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(writer), str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "written"
        spool = Spool(str(path))
        deadline = time.monotonic() + 10
        while not spool.claim(10, 60.0).records:
            assert time.monotonic() < deadline, "the lease never ran out"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.communicate()
    spool.close()


def test_rows_past_max_age_are_counted_and_never_offered(path: Path) -> None:
    spool = Spool(str(path), max_age=0.05)
    spool.append(BODY, "UA", None)
    spool.append(BODY, "UA", None)
    time.sleep(0.1)
    fresh = spool.append(BODY, "UA", None)
    claim = spool.claim(10, 60.0)
    assert claim.expired == 2
    assert [r.id for r in claim.records] == [fresh.id]
    assert spool.backlog() == 1
    spool.close()


@pytest.mark.parametrize("resend", [True, False])
def test_in_doubt_rows_follow_the_resend_decision(path: Path, resend: bool) -> None:
    spool = Spool(str(path))
    doubtful = spool.append(BODY, "UA", None, lease_seconds=60)
    spool.mark_attempt(doubtful.id)  # the POST went out ...
    spool.release([doubtful.id])  # ... and its owner let go without an answer
    clean = spool.append(BODY, "UA", None)
    claim = spool.claim(10, 60.0, resend_in_doubt=resend)
    assert claim.in_doubt == 1
    if resend:
        assert [(r.id, r.attempts) for r in claim.records] == [(doubtful.id, 1), (clean.id, 0)]
        assert claim.in_doubt_dropped == 0
    else:
        assert [r.id for r in claim.records] == [clean.id]
        assert claim.in_doubt_dropped == 1
        assert [row[0] for row in rows(path)] == [clean.id]
    spool.close()


def test_the_row_bound_drops_the_oldest_free_rows(path: Path) -> None:
    spool = Spool(str(path), max_rows=100)
    held = spool.append(BODY, "UA", None, lease_seconds=60)  # being delivered: kept
    ids = [spool.append(BODY, "UA", None).id for _ in range(300)]
    assert spool.enforce_bounds() >= 1
    remaining = [row[0] for row in rows(path)]
    assert len(remaining) <= 100
    assert held.id in remaining
    assert remaining[-1] == ids[-1]  # the newest survive
    assert spool.evicted == 301 - len(remaining)
    spool.close()


def test_the_byte_bound_drops_the_oldest_free_rows(path: Path) -> None:
    spool = Spool(str(path), max_bytes=256 * 1024)
    big = b"x" * 4000
    for _ in range(200):  # about 800 KB
        spool.append(big, "UA", None)
    spool.enforce_bounds()
    size = spool._used_bytes(spool._conn())
    assert size <= 256 * 1024 + 8 * 4096  # within a few pages of the bound
    assert spool.evicted > 100
    spool.close()


def test_an_unusable_path_raises_spool_error(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="cannot open"):
        Spool(str(tmp_path / "missing-dir" / "spool.sqlite3"))


def test_a_forked_child_opens_its_own_connection(path: Path) -> None:
    out = run_script(
        """
        import os, sys
        from plausible_wsgi.spool.store import Spool
        spool = Spool(sys.argv[1])
        spool.append(b"{}", "parent", None)
        before = spool._conn()
        pid = os.fork()
        if pid == 0:
            ok = spool._conn() is not before
            for _ in range(50):
                spool.append(b"{}", "child", None)
            os._exit(0 if ok else 3)
        for _ in range(50):
            spool.append(b"{}", "parent", None)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), spool._conn() is before)
        """,
        str(path),
    )
    assert out.split() == ["0", "True"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counts = dict(conn.execute("SELECT user_agent, count(*) FROM events GROUP BY 1"))
    assert counts == {"parent": 51, "child": 50}


def test_several_processes_append_to_one_file(path: Path) -> None:
    writer = textwrap.dedent(
        """
        import sys
        from plausible_wsgi.spool.store import Spool
        spool = Spool(sys.argv[1])
        for i in range(300):
            spool.append(b"{}", sys.argv[2], None)
        """
    )
    Spool(str(path)).close()  # create the schema once, as the first process would
    procs = [
        subprocess.Popen([sys.executable, "-c", writer, str(path), f"w{i}"], cwd=ROOT)
        for i in range(4)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    with sqlite3.connect(path) as conn:
        counts = dict(conn.execute("SELECT user_agent, count(*) FROM events GROUP BY 1"))
    assert counts == {f"w{i}": 300 for i in range(4)}


def test_rows_of_a_zombie_are_reclaimed(path: Path) -> None:
    """A killed process nobody reaped yet (a container without an init) is dead."""
    writer = """
        import sys, time
        from plausible_wsgi.spool.store import Spool
        Spool(sys.argv[1]).append(b"{}", "UA", None, lease_seconds=600)
        print("written", flush=True)
        time.sleep(60)
    """
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(writer), str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "written"
        os.kill(proc.pid, 9)
        stat = Path(f"/proc/{proc.pid}/stat")
        deadline = time.monotonic() + 10
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":  # not reaped yet
            assert time.monotonic() < deadline
            time.sleep(0.01)
        spool = Spool(str(path))
        assert len(spool.claim(10, 60.0).records) == 1
        spool.close()
        proc.communicate()


def test_a_feeder_counts_a_row_refused_by_a_closed_engine_once(path: Path) -> None:
    """The engine (here: a put that refuses, as a closed one does, counting ``closed``)
    refuses rows the pump claimed: a backlog row of another writer is simply not taken,
    a row this feeder appended stays spooled once; none is dropped."""
    Spool(str(path)).append(BODY, None, None)  # another writer's row, free
    refused: list[SpoolRecord] = []

    def refuse(record: SpoolRecord) -> bool:
        refused.append(record)
        return False

    feeder = SpoolFeeder(str(path), refuse, name="test", capacity=10)
    try:
        assert feeder.pump_once() == 1
        stats = feeder.adjust(CollectorStats(dropped={"closed": len(refused)}))
        assert (stats.spooled, dict(stats.dropped), stats.accepted) == (0, {}, 0)
        assert [owner for _, owner, _ in rows(path)] == [None]  # given back, free

        assert feeder.append(BODY, None, None)  # refused at once: left in the spool
        feeder.pump_once()  # both again (the pump thread may have been first), refused
    finally:
        feeder.close()  # the pump thread, started by append(), stops
    stats = feeder.adjust(CollectorStats(dropped={"closed": len(refused)}))
    assert (stats.spooled, dict(stats.dropped), stats.accepted) == (1, {}, 1)
    assert [owner for _, owner, _ in rows(path)] == [None, None]


def test_kept_rows_recognise_a_retake_by_id_and_creation_time() -> None:
    kept = KeptRows(remember=True)
    record = SpoolRecord(7, BODY, None, None, created=100.0)
    kept.left(record, DropReason.SHUTDOWN)
    assert (kept.spooled, dict(kept.cancelled)) == (1, {DropReason.SHUTDOWN: 1})
    # Ids are reused once the table empties: another row with id 7 is not this one.
    assert not kept.retaken(record._replace(created=200.0))
    assert kept.retaken(record)
    assert not kept.retaken(record)
    assert (kept.spooled, dict(kept.cancelled)) == (0, {DropReason.SHUTDOWN: 1})
    kept.left(record)
    kept.forget_older_than(150.0)
    assert not kept.retaken(record)  # forgotten: still counted as left
    assert kept.spooled == 1


def test_fork_waits_until_no_thread_is_inside_sqlite() -> None:
    """A fork() while another thread is inside SQLite would leave the child one of
    SQLite's process-wide mutexes locked forever: the gate holds fork() back until the
    thread is out, and holds other threads out until fork() is done."""
    out = run_script(
        """
        import os, threading, time, warnings
        from plausible_wsgi.spool.connections import GATE

        order, inside, leave = [], threading.Event(), threading.Event()

        def hold():
            with GATE:
                inside.set()
                leave.wait(30)
                order.append("left")

        def fork():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # 3.12: threads
                pid = os.fork()
            if pid == 0:
                os._exit(0)
            order.append("forked")
            os.waitpid(pid, 0)

        holder = threading.Thread(target=hold)
        holder.start()
        inside.wait(30)
        forker = threading.Thread(target=fork)
        forker.start()
        deadline = time.monotonic() + 30
        while not GATE._forking:  # the fork waits at the gate
            assert time.monotonic() < deadline
            time.sleep(0.001)
        entered = threading.Event()

        def enter():
            with GATE:
                order.append("entered")
                entered.set()

        threading.Thread(target=enter).start()
        assert not entered.wait(0.05)  # held out while the fork waits
        order.append("released")
        leave.set()
        for thread in (holder, forker):
            thread.join(30)
        entered.wait(30)
        print(" ".join(order))
        """
    )
    order = out.split()
    # "forked" is said after fork() returned, when the gate has let "entered" in too.
    assert order[:2] == ["released", "left"]
    assert sorted(order[2:]) == ["entered", "forked"]
