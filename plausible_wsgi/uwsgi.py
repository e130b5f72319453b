"""uWSGI integration: flush at worker exit, and say which flags are missing.

uWSGI differs from other WSGI servers in ways that matter to a background sender:

- Python threads: older uWSGI releases left them off unless ``enable-threads`` (or
  ``threads``) was set, and the delivery threads would never run. 2.0.31 (tested)
  turns them on without any flag and says so ("python threads support enabled");
  the ``uwsgi.has_threads`` flag tells which, and only a real "off" is warned about.
- Workers are forked from C. Unless ``py-call-uwsgi-fork-hooks`` (or
  ``py-call-osafterfork``) is set, ``os.register_at_fork`` hooks do not run in the
  workers. The collector falls back to a pid check on its next use, so it still works,
  but a worker only notices the fork when it first records an event. ``lazy-apps``
  loads the app after the fork and avoids the question altogether.
- Python's ``atexit`` handlers are often skipped when a worker stops (reload,
  ``max-requests``, harakiri), so the buffer would be lost; ``uwsgi.atexit`` is
  called instead. But uWSGI skips ``uwsgi.atexit`` too for a worker that is busy
  when it stops (``plugins/python/python_plugin.c``), and every SIGKILL skips
  everything: events buffered in memory are then lost, uncounted. A collector with
  ``spool=PATH`` loses none of them: the next worker, or ``python -m plausible_wsgi
  relay``, sends them. :func:`install` warns once when no collector has a spool.

Call :func:`install` once, where the app is created::

    # wsgi.py
    import plausible_wsgi.uwsgi

    app = create_app()
    plausible_wsgi.uwsgi.install()

and run uWSGI with either ``--lazy-apps`` or ``--py-call-uwsgi-fork-hooks`` (and
``--enable-threads`` where :func:`install` says threads are off). Outside uWSGI
:func:`install` does nothing.
"""

from __future__ import annotations

import importlib
import threading
import types
from collections.abc import Mapping
from typing import Callable, Optional

from ._log import logger
from .lifecycle import close_all
from .spool import feeder as spool_feeder

__all__ = ["check_options", "install"]

_FALSE_VALUES = frozenset({"", "0", "false", "no", "off", "n", "f"})

_warned = False
_warn_lock = threading.Lock()


def _uwsgi() -> Optional[types.ModuleType]:
    """The ``uwsgi`` module, which exists only inside a uWSGI process."""
    try:
        return importlib.import_module("uwsgi")
    except ImportError:
        return None


def _values(options: Mapping[str, object], name: str) -> list[str]:
    """The values of option ``name`` as text; repeated options come as a list."""
    raw = options.get(name)
    if raw is None:
        return []
    items = raw if isinstance(raw, (list, tuple)) else [raw]
    out = []
    for item in items:
        if isinstance(item, bool):
            # A flag given without a value (``--enable-threads``) shows up as True.
            out.append("true" if item else "false")
        elif isinstance(item, (bytes, bytearray)):
            out.append(bytes(item).decode("utf-8", "replace").strip())
        else:
            out.append(str(item).strip())
    return out


def _enabled(options: Mapping[str, object], name: str) -> bool:
    values = _values(options, name)
    return bool(values) and values[-1].lower() not in _FALSE_VALUES


def _count(options: Mapping[str, object], name: str) -> int:
    values = _values(options, name)
    try:
        return int(values[-1]) if values else 0
    except ValueError:
        return 0


def check_options(options: Mapping[str, object], has_threads: Optional[bool] = None) -> list[str]:
    """The problems the uWSGI options ``options`` (``uwsgi.opt``) cause for delivery.

    :param has_threads: ``uwsgi.has_threads`` when the running uWSGI has it: whether
        Python threads really run (recent uWSGI enables them without any flag). When
        ``None`` the flags decide.

    Each entry names the flag to add; an empty list means the setup is fine.
    """
    problems = []
    if has_threads is None:
        has_threads = _enabled(options, "enable-threads") or _count(options, "threads") >= 1
    if not has_threads:
        problems.append(
            "Python threads are disabled, so events are never sent: "
            "add --enable-threads (enable-threads = true)"
        )
    lazy = _enabled(options, "lazy-apps") or _enabled(options, "lazy")
    fork_hooks = _enabled(options, "py-call-uwsgi-fork-hooks") or _enabled(
        options, "py-call-osafterfork"
    )
    if not lazy and not fork_hooks:
        problems.append(
            "workers are forked without Python's fork hooks: add "
            "--py-call-uwsgi-fork-hooks (py-call-uwsgi-fork-hooks = true) "
            "or load the app in each worker with --lazy-apps"
        )
    return problems


def _warn_once(problems: list[str]) -> None:
    global _warned
    with _warn_lock:
        if _warned or not problems:
            return
        _warned = True
    logger.warning("plausible_wsgi under uWSGI: %s", "; ".join(problems))


def install(timeout: Optional[float] = None) -> bool:
    """Flush every collector when a uWSGI worker exits; warn about missing flags.

    Sets ``uwsgi.atexit`` to :func:`plausible_wsgi.shutdown` (calling any handler
    already there first), and logs one warning naming the flags to add when
    ``uwsgi.opt`` shows threads disabled or fork hooks off.

    :param timeout: seconds for the exit flush of all collectors together; ``None``
        uses the largest ``shutdown_timeout`` among them.
    :returns: True under uWSGI, False (and nothing done) elsewhere.
    """
    uwsgi = _uwsgi()
    if uwsgi is None:
        return False
    options = getattr(uwsgi, "opt", None)
    if isinstance(options, Mapping):
        has_threads = getattr(uwsgi, "has_threads", None)
        problems = check_options(options, None if has_threads is None else bool(has_threads))
        if not spool_feeder.feeders():
            problems.append(
                "a worker busy when it stops (reload, shutdown, max-requests, harakiri) "
                "or killed skips every exit hook: the events it holds in memory are lost "
                "uncounted; PlausibleCollector(..., spool=PATH) keeps them"
            )
        _warn_once(problems)
    previous: Optional[Callable[[], object]] = getattr(uwsgi, "atexit", None)
    if getattr(previous, "_plausible_wsgi", False):
        return True

    def flush_at_exit() -> None:
        try:
            if previous is not None:
                previous()
        finally:
            close_all(timeout)

    flush_at_exit._plausible_wsgi = True  # type: ignore[attr-defined]
    setattr(uwsgi, "atexit", flush_at_exit)  # noqa: B010 (a module attribute mypy cannot see)
    return True
