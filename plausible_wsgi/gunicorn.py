"""gunicorn server hooks: fresh delivery threads per worker, a flush at worker exit.

Collectors are already fork-safe and flush at interpreter exit, so gunicorn works
without these hooks. They make two things explicit and independent of interpreter
exit order:

- :func:`post_fork` resets, in the new worker, every collector created in the master
  (``--preload``): its own buffer, threads and HTTP connections. The events the master
  had buffered stay the master's.
- :func:`worker_exit` flushes every collector of the worker when it stops (SIGTERM,
  ``max_requests``, a reload), within one budget: the largest ``shutdown_timeout``,
  5 s by default — well inside gunicorn's ``graceful_timeout`` (30 s).

Use them from the gunicorn config file::

    # gunicorn.conf.py
    from plausible_wsgi.gunicorn import post_fork, worker_exit

Any worker class that runs the app in the worker process works: ``sync``,
``gthread`` and ``gevent`` are tested. Importing this module imports nothing that
keeps references to ``ssl`` classes (requests and urllib3 are imported on the first
TLS connection, in the worker), so gevent's monkey-patching in the workers, which
comes after the config file was read, does not warn.
"""

from __future__ import annotations

from . import lifecycle

__all__ = ["post_fork", "worker_exit"]


def post_fork(server: object, worker: object) -> None:
    """gunicorn ``post_fork`` hook: give this worker its own delivery state.

    ``os.register_at_fork`` normally did this already; the pid check makes it hold
    for a fork that skipped the at-fork hooks too.
    """
    lifecycle.check_fork()


def worker_exit(server: object, worker: object) -> None:
    """gunicorn ``worker_exit`` hook: flush every collector of this worker.

    Same as :func:`plausible_wsgi.shutdown` with its default budget.
    """
    lifecycle.close_all()
