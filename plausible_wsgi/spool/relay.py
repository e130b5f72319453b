"""The relay: one process per host that drains a spool to Plausible.

Web processes run ``PlausibleCollector(..., spool=PATH, deliver=False)``: they only
commit rows, with no delivery thread and no socket. The relay sends them with the same
engine, retry policy and circuit breaker as an embedded collector, takes over rows of
processes that died, and shows a live status line::

    python -m plausible_wsgi relay --spool /var/lib/myapp/plausible.sqlite3

SIGTERM or SIGINT stop it cleanly: what is being sent gets ``--shutdown-timeout`` to
finish, and every row not sent stays in the spool for the next run. A lock next to the
spool file (``PATH.relay-lock``) keeps a second relay from starting on the same file.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Optional, TextIO

from ..collector import PlausibleCollector
from ..stats import CollectorStats, DropReason
from .store import Spool, SpoolError

__all__ = ["add_parser", "render_status", "run_relay"]

EXIT_OK = 0
EXIT_FAILED = 1


def render_status(stats: CollectorStats, rate: float) -> str:
    """One status line: throughput, backlog, breaker and what did not go out."""
    dropped = stats.dropped
    backlog = "?" if stats.spool_backlog is None else str(stats.spool_backlog)
    return (
        f"relay: {stats.sent} sent ({rate:.0f}/s), backlog {backlog}, "
        f"in flight {stats.queued + stats.in_flight}, failed {stats.failed}, "
        f"expired {dropped.get(DropReason.EXPIRED, 0)}, in doubt {stats.in_doubt}, "
        f"breaker {stats.breaker_state}"
    )


@contextlib.contextmanager
def _single_relay(path: str) -> Iterator[bool]:
    """Hold ``PATH.relay-lock``; yields False when another relay holds it."""
    with open(path + ".relay-lock", "a+b") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (main thread only; elsewhere the caller stops)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_relay(
    spool: str,
    *,
    endpoint: str = "https://plausible.io",
    domain: str = "spool-relay",
    status_interval: float = 1.0,
    shutdown_timeout: float = 5.0,
    max_workers: int = 4,
    out: Optional[TextIO] = None,
    stop: Optional[threading.Event] = None,
) -> int:
    """Drain ``spool`` to ``endpoint`` until ``stop`` is set or SIGTERM/SIGINT arrive.

    :param domain: names the relay in logs; each row carries its own site domain.
    :param status_interval: seconds between status lines on ``out`` (stderr by default);
        on a terminal the line is rewritten in place.
    :returns: the exit status: 0 after a clean stop, 1 when the spool is unusable or
        another relay holds it.
    """
    out = sys.stderr if out is None else out
    stop = threading.Event() if stop is None else stop
    try:
        store = Spool(spool)
    except SpoolError as exc:
        print(f"relay: {exc}", file=out)
        return EXIT_FAILED
    with _single_relay(store.path) as alone:
        if not alone:
            print(f"relay: another relay is draining {spool}", file=out)
            return EXIT_FAILED
        collector = PlausibleCollector(
            domain,
            endpoint=endpoint,
            spool=store,
            flush_interval=0.5,
            max_workers=max_workers,
            shutdown_timeout=shutdown_timeout,
        )
        with _stop_on_signals(stop):
            _status_loop(collector, stop, status_interval, out)
        collector.close()
        print("\n" + render_status(collector.stats(), 0.0) + " — stopped", file=out, flush=True)
    return EXIT_OK


def _status_loop(
    collector: PlausibleCollector, stop: threading.Event, interval: float, out: TextIO
) -> None:
    tty = out.isatty()
    collector.start()
    last_sent, last_at = 0, time.monotonic()
    while not stop.wait(interval):
        stats = collector.stats()
        now = time.monotonic()
        rate = (stats.sent - last_sent) / max(now - last_at, 1e-9)
        last_sent, last_at = stats.sent, now
        line = render_status(stats, rate)
        out.write(f"\r{line}\x1b[K" if tty else line + "\n")
        out.flush()


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``relay`` on the command line's subcommands."""
    relay = commands.add_parser(
        "relay",
        help="send what web processes wrote to a spool file (a sidecar, one per host)",
        description=(
            "Drain a spool written by PlausibleCollector(..., spool=PATH, deliver=False):\n"
            "the same retry and circuit breaker as an embedded collector, rows of dead\n"
            "processes taken over, a live status line. SIGTERM/SIGINT stop it cleanly;\n"
            "rows not sent stay in the spool."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    relay.add_argument("--spool", required=True, metavar="PATH", help="the spool file")
    relay.add_argument(
        "--endpoint",
        default="https://plausible.io",
        help="base URL of Plausible (default %(default)s)",
    )
    relay.add_argument(
        "--domain", default="spool-relay", help="a name for logs (rows carry their own site)"
    )
    relay.add_argument(
        "--status-interval", type=float, default=1.0, help="seconds between status lines"
    )
    relay.add_argument("--workers", type=int, default=4, help="concurrent POSTs")
    relay.add_argument(
        "--shutdown-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="at a stop, how long what is being sent may take (default %(default)s)",
    )
    relay.set_defaults(handler=_relay_handler)


def _relay_handler(args: argparse.Namespace, term: object) -> int:
    return run_relay(
        os.fspath(args.spool),
        endpoint=args.endpoint,
        domain=args.domain,
        status_interval=args.status_interval,
        max_workers=args.workers,
        shutdown_timeout=args.shutdown_timeout,
    )
