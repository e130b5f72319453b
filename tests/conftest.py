from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# A suite started in the background by a non-interactive shell (`make test &`, a CI
# step) inherits SIGINT ignored, and so would every process it starts: Python leaves
# an ignored SIGINT ignored, and the tests that stop a child with SIGINT would wait
# for it in vain. Runs in the controller and in each worker, before any child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from sink import Sink, sink

import plausible_wsgi as pw


@pytest.fixture
def http_sink() -> Iterator[Sink]:
    with sink() as s:
        yield s


@pytest.fixture
def make_collector() -> Iterator[Callable[..., pw.PlausibleCollector]]:
    """Build collectors with test-friendly defaults; closed at teardown."""
    made: list[pw.PlausibleCollector] = []

    def make(endpoint: str, **kwargs: Any) -> pw.PlausibleCollector:
        kwargs.setdefault("shutdown_timeout", 2.0)
        kwargs.setdefault("retry", pw.RetryConfig(initial_backoff=0.01, max_backoff=0.05))
        collector = pw.PlausibleCollector(
            kwargs.pop("domain", "example.com"), endpoint=endpoint, **kwargs
        )
        made.append(collector)
        return collector

    yield make
    for collector in made:
        collector.close(timeout=1.0)
