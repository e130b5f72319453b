"""Framework settings → collector and middleware arguments (Flask and Django share it).

A framework integration reads a flat mapping of option names — the keyword arguments
of :class:`~plausible_wsgi.PlausibleCollector` and
:class:`~plausible_wsgi.PlausibleMiddleware`, lower-cased — from its own settings
(``PLAUSIBLE_BATCH_SIZE`` in Flask's ``app.config``, ``"BATCH_SIZE"`` in Django's
``PLAUSIBLE`` dict) and hands it to :func:`build`. The option lists are read from the
two signatures, so a new argument is configurable everywhere without a change here.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Iterable, Mapping
from typing import Callable, NamedTuple, Optional

from .checks import check_collectors
from .collector import Collector, PlausibleCollector
from .delivery.policies import CircuitBreakerConfig, RetryConfig
from .errors import ConfigurationError
from .middleware import PlausibleMiddleware

__all__ = [
    "EXTRA_OPTIONS",
    "BuiltOptions",
    "all_options",
    "build",
    "collector_options",
    "middleware_options",
    "read_options",
]

#: Options of the integrations themselves, not of a constructor.
#: ``collector``: a ready collector (or a list of them) used instead of building one
#: from ``domain``, ``endpoint``, ...; for tests (a ``MemoryCollector``) or fan-out.
EXTRA_OPTIONS = ("collector",)


def _keyword_names(callable_: object) -> tuple[str, ...]:
    signature = inspect.signature(callable_)  # type: ignore[arg-type]
    return tuple(
        name
        for name, parameter in signature.parameters.items()
        if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
    )


@functools.cache
def collector_options() -> tuple[str, ...]:
    """The :class:`~plausible_wsgi.PlausibleCollector` arguments, ``domain`` first."""
    return _keyword_names(PlausibleCollector)


@functools.cache
def middleware_options() -> tuple[str, ...]:
    """The :class:`~plausible_wsgi.PlausibleMiddleware` keyword arguments."""
    return tuple(
        name
        for name in _keyword_names(PlausibleMiddleware)
        # close_collectors follows from where the collectors come from (see wrap()).
        if name not in ("app", "collectors", "close_collectors")
    )


def all_options() -> tuple[str, ...]:
    """Every option an integration reads, in documentation order."""
    return (*collector_options(), *middleware_options(), *EXTRA_OPTIONS)


class BuiltOptions(NamedTuple):
    """What :func:`build` makes of a settings mapping."""

    #: The collectors to record into.
    collectors: tuple[Collector, ...]
    #: True when the collectors were built here (so the integration owns them).
    owned: bool
    #: Keyword arguments for :class:`~plausible_wsgi.PlausibleMiddleware`.
    middleware_kwargs: dict[str, object]


def _policy(name: str, value: object, kind: type[object]) -> object:
    """Accept a plain mapping for ``retry`` / ``circuit_breaker`` (settings files)."""
    if isinstance(value, Mapping):
        try:
            return kind(**value)
        except TypeError as exc:
            raise ConfigurationError(f"{name}: {exc}") from exc
    if value is False:
        return None
    return value


def read_options(
    items: Iterable[tuple[str, object]], known: Mapping[str, str], *, spell: Callable[[str], str]
) -> dict[str, object]:
    """Settings (key, value) → option name → value, refusing unknown keys.

    A misspelt key would otherwise silently keep a default (``TRUSTED_PROXY = 1``
    and every visitor gets the proxy's IP), so it raises, naming the closest key.

    :param known: settings key → option name.
    :param spell: how the user writes a key, for the message (``app.config['X']``).
    """
    options: dict[str, object] = {}
    for key, value in items:
        name = known.get(key)
        if name is None:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = (
                f"did you mean {spell(close[0])}?"
                if close
                else f"known keys: {', '.join(sorted(known))}"
            )
            raise ConfigurationError(f"{spell(key)} is not a plausible_wsgi setting; {hint}")
        options[name] = value
    return options


def build(options: Mapping[str, object], *, source: str) -> BuiltOptions:
    """Build the collectors and middleware arguments from ``options``.

    :param options: option name (lower case) → value; absent options keep their
        defaults.
    :param source: how the user spells the settings, for error messages, e.g.
        ``"app.config (PLAUSIBLE_*)"``.
    :raises ConfigurationError: for a missing domain or an invalid value, prefixed
        with ``source``.
    """
    try:
        collector_kwargs = {name: options[name] for name in collector_options() if name in options}
        for name, kind in (("retry", RetryConfig), ("circuit_breaker", CircuitBreakerConfig)):
            if name in collector_kwargs:
                collector_kwargs[name] = _policy(name, collector_kwargs[name], kind)
        given: Optional[object] = options.get("collector")
        if given is not None:
            if collector_kwargs:
                raise ConfigurationError(
                    "give either a ready collector or the options to build one "
                    f"({', '.join(sorted(collector_kwargs))}), not both"
                )
            collectors, owned = check_collectors("collector", given, Collector), False
        else:
            domain = collector_kwargs.pop("domain", None)
            if domain is None:
                raise ConfigurationError(
                    "domain is required: the site as registered in Plausible, e.g. 'example.com'"
                )
            collectors = (PlausibleCollector(domain, **collector_kwargs),)  # type: ignore[arg-type]
            owned = True
        middleware_kwargs = {
            name: options[name] for name in middleware_options() if name in options
        }
    except ConfigurationError as exc:
        raise ConfigurationError(f"{source}: {exc}") from exc
    return BuiltOptions(collectors, owned, middleware_kwargs)


def wrap(app: object, built: BuiltOptions, *, source: str) -> PlausibleMiddleware:
    """``PlausibleMiddleware(app, ...)`` from :func:`build`'s result.

    The middleware owns (closes at exit) only collectors built here; a ready
    collector from the settings stays its maker's. A bad middleware option closes
    the collectors built for it (no threads or exit hooks left behind) and is
    reported prefixed with ``source``.
    """
    try:
        return PlausibleMiddleware(
            app,  # type: ignore[arg-type]
            built.collectors,
            close_collectors=built.owned,
            **built.middleware_kwargs,  # type: ignore[arg-type]
        )
    except ConfigurationError as exc:
        if built.owned:
            for collector in built.collectors:
                collector.close(0)
        raise ConfigurationError(f"{source}: {exc}") from exc
