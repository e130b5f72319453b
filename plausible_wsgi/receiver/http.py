"""The HTTP plumbing of the receiver: reading bodies, answering, resetting."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import typing as t
from collections.abc import Mapping
from pathlib import Path

from werkzeug.wrappers import Request, Response

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = [
    "ASSETS",
    "asset_response",
    "debug_answer",
    "json_response",
    "read_body",
    "remote_port",
    "reset_connection",
    "text_response",
]

_STATIC = Path(__file__).with_name("static")
ASSETS = {
    "inspector.css": "text/css; charset=utf-8",
    "inspector.js": "text/javascript; charset=utf-8",
}
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
    ),
}


def read_body(request: Request, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body, and whether there was more."""
    if limit == 0:
        return b"", False  # no Content-Type: the server never reads the body
    length = request.content_length
    if length is not None and length > limit:
        return b"", True
    stream = request.stream
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(65536)
        if not chunk:
            return b"".join(chunks), False
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)


def reset_connection(environ: WSGIEnvironment) -> None:
    sock = environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket):
        raise RuntimeError("Fault(reset=True) needs werkzeug's server (environ lacks a socket)")
    # Linger 0 makes the final close send RST; shutting down now means the client gets
    # no response at all, and werkzeug's attempt to write one fails as a dropped
    # connection, which it handles quietly.
    with contextlib.suppress(OSError):  # the client may be gone already
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)


def remote_port(environ: WSGIEnvironment) -> int | None:
    # werkzeug gives an int, other servers a string or nothing.
    try:
        return int(environ["REMOTE_PORT"])
    except (KeyError, TypeError, ValueError):
        return None


def text_response(status: int, body: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(body, status=status, headers=dict(headers or {}), mimetype="text/plain")


def json_response(status: int, value: object) -> Response:
    return Response(json.dumps(value), status=status, mimetype="application/json")


def asset_response(name: str, content_type: str) -> Response:
    return Response((_STATIC / name).read_bytes(), content_type=content_type, headers=_PAGE_HEADERS)


def debug_answer(
    common: Mapping[str, t.Any], drafts: list[dict[str, t.Any]], headers: dict[str, str] | None
) -> Response:
    """``X-Debug-Request: true``: what the server saw, as Plausible's docs describe the
    header (200 with the IP used), plus each event's outcome and drop reason, so
    ``python -m plausible_wsgi doctor`` can explain a drop."""
    seen = {
        "ip": common["client_ip"],
        "user_agent": common["user_agent"],
        "events": [
            {key: draft[key] for key in ("domain", "name", "outcome", "drop_reason")}
            for draft in drafts
        ],
    }
    response = json_response(200, seen)
    response.headers.extend(headers or {})
    return response
