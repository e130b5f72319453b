"""A minimal Django project in one module: settings, views and URLs.

The recommended, settings-driven setup: ``plausible_wsgi.django.PlausibleMiddleware``
in ``MIDDLEWARE`` and a ``PLAUSIBLE`` dict. Run it with::

    cd examples/django_app
    PLAUSIBLE_DOMAIN=example.com PLAUSIBLE_ENDPOINT=http://127.0.0.1:8765 \\
        gunicorn wsgi:application

``wrapped_wsgi.py`` shows the other setup: the WSGI app wrapped in
``plausible_wsgi.PlausibleMiddleware``, with only the route taken from Django.
"""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import path
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_GET, require_POST

from plausible_wsgi.django import track

DEBUG = False
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]
ROOT_URLCONF = __name__
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, object] = {}
USE_TZ = True

MIDDLEWARE = [
    # wrapped_wsgi.py records at the WSGI level; Django then only names the route.
    "plausible_wsgi.django.RouteMiddleware"
    if os.environ.get("SHOP_WRAPPED_WSGI")
    else "plausible_wsgi.django.PlausibleMiddleware",
    "django.middleware.common.CommonMiddleware",
]

PLAUSIBLE = {
    "DOMAIN": os.environ.get("PLAUSIBLE_DOMAIN", "example.com"),
    "ENDPOINT": os.environ.get("PLAUSIBLE_ENDPOINT", "https://plausible.io"),
    "TRUSTED_PROXIES": int(os.environ.get("PLAUSIBLE_TRUSTED_PROXIES", "0")),
    "TRACK_ACTIONS": True,
}

ITEMS = {1: "Starter kit", 2: "Pro kit"}
PAGE = "<!doctype html><title>{}</title><h1>{}</h1>{}"


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    links = format_html(
        "<ul>{}</ul>", format_html_join("", '<li><a href="/items/{}/">{}</a></li>', ITEMS.items())
    )
    return HttpResponse(format_html(PAGE, "Shop", "Welcome", links))


@require_GET
def item(request: HttpRequest, pk: int) -> HttpResponse:
    name = ITEMS.get(pk)
    if name is None:
        return HttpResponse(format_html(PAGE, "Not found", "No such item", ""), status=404)
    return HttpResponse(format_html(PAGE, name, name, ""))


@require_GET
def api_items(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"items": [{"id": pk, "name": name} for pk, name in ITEMS.items()]})


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


@require_POST
def signup(request: HttpRequest) -> HttpResponse:
    plan = request.POST.get("plan", "free")
    track("Signup", props={"plan": plan})
    return HttpResponseRedirect("/", status=303)


urlpatterns = [
    path("", home),
    path("items/<int:pk>/", item),
    path("api/items", api_items),
    path("healthz", healthz),
    path("signup", signup),
]
