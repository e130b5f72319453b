"""The real uWSGI (the ``dev`` extra installs it): stops under load, with and without a spool.

With a spool, every page whose response the client received fully is delivered
exactly once after the server stopped and a relay ran — whatever the stop: busy
workers at a brutal shutdown, ``--die-on-term``, ``--lazy-apps``, a graceful reload,
``--py-call-uwsgi-fork-hooks`` or not, a worker SIGKILLed mid-load. The tolerance is
one page lost per worker killed (the instant between the last byte sent and the
commit) and one duplicate per POST it had in flight (in doubt: resent).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Callable

import pytest
from real_servers import Load, Uwsgi, check_tally, drain, tally

from plausible_wsgi.testing import PlausibleReceiver

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(sys.executable).with_name("uwsgi").exists() and not shutil.which("uwsgi"),
        reason="uwsgi is in the dev extra: pip install -e '.[dev]'",
    ),
]

WORKERS = 2


def stop_brutally(server: Uwsgi, load: Load) -> int:
    server.signal(signal.SIGINT)  # uWSGI: kill the instance now, busy workers too
    return WORKERS


def stop_on_term(server: Uwsgi, load: Load) -> int:
    server.signal(signal.SIGTERM)  # with --die-on-term: shutdown
    return WORKERS


def reload_then_stop(server: Uwsgi, load: Load) -> int:
    before = len(load.served)
    server.signal(signal.SIGHUP)  # graceful reload under load
    load.wait_served(before + 40)  # the new workers serve (and take over old rows)
    server.signal(signal.SIGINT)
    return 2 * WORKERS


def kill_a_worker_then_stop(server: Uwsgi, load: Load) -> int:
    os.kill(server.workers()[0], signal.SIGKILL)  # OOM killer, harakiri gone wrong
    before = len(load.served)
    load.wait_served(before + 40)  # the master respawned it; traffic goes on
    server.signal(signal.SIGINT)
    return WORKERS + 1


SCENARIOS: dict[str, tuple[tuple[str, ...], Callable[[Uwsgi, Load], int]]] = {
    "busy-stop": ((), stop_brutally),
    "busy-stop-fork-hooks": (("--py-call-uwsgi-fork-hooks",), stop_brutally),
    "die-on-term": (("--die-on-term",), stop_on_term),
    "lazy-apps": (("--lazy-apps",), stop_brutally),
    "reload": ((), reload_then_stop),
    "sigkill-worker": (("--py-call-uwsgi-fork-hooks",), kill_a_worker_then_stop),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_with_a_spool_no_served_page_view_is_lost(tmp_path: Path, scenario: str) -> None:
    flags, stop = SCENARIOS[scenario]
    spool = tmp_path / "spool.sqlite3"
    with PlausibleReceiver() as receiver:
        server = Uwsgi(tmp_path, receiver.url, spool, *flags)
        try:
            server.wait_ready()
            load = Load(server.sock_path).start()
            load.wait_served(60)
            killed = stop(server, load)
            server.wait()
        finally:
            served = load.stop() if "load" in locals() else []
            server.kill()
        relay_stats = drain(spool, receiver.url)
        delivered = [e.url for e in receiver.events if "/p/" in e.url]
    figures = tally(served, delivered)
    print(f"\n{scenario}: {figures}, relay {relay_stats}")
    assert figures["served"] >= 60
    check_tally(figures, killed)
    assert "Python threads are disabled" not in server.log()  # no false alarm


def test_without_a_spool_the_risk_is_warned_about_and_threads_deliver(tmp_path: Path) -> None:
    """uWSGI 2.0.31 without --enable-threads: delivery threads run; the one warning
    is about busy stops losing memory-only events, not about threads."""
    with PlausibleReceiver() as receiver:
        server = Uwsgi(tmp_path, receiver.url, None, "--lazy-apps")
        try:
            server.wait_ready()
            load = Load(server.sock_path).start()
            load.wait_served(30)
            served = load.stop()
            receiver.wait_for(len(served), timeout=30)  # sent while the server runs
            server.signal(signal.SIGINT)
            server.wait()
        finally:
            server.kill()
    log = server.log()
    assert "python threads support enabled" in log
    assert "Python threads are disabled" not in log
    assert "spool=PATH" in log
