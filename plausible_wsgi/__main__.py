"""``python -m plausible_wsgi``: see :mod:`plausible_wsgi.cli`."""

from __future__ import annotations

from .cli import main

raise SystemExit(main(prog="python -m plausible_wsgi"))
