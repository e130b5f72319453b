"""Hooks and the stall warning given through a framework's settings (Flask's
``app.config``, Django's ``PLAUSIBLE``), and what they should do once there."""

from __future__ import annotations

from typing import Callable, Optional

from sink import Answer, Sink, wait_until

import plausible_wsgi as pw

#: Options (upper case, without a framework's prefix) under which a dead endpoint
#: warns within a moment: a stall threshold far under the default 5 minutes.
STALL_OPTIONS: dict[str, object] = {
    "STALL_WARNING_AFTER": 0.05,
    "FLUSH_INTERVAL": 0.05,
    "RETRY": {"max_retries": 10_000, "initial_backoff": 0.01, "max_backoff": 0.02},
    "CIRCUIT_BREAKER": None,
    "SHUTDOWN_TIMEOUT": 0.1,
}


class SettingsHooks:
    """``before_send`` vetoes the first page and marks the others; ``on_drop`` and
    ``on_error`` record what they hear.

    :param pages: the paths of three pages: vetoed, rejected by the sink (400), sent.
    """

    def __init__(self, pages: tuple[str, str, str]) -> None:
        self.pages = pages
        self.reported: list[tuple[str, str, object]] = []

    def options(self) -> dict[str, object]:
        """The hooks as options (upper case, without a framework's prefix)."""
        return {"BEFORE_SEND": self.before_send, "ON_DROP": self.on_drop, "ON_ERROR": self.on_error}

    def before_send(self, event: pw.Event) -> Optional[pw.Event]:
        if event.url.endswith(self.pages[0]):
            return None
        return event._replace(props={"via": "settings"})

    def on_drop(self, event: pw.Event, why: pw.DropReason, detail: str) -> None:
        self.reported.append(("drop", event.url, why))

    def on_error(self, event: pw.Event, why: pw.Settlement, detail: str) -> None:
        self.reported.append(("error", event.url, why))

    def visit(self, sink: Sink, get: Callable[[str], object], flush: Callable[[], bool]) -> None:
        """Visit the three pages, one delivery settled before the next."""
        vetoed, rejected, sent = self.pages
        get(vetoed)
        assert flush()
        sink.answer(Answer(status=400, body=b'{"errors": {"url": ["is invalid"]}}'))
        get(rejected)
        assert flush()
        get(sent)
        assert flush()

    def check(self, sink: Sink, origin: str) -> None:
        """Each hook did its part, for pages served at ``origin``."""
        vetoed, rejected, sent = (origin + page for page in self.pages)
        wait_until(lambda: len(self.reported) == 2)
        assert self.reported == [
            ("drop", vetoed, pw.DropReason.VETOED),
            ("error", rejected, pw.Settlement.REJECTED),
        ]
        assert [(hit.json["url"], hit.json.get("props"), hit.status) for hit in sink.hits] == [
            (rejected, {"via": "settings"}, 400),
            (sent, {"via": "settings"}, 202),
        ]
