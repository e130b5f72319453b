"""The command line: ``demo`` end to end, ``send`` against a receiver, ``serve``, help.

``send`` runs in-process against a :class:`PlausibleReceiver`; ``demo`` and ``serve``
run as ``python -m plausible_wsgi`` subprocesses, read line by line through a reader
thread (every wait is on a queue, bounded by a timeout).
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from plausible_wsgi import cli
from plausible_wsgi.cli import demo_app, demo_traffic
from plausible_wsgi.receiver import Fault, PlausibleReceiver

ROOT = Path(__file__).resolve().parent.parent
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
GPTBOT = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; GPTBot/1.2"
WAIT = 20.0

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def clean_env() -> dict[str, str]:
    """The environment without PLAUSIBLE_* settings, so the shell cannot steer a run."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PLAUSIBLE_")}
    env.pop("NO_COLOR", None)
    return env


def run_module(*args: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    """``python -m plausible_wsgi ARGS`` to its end, in the clean environment."""
    return subprocess.run(
        [sys.executable, "-m", "plausible_wsgi", *args],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )


class Process:
    """``python -m plausible_wsgi ARGS`` with its merged output read line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "plausible_wsgi", *args],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """The first further line matching ``pattern``; fails on timeout or exit."""
        regex = re.compile(pattern)
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} within {timeout}s:\n{self.output}")
            if line is None:
                pytest.fail(f"exited before a line matching {pattern!r}:\n{self.output}")
            self.lines.append(line)
            found = regex.search(line)
            if found:
                return found

    def finish(self, timeout: float = WAIT) -> int:
        """Wait for the exit; collect the rest of the output."""
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        while True:
            line = self._queue.get_nowait() if not self._queue.empty() else None
            if line is None:
                break
            self.lines.append(line)
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


@pytest.fixture
def receiver() -> Iterator[PlausibleReceiver]:
    with PlausibleReceiver(domains=["example.com"]) as server:
        yield server


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def send(
    capsys: pytest.CaptureFixture[str],
    receiver: PlausibleReceiver,
    *args: str,
    domain: str = "example.com",
) -> tuple[int, str, str]:
    """``send`` to ``receiver`` for ``domain``, with ``args``."""
    return run_cli(capsys, "send", "--endpoint", receiver.url, "--domain", domain, *args)


# -- help ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ((), ["demo", "serve", "send"]),
        (("demo",), ["--duration", "--keep-running", "--port", "Bot Visit"]),
        (("serve",), ["--host", "--port", "--domain", "inspector"]),
        (("send",), ["--domain", "--name", "--url", "--endpoint", "--props", "--revenue"]),
    ],
)
def test_help(
    capsys: pytest.CaptureFixture[str], command: tuple[str, ...], expected: list[str]
) -> None:
    code, out, _ = run_cli(capsys, *command, "--help")
    assert code == 0
    assert out.startswith("usage: plausible-wsgi")
    for text in expected:
        assert text in out


def test_no_command_prints_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys)
    assert code == 2
    for command in ("demo", "serve", "send"):
        assert command in out


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "demo", "--port", "70000")
    assert code == 2
    assert "0-65535" in err


@pytest.mark.slow
def test_python_m_help_names_the_module() -> None:
    result = run_module("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m plausible_wsgi")


# -- send ----------------------------------------------------------------------------


def test_send_accepted(capsys: pytest.CaptureFixture[str], receiver: PlausibleReceiver) -> None:
    code, out, _ = send(
        capsys,
        receiver,
        "--name",
        "Signup",
        "--url",
        "https://example.com/pricing",
        "--props",
        '{"plan": "pro", "seats": 3}',
        "--revenue",
        "EUR:9.90",
        "--ip",
        "203.0.113.7",
    )
    assert code == 0, out
    assert "HTTP 202" in out
    assert "accepted: Plausible will count it" in out
    assert "\x1b[" not in out  # not a terminal: no colour
    [event] = receiver.wait_for(1)
    assert (event.name, event.pathname) == ("Signup", "/pricing")
    assert event.props == {"plan": "pro", "seats": "3"}
    assert event.revenue == {"currency": "EUR", "amount": "9.90"}
    assert event.client_ip == "203.0.113.7"
    assert event.user_agent == cli.BROWSER_USER_AGENT
    [attempt] = receiver.attempts
    assert attempt.headers["Content-Type"] == "application/json"


def test_send_defaults_to_a_pageview_of_the_domain(
    capsys: pytest.CaptureFixture[str], receiver: PlausibleReceiver
) -> None:
    code, out, _ = send(capsys, receiver)
    assert code == 0, out
    [event] = receiver.wait_for(1)
    assert (event.name, event.url) == ("pageview", "https://example.com/")
    assert "not sent" in out  # no X-Forwarded-For, and the output says so


def test_send_dropped_bot(capsys: pytest.CaptureFixture[str], receiver: PlausibleReceiver) -> None:
    code, out, _ = send(
        capsys,
        receiver,
        "--user-agent",
        GPTBOT,
        "--ip",
        "203.0.113.7",
    )
    assert code == 1
    assert "x-plausible-dropped: 1" in out
    assert "accepted but DROPPED" in out
    reasons = out.split("Likely reasons, the best supported first:")[1]
    # The detected cause comes first.
    assert reasons.strip().startswith("- [certain] the User-Agent is a bot's (GPTBot, ai_training)")
    assert [r.drop_reason for r in receiver.dropped] == ["bot"]


def test_send_dropped_unknown_site(
    capsys: pytest.CaptureFixture[str], receiver: PlausibleReceiver
) -> None:
    code, out, _ = send(capsys, receiver, domain="unknown.example")
    assert code == 1
    assert "accepted but DROPPED" in out
    assert "'unknown.example' is not registered" in out
    assert "no X-Forwarded-For" in out
    assert "User-Agent is a bot's" not in out
    assert [r.drop_reason for r in receiver.dropped] == ["unknown_domain"]


def test_send_rejected_lists_field_errors(
    capsys: pytest.CaptureFixture[str], receiver: PlausibleReceiver
) -> None:
    code, out, _ = send(
        capsys,
        receiver,
        "--name",
        "",
        "--no-validate",
    )
    assert code == 1
    assert "HTTP 400" in out
    assert "rejected (HTTP 400)" in out
    assert "- event_name: can't be blank" in out
    assert len(receiver.rejected) == 1


def test_send_temporary_failure(
    capsys: pytest.CaptureFixture[str], receiver: PlausibleReceiver
) -> None:
    receiver.enqueue_faults(Fault(503, {"Retry-After": "7"}))
    code, out, _ = send(capsys, receiver)
    assert code == 1
    assert "temporary failure (HTTP 503, Retry-After 7s)" in out
    assert "retry-after: 7" in out


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("send", "cannot connect to {url}/api/event: Connection refused"),
        ("doctor", "health: cannot reach {url}: Connection refused"),
    ],
)
def test_connection_refused(
    capsys: pytest.CaptureFixture[str], receiver: PlausibleReceiver, command: str, message: str
) -> None:
    url = receiver.url
    receiver.down()
    code, out, _ = run_cli(capsys, command, "--endpoint", url, "--domain", "example.com")
    assert code == 1
    assert message.format(url=url) in out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "example.com/page"], "invalid event: url"),
        (["--props", "{not json"], "--props is not valid JSON"),
        (["--props", "[1, 2]"], "--props must be a JSON object"),
        (["--props", '{"nested": {"a": 1}}'], "invalid event: props"),
        (["--revenue", "9.99"], "--revenue is CURRENCY:AMOUNT"),
        (["--revenue", "XYZ:9.99", "--name", "Buy"], "invalid event: revenue"),
        (["--revenue", "USD:9.99"], "only recorded on custom events"),
        (["--name", "engagement"], "invalid event: name"),
        (["--ip", "not-an-ip"], "--ip is not an IP address"),
        (["--endpoint", "http://127.0.0.1:9/api/event"], "--endpoint"),
        (["--domain", "https://example.com"], "--domain"),
    ],
)
def test_send_usage_errors_send_nothing(
    capsys: pytest.CaptureFixture[str],
    receiver: PlausibleReceiver,
    args: list[str],
    message: str,
) -> None:
    code, out, err = send(capsys, receiver, *args)
    assert code == 2
    assert message in err
    assert out == ""
    assert receiver.request_count == 0


# -- serve ---------------------------------------------------------------------------


def post_event(url: str, body: dict[str, object], user_agent: str, ip: str) -> int:
    parts = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(parts[0], int(parts[1]), timeout=WAIT)
    try:
        conn.request(
            "POST",
            "/api/event",
            json.dumps(body),
            {"Content-Type": "application/json", "User-Agent": user_agent, "X-Forwarded-For": ip},
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.mark.slow
@posix_only
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_logs_each_event_and_stops_cleanly(
    processes: list[Process], stop: signal.Signals
) -> None:
    process = Process("serve", "--port", "0", "--domain", "example.com")
    processes.append(process)
    url = process.expect(r"endpoint\s+(http://127\.0\.0\.1:\d+)").group(1)
    process.expect(rf"inspector\s+{re.escape(url)}/")
    process.expect("Ctrl-C to stop")

    page = {"name": "pageview", "url": "https://example.com/pricing", "domain": "example.com"}
    assert post_event(url, page, BROWSER, "203.0.113.9") == 202
    line = process.expect(r"accepted 202\s+pageview\s+example\.com/pricing").string
    assert "ip 203.0.113.9" in line

    signup = {
        "name": "Signup",
        "url": "https://example.com/",
        "domain": "example.com",
        "props": {"plan": "pro"},
    }
    assert post_event(url, signup, GPTBOT, "203.0.113.9") == 202
    line = process.expect(r"dropped\s+202\s+Signup").string
    assert "props plan=pro" in line
    assert "[bot: GPTBot (ai_training)]" in line

    assert post_event(url, {"name": "pageview", "domain": "example.com"}, BROWSER, "1.2.3.4") == 400
    assert "url" in process.expect(r"rejected 400").string

    with urllib.request.urlopen(url + "/") as response:  # the inspector page
        assert response.status == 200

    process.proc.send_signal(stop)
    assert process.finish() == 0, process.output
    assert "Stopped: 1 accepted, 1 dropped, 1 rejected." in process.output
    assert "Traceback" not in process.output


def test_serve_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, _, err = run_cli(capsys, "serve", "--port", str(port))
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err


# -- demo ----------------------------------------------------------------------------

SUMMARY_ROWS = [
    r"page views\s+6\s+6",
    r"unique visitors\s+3\s+3",
    r"Signup goal, props plan=pro\s+1\s+1",
    r"Purchase goal, revenue 38\.00 USD\s+1\s+1",
    r"Bot Visit: ChatGPT-User \(ai_assistant, OpenAI\)\s+1\s+1",
    r"Bot Visit: GPTBot \(ai_training, OpenAI\)\s+1\s+1",
    r"Bot Visit: PerplexityBot \(ai_search, Perplexity\)\s+1\s+1",
    r"Bot Visit: Googlebot \(search_engine, Google\)\s+1\s+1",
    r"events for /static/, /healthz \(excluded\)\s+0\s+0",
    r"requests skipped as excluded paths\s+2\s+2",
    r"dropped by the receiver .*\s+0\s+0",
    r"rejected by the receiver .*\s+0\s+0",
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flags", "app"),
    [
        pytest.param((), "the Flask example shop (examples/flask_app.py)", id="wsgi"),
        pytest.param(("--asgi",), "over ASGI under uvicorn", id="asgi"),
        pytest.param(("--spool",), "only writes it (deliver=False); a relay", id="spool"),
    ],
)
def test_demo_exits_0_with_the_summary(flags: tuple[str, ...], app: str) -> None:
    result = run_module("demo", *flags, timeout=60)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert app in out
    for row in SUMMARY_ROWS:
        assert re.search(rf"✓ {row}", out), row
    assert "✗" not in out
    assert re.search(r"Every expected event arrived \(12 accepted\)", out)
    assert re.search(r"^Inspector: http://127\.0\.0\.1:\d+/$", out, re.MULTILINE)
    assert "\x1b[" not in out
    assert result.stderr == ""


@pytest.mark.slow
def test_demo_builtin_app_with_light_traffic() -> None:
    result = run_module("demo", "--app", "builtin", "--duration", "1", timeout=60)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "the built-in example shop" in out
    assert "Light traffic for 1s" in out
    light = int(re.search(r"page views\s+(\d+)\s+\1", out).group(1))  # type: ignore[union-attr]
    assert light > 6  # the scripted 6 and at least one more


@pytest.mark.slow
@posix_only
def test_demo_keep_running_until_interrupted(processes: list[Process]) -> None:
    process = Process("demo", "--keep-running", "--app", "builtin")
    processes.append(process)
    inspector = process.expect(r"^Inspector: (http://\S+/)$").group(1)
    shop = process.expect(r"browse the shop at (http://\S+)/ ").group(1)
    process.expect("Ctrl-C to stop")

    with urllib.request.urlopen(inspector) as response:
        assert response.status == 200
        assert b"<html" in response.read().lower()
    request = urllib.request.Request(shop + "/pricing", headers={"User-Agent": BROWSER})
    with urllib.request.urlopen(request) as response:
        response.read()
    # A visit from "a browser" is listed as it arrives.
    process.expect(r"accepted 202\s+pageview\s+example\.com/pricing")

    process.proc.send_signal(signal.SIGINT)
    assert process.finish() == 0, process.output
    assert "Stopping." in process.output
    assert "Traceback" not in process.output


def test_demo_reports_missing_events(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the receiver does not get what the traffic should produce: exit 1."""
    original = demo_traffic.script

    def script() -> list[demo_traffic.Step]:
        steps = original()
        # A JSON request expected to be a page view: it records nothing.
        steps.append(demo_traffic.Step(demo_traffic.CAROL, "GET", "/api/items", 200, "pageview"))
        # An unexpected status is reported too.
        steps.append(demo_traffic.Step(demo_traffic.CAROL, "GET", "/items/99", 200, None))
        return steps

    monkeypatch.setattr(demo_traffic, "script", script)
    code, out, _ = run_cli(capsys, "demo", "--app", "builtin")
    assert code == 1
    assert re.search(r"✗ page views\s+7\s+6", out)
    assert "404 (expected 200)" in out
    assert "Not as expected: 1 of" in out
    assert "1 requests answered an unexpected status" in out


def test_demo_flask_unavailable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(collector: object) -> demo_app.DemoApp:
        raise demo_app.Unavailable("Flask is not installed")

    monkeypatch.setattr(demo_app, "flask_example", unavailable)
    code, _, err = run_cli(capsys, "demo", "--app", "flask")
    assert code == 1
    assert "Flask is not installed" in err

    code, out, _ = run_cli(capsys, "demo")  # auto: falls back to the built-in shop
    assert code == 0, out
    assert "(not the Flask example: Flask is not installed)" in out


# -- counts and reasons that are true (issue 17) ---------------------------------------


@posix_only
@pytest.mark.slow
def test_serve_counts_every_event_not_the_records_kept(processes: list[Process]) -> None:
    """The receiver keeps the last N records; the exit line counts all it judged."""
    process = Process("serve", "--port", "0", "--domain", "example.com", "--max-events", "2")
    processes.append(process)
    url = process.expect(r"endpoint\s+(http://127\.0\.0\.1:\d+)").group(1)
    process.expect("Ctrl-C to stop")
    page = {"name": "pageview", "url": "https://example.com/", "domain": "example.com"}
    for _ in range(5):
        assert post_event(url, page, BROWSER, "203.0.113.9") == 202
    assert post_event(url, {**page, "domain": "other.example"}, BROWSER, "203.0.113.9") == 202
    process.proc.send_signal(signal.SIGINT)
    assert process.finish() == 0, process.output
    assert "Stopped: 5 accepted, 1 dropped, 0 rejected." in process.output


def test_send_reasons_are_ordered_by_evidence(
    capsys: pytest.CaptureFixture[str], receiver: PlausibleReceiver
) -> None:
    """An unknown site with a private IP: the site is the likely reason, the private IP
    (which Plausible does not drop) the least likely."""
    code, out, _ = send(capsys, receiver, "--ip", "10.0.0.7", domain="unknown.example")
    assert code == 1
    reasons = [
        line.strip()
        for line in out.split("the best supported first:")[1].splitlines()
        if line.strip().startswith("- [")
    ]
    assert reasons[0].startswith("- [likely] the site 'unknown.example' is not registered")
    assert reasons[-1].startswith("- [unlikely] the IP 10.0.0.7 is private")
    assert "doctor --domain unknown.example" in out


# -- doctor ----------------------------------------------------------------------------

PUBLIC_IP = "81.2.69.160"


def test_doctor_passes_for_a_good_setup(
    capsys: pytest.CaptureFixture[str], receiver: PlausibleReceiver
) -> None:
    code, out, _ = run_cli(
        capsys,
        "doctor",
        "--domain",
        "EXAMPLE.COM",
        "--endpoint",
        receiver.url,
        "--ip",
        PUBLIC_IP,
        "--goal",
        "Signup",
        "--prop",
        "plan",
    )
    assert code == 0, out
    assert f"health: {receiver.url}/api/health answers 200" in out
    assert "the server echoed what it saw" in out
    assert "site: 'example.com' exists" in out
    assert f"the IP the server used ({PUBLIC_IP}) is a public address" in out
    assert "goal 'Signup': shows in Plausible only once a goal" in out
    [event] = receiver.wait_for(1)
    assert (event.name, event.client_ip) == ("plausible-wsgi doctor", PUBLIC_IP)
    assert receiver.attempts[0].headers["X-Debug-Request"] == "true"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["--domain", "exmaple.com", "--ip", PUBLIC_IP],
            "the site 'exmaple.com' does not exist on this instance",
            id="unknown-site",
        ),
        pytest.param(
            ["--domain", "example.com", "--ip", PUBLIC_IP, "--user-agent", GPTBOT],
            "the User-Agent is a bot's: Plausible drops bot traffic",
            id="bot",
        ),
        pytest.param(
            ["--domain", "example.com"],
            "the IP the server used (127.0.0.1) is private, loopback or reserved",
            id="loopback-ip",
        ),
        pytest.param(
            ["--domain", "example.com", "--ip", PUBLIC_IP, "--goal", "pageview"],
            "goal 'pageview'",
            id="reserved-goal",
        ),
    ],
)
def test_doctor_explains_each_problem(
    capsys: pytest.CaptureFixture[str],
    receiver: PlausibleReceiver,
    args: list[str],
    expected: str,
) -> None:
    code, out, _ = run_cli(capsys, "doctor", "--endpoint", receiver.url, *args)
    assert code == 1, out
    assert expected in out
    assert "check(s) failed" in out


def test_doctor_names_the_endpoint_meant(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys,
        "doctor",
        "--domain",
        "example.com",
        "--endpoint",
        "https://plausible.io/js/script.js",
    )
    assert code == 1
    assert "Did you mean 'https://plausible.io'?" in out


def test_doctor_explains_a_private_ip_drop(capsys: pytest.CaptureFixture[str]) -> None:
    with PlausibleReceiver(domains=["example.com"], drop_private_ips=True) as receiver:
        code, out, _ = run_cli(
            capsys, "doctor", "--endpoint", receiver.url, "--domain", "example.com"
        )
    assert code == 1
    assert "the visitor IP is private or loopback: set trusted_proxies" in out


def test_doctor_explains_every_drop_reason_the_receiver_reports() -> None:
    from plausible_wsgi.cli.doctor import DROP_HINTS
    from plausible_wsgi.receiver.records import DROP_REASONS

    assert set(DROP_HINTS) == set(DROP_REASONS)
