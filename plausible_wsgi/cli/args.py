"""Argument types and exit statuses shared by the commands."""

from __future__ import annotations

import argparse

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "HELP",
    "UsageError",
    "add_connection_arguments",
    "port",
    "positive_int",
    "positive_seconds",
    "seconds",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Input the user must fix: reported as ``error: ...`` with exit status 2."""


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535 (0 = any free port), got {value}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be >= 0, got {text}")
    return value


def positive_seconds(text: str) -> float:
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("seconds must be > 0")
    return value


HELP = argparse.RawDescriptionHelpFormatter


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--timeout`` and ``--ca-bundle``, for the commands that reach an endpoint."""
    parser.add_argument(
        "--timeout", type=positive_seconds, default=10.0, help="seconds (default: %(default)s)"
    )
    parser.add_argument("--ca-bundle", metavar="PATH", help="CA bundle for a private CA")
