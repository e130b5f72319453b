"""WSGI entry point with the app wrapped in ``plausible_wsgi.PlausibleMiddleware``.

The framework-agnostic setup, as for any WSGI app. ``SHOP_WRAPPED_WSGI`` makes
``shop.MIDDLEWARE`` use ``RouteMiddleware``, which only names the route for server
actions, so nothing is recorded twice. The views' ``track()`` calls use the same
collector (``plausible_wsgi.django.collector()``, built from ``shop.PLAUSIBLE``)::

    gunicorn wrapped_wsgi:application
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

import plausible_wsgi as pw
from plausible_wsgi.django import collector

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop")
os.environ["SHOP_WRAPPED_WSGI"] = "1"

application = pw.PlausibleMiddleware(
    get_wsgi_application(),
    collector(),
    trusted_proxies=int(os.environ.get("PLAUSIBLE_TRUSTED_PROXIES", "0")),
    track_actions=True,
)
