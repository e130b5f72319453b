"""SIGKILL under load, gunicorn (sync, gthread) and uWSGI: a worker, then the master.

With a spool, every page whose response the client received fully is delivered once
the processes are gone and a relay ran; the tolerance per killed worker is one page lost
and one duplicate per POST in flight (see real_servers.check_tally).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
from real_servers import Gunicorn, Load, Server, Uwsgi, check_tally, drain, tally

from plausible_wsgi.testing import PlausibleReceiver

pytestmark = pytest.mark.slow

SERVERS: dict[str, Callable[[Path, str, Path], Server]] = {
    "gunicorn-sync": lambda tmp, url, spool: Gunicorn(tmp, url, spool, "sync"),
    "gunicorn-gthread": lambda tmp, url, spool: Gunicorn(tmp, url, spool, "gthread"),
    "uwsgi": lambda tmp, url, spool: Uwsgi(tmp, url, spool, "--py-call-uwsgi-fork-hooks"),
}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


NO_UWSGI = pytest.mark.skipif(
    not Path(sys.executable).with_name("uwsgi").exists(),
    reason="uwsgi is in the dev extra: pip install -e '.[dev]'",
)


@pytest.mark.parametrize(
    "kind", [pytest.param(k, marks=NO_UWSGI) if k == "uwsgi" else k for k in SERVERS]
)
def test_sigkill_of_a_worker_and_then_the_master(tmp_path: Path, kind: str) -> None:
    spool = tmp_path / "spool.sqlite3"
    with PlausibleReceiver() as receiver:
        server = SERVERS[kind](tmp_path, receiver.url, spool)
        try:
            server.wait_ready()
            load = Load(server.sock_path).start()
            load.wait_served(40)
            os.kill(server.workers()[0], signal.SIGKILL)
            load.wait_served(len(load.served) + 40)  # a new worker serves
            workers = server.workers()
            server.proc.kill()  # the master, mid-load
            server.wait()
            served = load.stop()
            # Orphaned workers go when they notice, or are killed too (as a container
            # stop would): either way their rows are in the spool.
            deadline = time.monotonic() + 1
            while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
                time.sleep(0.05)
            for pid in workers:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        finally:
            if "load" in locals():
                load.stop()
            server.kill()
        relay_stats = drain(spool, receiver.url)
        delivered = [e.url for e in receiver.events if "/p/" in e.url]
    figures = tally(served, delivered)
    print(f"\n{kind} kill worker + master: {figures}, in doubt {relay_stats.in_doubt}")
    killed = 1 + len(workers)
    check_tally(figures, killed)
