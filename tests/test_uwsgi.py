"""plausible_wsgi.uwsgi: the flag checks and the atexit hook.

A stand-in ``uwsgi`` module (the attributes the integration touches: ``opt``,
``has_threads`` and ``atexit``) is put in ``sys.modules``; tests/test_uwsgi_real.py
runs the real server.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from sink import Sink

import plausible_wsgi as pw
import plausible_wsgi.uwsgi as pw_uwsgi

THREADS = "enable-threads"
FORK_HOOKS = "py-call-uwsgi-fork-hooks"


@pytest.mark.parametrize(
    ("options", "missing"),
    [
        pytest.param({}, {THREADS, FORK_HOOKS}, id="defaults"),
        pytest.param({"enable-threads": True, "lazy-apps": True}, set(), id="flags-lazy-apps"),
        pytest.param({"enable-threads": b"true", FORK_HOOKS: b"1"}, set(), id="ini-fork-hooks"),
        pytest.param(
            {"threads": b"4", "py-call-osafterfork": True}, set(), id="threads-osafterfork"
        ),
        pytest.param({"threads": b"0", "lazy": True}, {THREADS}, id="zero-threads"),
        pytest.param(
            {"enable-threads": b"false", "lazy-apps": b"yes"}, {THREADS}, id="threads-off"
        ),
        pytest.param({"enable-threads": True, FORK_HOOKS: b"off"}, {FORK_HOOKS}, id="hooks-off"),
        pytest.param(
            {"enable-threads": [b"false", b"true"], "lazy-apps": "on"},
            set(),
            id="repeated-last-wins",
        ),
        pytest.param({"threads": b"many", "lazy-apps": True}, {THREADS}, id="threads-garbage"),
    ],
)
def test_check_options_names_the_missing_flags(
    options: dict[str, object], missing: set[str]
) -> None:
    problems = pw_uwsgi.check_options(options)
    assert len(problems) == len(missing)
    text = " ".join(problems)
    for flag in missing:
        assert f"--{flag}" in text
    if FORK_HOOKS in missing:
        assert "--lazy-apps" in text


def test_install_outside_uwsgi_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uwsgi", None)  # makes `import uwsgi` fail
    assert pw_uwsgi.install() is False


def test_install_warns_once_and_chains_atexit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    fake = types.ModuleType("uwsgi")
    fake.opt = {"master": True}  # type: ignore[attr-defined]
    fake.atexit = lambda: calls.append("previous")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uwsgi", fake)
    monkeypatch.setattr(pw_uwsgi, "_warned", False)
    closed: list[float | None] = []
    monkeypatch.setattr(pw_uwsgi, "close_all", closed.append)

    with caplog.at_level(logging.WARNING, logger="plausible_wsgi"):
        assert pw_uwsgi.install(timeout=1.5) is True
        hook = fake.atexit  # type: ignore[attr-defined]
        assert pw_uwsgi.install() is True  # a second call changes nothing
    assert fake.atexit is hook  # type: ignore[attr-defined]
    warnings = [r for r in caplog.records if r.name == "plausible_wsgi"]
    assert len(warnings) == 1
    assert "--enable-threads" in warnings[0].getMessage()
    assert "--py-call-uwsgi-fork-hooks" in warnings[0].getMessage()

    hook()
    assert calls == ["previous"]
    assert closed == [1.5]


def test_install_with_good_flags_and_a_spool_is_silent(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    fake = types.ModuleType("uwsgi")
    fake.opt = {"enable-threads": True, "lazy-apps": True}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uwsgi", fake)
    monkeypatch.setattr(pw_uwsgi, "_warned", False)
    collector = pw.PlausibleCollector(
        "example.com", endpoint="http://127.0.0.1:9", spool=str(tmp_path / "s.sqlite3")
    )
    with caplog.at_level(logging.WARNING, logger="plausible_wsgi"):
        assert pw_uwsgi.install() is True
    assert not [r for r in caplog.records if r.name == "plausible_wsgi"]
    assert callable(fake.atexit)  # type: ignore[attr-defined]
    collector.close()


def test_install_without_a_spool_warns_that_busy_stops_lose_events(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = types.ModuleType("uwsgi")
    fake.opt = {"lazy-apps": True}  # type: ignore[attr-defined]
    fake.has_threads = 1  # type: ignore[attr-defined]  # uWSGI 2.0.31 without any flag
    monkeypatch.setitem(sys.modules, "uwsgi", fake)
    monkeypatch.setattr(pw_uwsgi, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="plausible_wsgi"):
        assert pw_uwsgi.install() is True
    [warning] = [r.getMessage() for r in caplog.records if r.name == "plausible_wsgi"]
    assert "spool=PATH" in warning
    assert "--enable-threads" not in warning  # threads run: no false alarm


@pytest.mark.parametrize(("has_threads", "warned"), [(1, False), (0, True), (None, True)])
def test_has_threads_decides_over_the_flags(has_threads: int | None, warned: bool) -> None:
    flag = None if has_threads is None else bool(has_threads)
    problems = pw_uwsgi.check_options({"lazy-apps": True}, flag)
    assert any("--enable-threads" in p for p in problems) is warned


def test_atexit_hook_delivers_buffered_events(http_sink: Sink, tmp_path: Path) -> None:
    """In a process of its own (the hook closes every collector of the process):
    events buffered behind a long flush_interval are sent when uwsgi.atexit runs,
    even though Python's own exit handlers are skipped (os._exit)."""
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys, types
            fake = types.ModuleType("uwsgi")
            fake.opt = {{"enable-threads": True, "lazy-apps": True}}
            sys.modules["uwsgi"] = fake

            import plausible_wsgi as pw
            import plausible_wsgi.uwsgi

            collector = pw.PlausibleCollector(
                "example.com", endpoint={http_sink.url!r}, flush_interval=60, batch_size=100
            )
            assert plausible_wsgi.uwsgi.install(timeout=5) is True
            for i in range(3):
                collector.track_pageview(
                    url=f"https://example.com/{{i}}",
                    user_agent="Mozilla/5.0",
                    client_ip="203.0.113.9",
                )
            fake.atexit()  # what uWSGI does when the worker stops
            print(collector.stats().sent, flush=True)
            os._exit(0)
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
    assert len(http_sink.hits) == 3
