"""Terminal output for the commands: colour only on a terminal, ASCII marks when needed."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import typing as t
from collections.abc import Iterator

__all__ = ["Terminal", "configure_logging", "sigterm_as_interrupt"]


class Terminal:
    """Line output with ANSI colour only on a terminal, and ASCII marks when needed."""

    def __init__(self, out: t.TextIO, err: t.TextIO) -> None:
        self.out = out
        self.err = err
        self.color = (
            _is_tty(out) and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
        )
        fancy = _can_encode(out, "✓✗→·")
        self.ok = "✓" if fancy else "OK"
        self.bad = "✗" if fancy else "!!"
        self.arrow = "→" if fancy else "->"
        self.dot = "·" if fancy else "-"

    def print(self, text: str = "") -> None:
        try:
            print(text, file=self.out, flush=True)
        except UnicodeEncodeError:  # URLs, props or marks the terminal cannot show
            encoding = getattr(self.out, "encoding", None) or "ascii"
            print(text.encode(encoding, "replace").decode(encoding), file=self.out, flush=True)

    def error(self, text: str) -> None:
        print(f"plausible-wsgi: error: {text}", file=self.err, flush=True)

    def paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def bold(self, text: str) -> str:
        return self.paint(text, "1")

    def dim(self, text: str) -> str:
        return self.paint(text, "2")

    def green(self, text: str) -> str:
        return self.paint(text, "32")

    def yellow(self, text: str) -> str:
        return self.paint(text, "33")

    def red(self, text: str) -> str:
        return self.paint(text, "31")

    def mark(self, ok: bool) -> str:
        return self.green(self.ok) if ok else self.red(self.bad)


def _is_tty(stream: t.TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _can_encode(stream: t.TextIO, text: str) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def configure_logging(verbose: bool) -> None:
    """Library warnings (a rejected event, a collector error) go to stderr."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose:
        logging.getLogger("plausible_wsgi").setLevel(logging.DEBUG)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM stop the foreground commands as cleanly as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
