"""The health signal: last drop reason, and warnings for dead delivery and dropped events."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from sink import dead_endpoint, wait_until

import plausible_wsgi as pw
from plausible_wsgi.receiver import PlausibleReceiver

URL = "https://example.com/pricing?visitor=secret"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
IP = "8.8.4.4"
Make = Callable[..., pw.PlausibleCollector]


def wait_for_record(caplog: pytest.LogCaptureFixture, text: str) -> logging.LogRecord:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for record in list(caplog.records):
            if text in record.getMessage():
                return record
        time.sleep(0.01)
    raise AssertionError(f"no log record with {text!r}: {caplog.text}")


@pytest.fixture
def receiver() -> Iterator[PlausibleReceiver]:
    with PlausibleReceiver(domains=["example.com"]) as receiver:
        yield receiver


def test_nothing_delivered_for_a_while_is_a_warning_without_visitor_data(
    make_collector: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="plausible_wsgi")
    c = make_collector(
        dead_endpoint(),
        stall_warning_after=0.2,
        retry=pw.RetryConfig(max_retries=10_000, initial_backoff=0.01, max_backoff=0.02),
        circuit_breaker=None,
        batch_size=1,  # sent at once, not after the 5 s batching window
    )
    c.track("Signup", url=URL, user_agent=UA, client_ip=IP)
    record = wait_for_record(caplog, "nothing delivered for")
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    for private in (URL, "secret", UA, IP):
        assert private not in message
    assert c.stats().last_success_at is None


def test_the_stall_warning_reaches_stderr_when_logging_is_not_configured() -> None:
    script = f"""
    import sys, threading
    import plausible_wsgi as pw

    seen = threading.Event()
    real = sys.stderr

    class Tee:
        def write(self, text):
            if "nothing delivered for" in text:
                seen.set()
            return real.write(text)

        def flush(self):
            real.flush()

    sys.stderr = Tee()
    c = pw.PlausibleCollector("example.com", endpoint={dead_endpoint()!r},
        stall_warning_after=0.2, circuit_breaker=None, shutdown_timeout=0.5, batch_size=1,
        retry=pw.RetryConfig(max_retries=10_000, initial_backoff=0.01, max_backoff=0.02))
    c.track("Signup", url="https://example.com/", user_agent="Mozilla/5.0", client_ip="8.8.4.4")
    print("seen", seen.wait(20), flush=True)
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "seen True" in proc.stdout, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "nothing delivered" in line]
    assert lines
    assert lines[0].startswith("plausible_wsgi: WARNING: plausible:example.com: nothing")


@pytest.mark.parametrize("bots_in_ten", [6, 4])
def test_mostly_dropped_events_are_a_warning_a_minority_is_not(
    bots_in_ten: int,
    receiver: PlausibleReceiver,
    make_collector: Make,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="plausible_wsgi")
    c = make_collector(receiver.url, stall_warning_after=0.2)
    for i in range(100):
        c.track("Visit", url=URL, user_agent=BOT if i % 10 < bots_in_ten else UA, client_ip=IP)
    assert c.flush(20)
    stats = c.stats()
    dropped = bots_in_ten * 10
    assert (stats.sent, dict(stats.dropped)) == (100 - dropped, {"server_dropped": dropped})
    assert stats.last_drop_reason == "server_dropped"
    if dropped <= 50:
        assert "not counted" not in caplog.text  # every answer is in: no warning to wait for
        return
    message = wait_for_record(caplog, "received by Plausible but not counted").getMessage()
    assert "50%" in message
    for private in (URL, "secret", BOT, IP):
        assert private not in message


def test_last_drop_reason_follows_the_latest_drop(
    receiver: PlausibleReceiver, make_collector: Make
) -> None:
    c = make_collector(receiver.url)
    assert c.stats().last_drop_reason is None
    c.track("Visit", url=URL, user_agent=BOT, client_ip=IP)
    assert c.flush(10)
    assert c.stats().last_drop_reason == "server_dropped"
    c.collect(pw.Event(pw.EventKind.CUSTOM, "", URL))  # invalid: no name
    assert c.stats().last_drop_reason == "invalid"
    assert c.stats().last_success_at is not None


def test_stall_warning_after_is_checked() -> None:
    with pytest.raises(pw.ConfigurationError, match="stall_warning_after"):
        pw.PlausibleCollector("example.com", stall_warning_after=-1)


@pytest.mark.parametrize("spooled", [False, True])
def test_the_close_deadline_warning_says_what_becomes_of_the_events(
    spooled: bool, tmp_path: Path, make_collector: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="plausible_wsgi")
    spool = str(tmp_path / "spool.db") if spooled else None
    c = make_collector(dead_endpoint(), batch_size=1000, flush_interval=3600, spool=spool)
    c.track("Late", url=URL, user_agent=UA, client_ip=IP)
    c.close(timeout=0)
    message = wait_for_record(caplog, "the close deadline passed").getMessage()
    if spooled:
        assert "kept for a later delivery" in message
        assert "dropped" not in message
        assert c.stats().spool_backlog == 1
    else:
        assert "(dropped)" in message
        # The warning can come before the drop is counted (seen once under load).
        wait_until(lambda: c.stats().dropped == {"shutdown": 1})
