"""ASGI: page views and request-scoped ``track()`` for Starlette, FastAPI, Quart, Django.

``plausible_wsgi.asgi.PlausibleMiddleware(app, collectors, **options)`` takes the
options of the WSGI :class:`plausible_wsgi.PlausibleMiddleware` and applies the same
rules (:func:`plausible_wsgi.middleware.decide`). FastAPI / Starlette::

    import plausible_wsgi as pw
    from plausible_wsgi.asgi import PlausibleMiddleware

    collector = pw.PlausibleCollector("example.com")
    app.add_middleware(PlausibleMiddleware, collectors=collector)

Django: ``application = PlausibleMiddleware(get_asgi_application(), collector)``,
with ``plausible_wsgi.django.RouteMiddleware`` in ``MIDDLEWARE`` to name actions.
Nothing here imports a framework.
"""

from __future__ import annotations

from .middleware.asgi import ASGIApp, Message, PlausibleMiddleware, Receive, Scope, Send

__all__ = ["ASGIApp", "Message", "PlausibleMiddleware", "Receive", "Scope", "Send"]
