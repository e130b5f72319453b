"""gunicorn settings for the examples: the plausible_wsgi hooks, and little else.

    gunicorn -c examples/gunicorn.conf.py --chdir examples flask_app:app

``post_fork`` gives each worker its own delivery threads (a collector created in the
master with ``--preload`` included); ``worker_exit`` flushes the worker's events when
it stops, so a ``SIGTERM`` right after the last response loses none. Works with the
``sync`` and ``gthread`` worker classes. Command-line options override these values.
"""

from __future__ import annotations

import os

from plausible_wsgi.gunicorn import post_fork, worker_exit  # noqa: F401

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Well above the collectors' exit flush budget (shutdown_timeout, 5 s by default).
graceful_timeout = 30
