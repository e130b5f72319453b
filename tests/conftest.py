from __future__ import annotations

import os
import signal
import stat
import sys
import sysconfig
import tempfile
import zlib
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
from wire import named_cert, nginx, no_proxy_env, raw_server  # noqa: F401 (fixtures)

import plausible_wsgi as pw


def _share_bytecode() -> None:
    """Give this run and its children one bytecode cache outside the source tree.

    With PYTHONDONTWRITEBYTECODE set (this machine sets it), every test process
    rewrites the asserts of every test module, and every child the suite starts
    (servers, workers, ``python -c``, the CLI, the relay: several hundred) compiles
    the package from source again: a third of a child's start-up. The user's wish,
    no bytecode next to the sources, is kept: the cache lives under the temp dir, in
    a directory only this user can write. Runs in the controller before the xdist
    workers and any child start, so they inherit it.
    """
    if not sys.dont_write_bytecode or sys.pycache_prefix:
        return
    cache = Path(tempfile.gettempdir()) / f"plausible_wsgi-tests-pycache-{os.getuid()}"
    try:
        cache.mkdir(mode=0o700, exist_ok=True)
        info = cache.lstat()
    except OSError:
        return
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        return  # not ours alone: compile from source as asked
    _seed_bytecode(cache)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(cache)
    sys.pycache_prefix = str(cache)
    sys.dont_write_bytecode = False


def _seed_bytecode(cache: Path) -> None:
    """Link the ``.pyc`` files the installers wrote (the standard library, the venv's
    packages) into ``cache``, once: with a prefix set, Python reads no ``__pycache__``
    directory, so on a fresh clone every process of the suite's first seconds would
    compile werkzeug, flask, gunicorn, hypothesis... at once (cold: 67 s against 58 s
    seeded; copying instead of linking cost more than it saved)."""
    tag = sys.implementation.cache_tag
    roots = sorted({sysconfig.get_paths()[key] for key in ("stdlib", "purelib", "platlib")})
    stamp = cache / f"seeded-{tag}-{zlib.crc32(chr(0).join(roots).encode()):08x}"
    if tag is None or stamp.exists():
        return
    linked = [_link_pycs(Path(root), cache, tag) for root in roots]  # each root tried
    if all(linked):
        stamp.touch()


def _link_pycs(root: Path, cache: Path, tag: str) -> bool:
    """Link ``root``'s ``.pyc`` files where ``cache`` as a prefix looks for them."""
    for folder in root.rglob("__pycache__"):
        target = cache / folder.parent.relative_to(folder.anchor)
        for pyc in folder.glob(f"*.{tag}.pyc"):
            dest = target / pyc.name
            if dest.exists():
                continue
            try:
                target.mkdir(parents=True, exist_ok=True)
                os.link(pyc, dest)
            except OSError:
                return False  # another file system, say: those compile as before
    return True


_share_bytecode()


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
        # No grace: what a test left unsent (a held answer, an open breaker, a dead
        # endpoint) is not its subject; a wait here was a second of every such test.
        collector.close(timeout=0)


#: Test files by their mean time per test on a 2-core machine, longest first (measured
#: with ``--durations=0``). With ``--maxschedchunk`` small, xdist hands out tests in
#: collection order as workers free up: the long ones start first and the short ones
#: fill the gaps, instead of one 6 s server test starting last and making the tail.
#: Files not listed keep their order after these; the list only orders, never selects.
LONG_FIRST = (
    "test_asgi_servers.py",
    "test_middleware_properties.py",
    "test_gevent.py",
    "test_gunicorn_reliability.py",
    "test_gunicorn.py",
    "test_asgi_properties.py",
    "test_uwsgi_real.py",
    "test_inspector_browser.py",
    "test_relay.py",
    "test_hardening.py",
    "test_lifecycle.py",
    "test_spool_servers.py",
    "test_properties_track.py",
    "test_spool_collector.py",
    "test_notices.py",
    "test_prometheus.py",
    "test_reliability.py",
    "test_transport.py",
    "test_cli.py",
    "test_spool.py",
    "test_security.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
