"""The command line: ``python -m plausible_wsgi`` and the ``plausible-wsgi`` script.

Commands, one module each:

``demo`` (:mod:`.demo`)
    The whole path on loopback: a local Plausible receiver, the example shop under a
    real WSGI server wrapped in :class:`~plausible_wsgi.PlausibleMiddleware`, simulated
    traffic through it, and a table of what was expected against what arrived.
``serve`` (:mod:`.serve`)
    The receiver alone, in the foreground: one line per event, and the live inspector
    page at ``/``.
``send`` (:mod:`.send`)
    One event to any endpoint, checked by the package's own validation and sent by the
    collector's own transport; prints the answer and what it means.
``doctor`` (:mod:`.doctor`)
    Checks a real setup end to end: the endpoint's health, one debug event, whether
    the site exists, and whether the visitor data would look like a visitor's.
``relay`` (:mod:`plausible_wsgi.spool.relay`)
    Drains a spool written by ``deliver=False`` web processes: a sidecar, one per host.

Exit status: ``0`` success, ``1`` failure (event dropped or rejected, server
unreachable, demo incomplete, a doctor check failed), ``2`` usage errors, ``130``
interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import typing as t
from collections.abc import Sequence

from .. import __version__
from ..spool import relay
from . import demo, doctor, send, serve
from .args import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, HELP
from .send import BROWSER_USER_AGENT
from .terminal import Terminal, configure_logging, sigterm_as_interrupt

__all__ = ["BROWSER_USER_AGENT", "build_parser", "main"]


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of every command (``prog`` names the program in help)."""
    parser = argparse.ArgumentParser(
        prog=prog or "plausible-wsgi",
        formatter_class=HELP,
        description="Server-side Plausible Analytics for WSGI apps: try it, test it, debug it.",
        epilog=(
            "Start with:  %(prog)s demo\n"
            "Help on a command:  %(prog)s COMMAND --help\n\n"
            "Exit status: 0 success, 1 failure (event not counted, demo incomplete),\n"
            "2 usage error, 130 interrupted."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log the library's debug messages to stderr"
    )
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for command in (demo, serve, send, doctor, relay):
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run a command; return the exit status (``--help`` and usage errors included)."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    configure_logging(args.verbose)
    term = Terminal(sys.stdout, sys.stderr)
    handler: t.Callable[[argparse.Namespace, Terminal], int] = args.handler
    with sigterm_as_interrupt():
        try:
            return handler(args, term)
        except KeyboardInterrupt:
            term.print("\ninterrupted")
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, and keep the interpreter
            # from complaining when it flushes stdout at exit.
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            return EXIT_FAILED
