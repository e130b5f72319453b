"""Warnings a person sees without having configured logging (issue 17)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

import plausible_wsgi as pw
from plausible_wsgi.testing import MemoryCollector

WAIT = 60.0


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter: its logging is as an app's that never configured it."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )


NOTICE = "from plausible_wsgi import notices; notices.warn('delivery failing for %d min', 5)\n"


@pytest.mark.slow
def test_unconfigured_logging_gets_one_stderr_line() -> None:
    result = run_python(NOTICE)
    assert result.stderr == "plausible_wsgi: WARNING: delivery failing for 5 min\n"


@pytest.mark.slow
@pytest.mark.parametrize(
    "setup",
    [
        pytest.param("import logging; logging.basicConfig()", id="basicConfig"),
        pytest.param(
            "import logging; logging.getLogger('plausible_wsgi').setLevel(logging.ERROR)",
            id="silenced",
        ),
        pytest.param(
            "import logging, sys; "
            "logging.getLogger('plausible_wsgi').addHandler(logging.StreamHandler(sys.stdout))",
            id="own-handler",
        ),
    ],
)
def test_an_app_that_configures_logging_gets_no_second_copy(setup: str) -> None:
    result = run_python(setup + "\n" + NOTICE)
    assert "plausible_wsgi: WARNING" not in result.stderr
    # basicConfig's handler prints the record its own way, once.
    assert result.stderr.count("delivery failing for 5 min") <= 1


@pytest.mark.slow
def test_track_outside_a_request_without_visitor_warns_once_on_stderr() -> None:
    result = run_python(
        """
        from plausible_wsgi.testing import MemoryCollector
        collector = MemoryCollector()
        for _ in range(3):
            collector.track("Signup", url="https://example.com/")
        MemoryCollector().track("Signup", url="https://example.com/")
        """
    )
    lines = result.stderr.splitlines()
    assert len(lines) == 2  # once per collector
    assert "outside a request without user_agent= and client_ip=" in lines[0]


def test_track_with_the_visitor_given_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    collector = MemoryCollector()
    with caplog.at_level(logging.WARNING, logger="plausible_wsgi"):
        collector.track(
            "Signup", url="https://example.com/", user_agent="Mozilla/5.0", client_ip="81.2.69.1"
        )
        assert caplog.records == []
        collector.track("Signup", url="https://example.com/")
    [record] = caplog.records
    assert "user_agent=" in record.getMessage()
    # What is sent is unchanged: the event has no User-Agent.
    assert collector.events[-1].user_agent is None


def test_flush_is_settled_not_delivered() -> None:
    """flush() True against a dead endpoint: settled. Delivered is read from stats()."""
    collector = pw.PlausibleCollector(
        "example.com", endpoint="http://127.0.0.1:9", retry=None, circuit_breaker=None
    )
    try:
        before = collector.stats()
        collector.track("Signup", url="https://example.com/", user_agent="M", client_ip="81.2.69.1")
        assert collector.flush(30.0) is True  # settled: nothing is left to wait for
        after = collector.stats()
        assert after.sent - before.sent == 0  # ... and nothing was delivered
        assert after.failed - before.failed == 1
    finally:
        collector.close(0)
