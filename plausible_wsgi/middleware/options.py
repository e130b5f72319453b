"""The middleware's options, checked once: one immutable record for WSGI and ASGI.

:class:`MiddlewareOptions` holds what the user passed, validated and normalised
(method names upper-cased, extensions lower-cased, regexes compiled); both
middlewares build one and hand it to :func:`~plausible_wsgi.middleware.decision.decide`.
A mistake raises :class:`~plausible_wsgi.ConfigurationError` naming the option.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Container, Iterable, Mapping
from typing import Any, Callable, Literal, Optional

from ..agents import AgentClassifier, AgentMatch, classify_user_agent
from ..errors import ConfigurationError, InvalidEventError
from ..request import HostPolicy, PathPattern, PathRules, QueryPolicy
from ..validation import check_custom_name, validate_name

__all__ = [
    "DEFAULT_BOT_USER_AGENT",
    "DEFAULT_DOWNLOAD_EXTENSIONS",
    "ROUTE_ENVIRON_KEY",
    "BotMode",
    "MiddlewareOptions",
    "ShouldTrack",
    "collector_name",
]

#: Sent as the User-Agent of ``bots="event"`` events: a current desktop Chrome on
#: Windows, an ordinary browser string, so that Plausible's own bot filter keeps the
#: event. The real agent travels in the event's props.
DEFAULT_BOT_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)

#: File extensions recorded as ``File Download`` when ``file_downloads=True``.
#: ``txt`` is left out on purpose: ``robots.txt``, ``ads.txt`` and ``security.txt``
#: are fetched constantly and are not downloads; add it if you serve text files.
DEFAULT_DOWNLOAD_EXTENSIONS = frozenset(
    {
        # documents
        "pdf", "csv", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "pps", "odt", "ods",
        "odp", "rtf", "key", "epub",
        # archives and installers
        "zip", "gz", "tgz", "tar", "bz2", "xz", "7z", "rar", "dmg", "pkg", "exe", "msi",
        "apk", "deb", "rpm", "iso",
        # media
        "mp3", "wav", "wma", "flac", "ogg", "midi", "mid", "mp4", "m4v", "mov", "avi",
        "wmv", "mkv", "mpg", "mpeg", "webm",
    }
)  # fmt: skip

#: Where integrations put the route template (``/users/<int:id>``) for the middleware:
#: a WSGI environ key (Flask, Django under WSGI), or an ASGI scope key.
ROUTE_ENVIRON_KEY = "plausible_wsgi.route"

BotMode = Literal["skip", "event", "pageview"]
_BOT_MODES = ("skip", "event", "pageview")

#: ``should_track(environ_or_scope, status, headers) -> bool``: the WSGI middleware
#: passes a copy of the environ, the ASGI one the scope; headers as ``str`` pairs.
ShouldTrack = Callable[[Mapping[str, Any], int, "list[tuple[str, str]]"], bool]


@dataclasses.dataclass(frozen=True)
class MiddlewareOptions:
    """Every middleware option, as given; :meth:`check` makes the validated form.

    The fields and defaults are the keyword arguments of both middlewares; see
    :class:`~plausible_wsgi.PlausibleMiddleware` for what each one means.
    """

    trusted_proxies: int = 0
    methods: Iterable[str] = ("GET",)
    statuses: Container[int] = range(200, 300)
    content_types: Iterable[str] = ("text/html", "application/xhtml+xml")
    exclude_paths: Iterable[PathPattern] = ()
    should_track: Optional[ShouldTrack] = None
    keep_query_params: Iterable[str] = ()
    url_masks: Iterable[tuple[PathPattern, str]] = ()
    allowed_hosts: Optional[Iterable[str]] = None
    bots: BotMode = "skip"
    bot_event_name: str = "Bot Visit"
    bot_domain: Optional[str] = None
    bot_user_agent: str = DEFAULT_BOT_USER_AGENT
    classifier: Optional[AgentClassifier] = None
    track_404: bool = False
    track_actions: bool = False
    file_downloads: bool = False
    download_extensions: Iterable[str] = DEFAULT_DOWNLOAD_EXTENSIONS

    @classmethod
    def from_keywords(cls, options: Mapping[str, Any]) -> CheckedOptions:
        """Check keyword arguments; an unknown name is a ConfigurationError."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ConfigurationError(
                f"unknown middleware option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(names))}"
            )
        return cls(**options).check()

    def check(self) -> CheckedOptions:
        """The validated, normalised options. Raises ConfigurationError."""
        trusted = self.trusted_proxies
        if isinstance(trusted, bool) or not isinstance(trusted, int):
            raise ConfigurationError(f"trusted_proxies must be an int, got {trusted!r}")
        if trusted < 0:
            raise ConfigurationError(f"trusted_proxies must be >= 0, got {trusted}")
        if self.should_track is not None and not callable(self.should_track):
            raise ConfigurationError(f"should_track must be callable, got {self.should_track!r}")
        if self.bots not in _BOT_MODES:
            raise ConfigurationError(f"bots must be one of {_BOT_MODES}, got {self.bots!r}")
        agent = self.bot_user_agent
        if not isinstance(agent, str) or not agent.strip():
            raise ConfigurationError(f"bot_user_agent must be a non-blank string: {agent!r}")
        classifier = self.classifier
        if classifier is not None and not isinstance(classifier, AgentClassifier):
            raise ConfigurationError(f"classifier must be an AgentClassifier, got {classifier!r}")
        domain = self.bot_domain if self.bots == "event" else None
        if domain is not None and (not isinstance(domain, str) or not domain.strip()):
            raise ConfigurationError(f"bot_domain must be a site domain, got {domain!r}")
        return CheckedOptions(
            given=self,
            trusted_proxies=trusted,
            methods=frozenset(_strings("methods", self.methods, str.upper)),
            statuses=self.statuses,
            content_types=frozenset(_strings("content_types", self.content_types, str.lower)),
            should_track=self.should_track,
            paths=PathRules(self.exclude_paths, self.url_masks),
            query=QueryPolicy(self.keep_query_params),
            host_allowed=HostPolicy(self.allowed_hosts).check,
            bots=self.bots,
            bot_event_name=_event_name("bot_event_name", self.bot_event_name),
            bot_domain=domain,
            bot_user_agent=agent,
            classify=_classifier(self.bots, classifier),
            track_404=bool(self.track_404),
            track_actions=bool(self.track_actions),
            file_downloads=bool(self.file_downloads),
            download_extensions=frozenset(
                _strings(
                    "download_extensions", self.download_extensions, lambda e: e.lower().lstrip(".")
                )
            ),
        )


