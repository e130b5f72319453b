"""``python -m plausible_wsgi relay``: a real subprocess draining a spool.

Writers are ``deliver=False`` collectors in this process; the relay is a separate
process stopped with SIGTERM/SIGINT.
"""

from __future__ import annotations

import collections
import io
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
from real_servers import stored
from sink import SilentServer, Sink, dead_endpoint

import plausible_wsgi as pw
from plausible_wsgi.spool.relay import render_status, run_relay

ROOT = Path(__file__).resolve().parent.parent
Make = Callable[..., pw.PlausibleCollector]


def write(collector: pw.PlausibleCollector, first: int, count: int) -> None:
    for i in range(first, first + count):
        assert collector.track("Signup", url=f"https://example.com/{i}", user_agent="UA")


def start_relay(path: Path, endpoint: str, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "plausible_wsgi",
            "relay",
            "--spool",
            str(path),
            "--endpoint",
            endpoint,
            "--status-interval",
            "0.1",
            *options,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_the_relay_drains_then_stops_cleanly(
    make_collector: Make, http_sink: Sink, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    path = tmp_path / "spool.sqlite3"
    writer = make_collector(http_sink.url, spool=str(path), deliver=False)
    write(writer, 0, 100)  # before the relay starts
    with start_relay(path, http_sink.url) as relay:
        http_sink.wait_for(100)
        write(writer, 100, 100)  # while it runs
        http_sink.wait_for(200)
        relay.send_signal(stop_signal)
        _, err = relay.communicate(timeout=30)
    assert relay.returncode == 0, err
    got = collections.Counter(h.json["url"] for h in http_sink.hits)
    assert got == {f"https://example.com/{i}": 1 for i in range(200)}
    assert stored(path) == 0
    lines = err.strip().splitlines()
    assert any(line.startswith("relay: ") and "breaker closed" in line for line in lines[:-1])
    assert lines[-1].startswith("relay: 200 sent")
    assert lines[-1].endswith("stopped")


def test_a_stopped_relay_keeps_what_it_could_not_send(make_collector: Make, tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    writer = make_collector(dead_endpoint(), spool=str(path), deliver=False)
    write(writer, 0, 30)
    # A server that never answers, not a refused port: against refusals one event's
    # four attempts (full-jitter waits can be near zero) may give up before the breaker
    # opens, and a row that gave up is deleted by design — the count would depend on
    # timing. A hung server holds every row in flight until the stop gives them back.
    silent = SilentServer()
    try:
        with start_relay(path, silent.url, "--shutdown-timeout", "0.5") as relay:
            assert relay.stderr is not None
            assert relay.stderr.readline().startswith("relay: ")  # running
            relay.send_signal(signal.SIGTERM)
            _, err = relay.communicate(timeout=60)
    finally:
        silent.close()
    assert relay.returncode == 0, err
    assert stored(path) == 30
    with sqlite3.connect(path) as conn:  # given back: free for the next relay
        assert (
            conn.execute("SELECT count(*) FROM events WHERE owner_pid IS NOT NULL").fetchone()[0]
            == 0
        )


def test_one_relay_per_spool(tmp_path: Path, http_sink: Sink) -> None:
    path = tmp_path / "spool.sqlite3"
    with start_relay(path, http_sink.url) as first:
        assert first.stderr is not None
        assert first.stderr.readline().startswith("relay: ")
        second = subprocess.run(
            [sys.executable, "-m", "plausible_wsgi", "relay", "--spool", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    assert second.returncode == 1
    assert "another relay" in second.stderr


def test_run_relay_in_process_stops_on_its_event(
    make_collector: Make, http_sink: Sink, tmp_path: Path
) -> None:
    path = tmp_path / "spool.sqlite3"
    writer = make_collector(http_sink.url, spool=str(path), deliver=False)
    write(writer, 0, 20)
    stop = threading.Event()
    out = io.StringIO()
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(
            run_relay(str(path), endpoint=http_sink.url, status_interval=0.05, out=out, stop=stop)
        )
    )
    thread.start()
    http_sink.wait_for(20)
    deadline = time.monotonic() + 10
    while stored(path):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    stop.set()
    thread.join(30)
    assert result == [0]
    assert "20 sent" in out.getvalue().splitlines()[-1]


def test_an_unusable_spool_path_fails_with_a_message(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_relay(str(tmp_path / "nope" / "spool.sqlite3"), out=out) == 1
    assert "cannot open the spool" in out.getvalue()


def test_render_status_names_every_figure() -> None:
    stats = pw.CollectorStats(
        sent=10,
        queued=2,
        in_flight=1,
        failed=3,
        dropped={"expired": 4},
        in_doubt=5,
        spool_backlog=7,
        breaker_state="open",
    )
    assert render_status(stats, 12.4) == (
        "relay: 10 sent (12/s), backlog 7, in flight 3, failed 3, expired 4, "
        "in doubt 5, breaker open"
    )
