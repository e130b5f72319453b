"""WSGI entry point of the example project (settings-driven setup).

Nothing Plausible-specific here: ``shop.MIDDLEWARE`` and ``shop.PLAUSIBLE`` do it.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop")

application = get_wsgi_application()
