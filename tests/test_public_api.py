"""The public surface is small, explicit and matches the documented contract."""

from __future__ import annotations

import inspect
import logging

import plausible_wsgi as pw


def test_all_lists_exactly_the_public_names() -> None:
    # dir(), not vars(): some names are imported on first use; getattr resolves each.
    public = {name: getattr(pw, name) for name in dir(pw) if not name.startswith("_")}
    names = {name for name, value in public.items() if not inspect.ismodule(value)}
    assert set(pw.__all__) == (names - {"annotations"}) | {"__version__"}


def test_contract_names_and_defaults() -> None:
    params = inspect.signature(pw.PlausibleCollector).parameters
    assert {name: p.default for name, p in params.items() if name != "domain"} == {
        "endpoint": "https://plausible.io",
        "batch_size": 10,
        "flush_interval": 5.0,
        "max_queue_size": 10_000,
        "max_buffer_bytes": 16 * 1024 * 1024,
        "max_workers": 4,
        "timeout": 10.0,
        "retry": pw.RetryConfig(),
        "circuit_breaker": pw.CircuitBreakerConfig(),
        "shutdown_timeout": 5.0,
        "ca_bundle": None,
        "spool": None,
        "spool_max_age": 1800.0,
        "deliver": True,
        "before_send": None,
        "on_error": None,
        "on_drop": None,
        "stall_warning_after": 300.0,
        "pipeline_depth": 32,
    }
    assert pw.RetryConfig() == pw.RetryConfig(max_retries=3, initial_backoff=0.5, max_backoff=10.0)
    assert pw.CircuitBreakerConfig() == pw.CircuitBreakerConfig(
        max_consecutive_failures=5, timeout=30.0
    )
    track = inspect.signature(pw.PlausibleCollector.track).parameters
    assert list(track)[1:] == [
        "name", "props", "revenue", "interactive", "url", "referrer", "user_agent", "client_ip",
    ]  # fmt: skip
    assert inspect.signature(pw.PlausibleMiddleware).parameters["trusted_proxies"].default == 0


def test_tracker_is_the_public_base_for_custom_collectors() -> None:
    class ListCollector(pw.Tracker):
        name = "list"

        def __init__(self) -> None:
            self.events: list[pw.Event] = []

        def accept(self, event: pw.Event) -> bool:
            self.events.append(event)
            return True

    collector = ListCollector()
    props: pw.Props = {"plan": "pro", "seats": 3}
    revenue: pw.RevenueLike = {"currency": "EUR", "amount": "9.99"}
    assert collector.track("Signup", props=props, revenue=revenue, url="https://example.com/")
    [event] = collector.events
    assert (event.name, event.props, event.revenue) == (
        "Signup",
        {"plan": "pro", "seats": "3"},
        pw.Revenue("EUR", "9.99"),
    )
    hints = inspect.signature(pw.PlausibleCollector.track).parameters
    assert hints["props"].annotation == "Optional[Props]"
    assert hints["revenue"].annotation == "Optional[RevenueLike]"


def test_a_subclass_overriding_the_former_private_accept_still_works() -> None:
    class Legacy(pw.Tracker):
        def __init__(self) -> None:
            self.seen: list[pw.Event] = []

        def _accept(self, event: pw.Event) -> bool:
            self.seen.append(event)
            return True

    legacy = Legacy()
    assert legacy.track_pageview(url="https://example.com/")
    assert len(legacy.seen) == 1


def test_one_root_exception() -> None:
    assert issubclass(pw.ConfigurationError, pw.PlausibleError)
    assert issubclass(pw.ConfigurationError, ValueError)
    assert issubclass(pw.InvalidEventError, pw.PlausibleError)
    assert issubclass(pw.InvalidEventError, ValueError)


def test_package_logger_has_a_null_handler_and_no_level() -> None:
    logger = logging.getLogger("plausible_wsgi")
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)
    assert logger.level == logging.NOTSET


def test_py_typed_marker_ships() -> None:
    from importlib import resources

    assert resources.files("plausible_wsgi").joinpath("py.typed").is_file()


def test_testing_helpers_are_reachable_from_the_package() -> None:
    import subprocess
    import sys

    code = (
        "import plausible_wsgi as pw\n"
        "assert pw.testing.MemoryCollector().name == 'memory'\n"
        "from plausible_wsgi.testing import PlausibleReceiver, Fault\n"
        "with pw.testing.PlausibleReceiver() as r:\n"
        "    assert r.url.startswith('http://127.0.0.1:')\n"
        "assert Fault(503).status == 503\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