@dataclasses.dataclass(frozen=True)
class CheckedOptions:
    """:class:`MiddlewareOptions` after :meth:`~MiddlewareOptions.check`: what the
    request path reads."""

    #: The options as the user gave them.
    given: MiddlewareOptions
    trusted_proxies: int
    methods: frozenset[str]
    statuses: Container[int]
    content_types: frozenset[str]
    should_track: Optional[ShouldTrack]
    paths: PathRules
    query: QueryPolicy
    host_allowed: Callable[[str], bool]
    bots: BotMode
    bot_event_name: str
    #: ``None`` unless ``bots="event"`` and a ``bot_domain`` was given.
    bot_domain: Optional[str]
    bot_user_agent: str
    #: What agent a (sendable) User-Agent is; ``None`` for a browser, and always with
    #: ``bots="pageview"``, where agents are not classified.
    classify: Callable[[Optional[str]], Optional[AgentMatch]]
    track_404: bool
    track_actions: bool
    file_downloads: bool
    download_extensions: frozenset[str]


def collector_name(collector: object) -> str:
    """A collector's ``name`` for logs, else its type's."""
    name = getattr(collector, "name", None)
    return name if isinstance(name, str) else type(collector).__name__


def _classifier(
    bots: BotMode, classifier: Optional[AgentClassifier]
) -> Callable[[Optional[str]], Optional[AgentMatch]]:
    if bots == "pageview":
        return _browser
    return classify_user_agent if classifier is None else classifier.classify


def _browser(user_agent: Optional[str]) -> None:
    """The classification with ``bots="pageview"``: every visitor is a browser."""
    return


def _strings(name: str, values: Iterable[str], normalize: Callable[[str], str]) -> list[str]:
    if isinstance(values, str):
        raise ConfigurationError(f"{name} must be an iterable of strings, not a string: {values!r}")
    out = []
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(f"{name} must hold non-blank strings, got {value!r}")
        out.append(normalize(value.strip()))
    return out


def _event_name(name: str, value: object) -> str:
    """A custom event name Plausible accepts and does not reserve."""
    try:
        checked = validate_name(value)
        check_custom_name(checked)
    except InvalidEventError as exc:
        raise ConfigurationError(f"{name}: {exc}") from None
    return checked
