"""Classify a request's ``User-Agent``: AI agents, crawlers, previews, monitors, scripts.

The middleware calls :func:`classify_user_agent` (or an :class:`AgentClassifier` of
your own) on every request. The answer is ``None`` for what looks like a person's
browser, or an :class:`AgentMatch` naming the kind of agent, the agent and its
operator, so that automated traffic can be left out of page views or reported
separately (for example as a custom event with the agent as a property).

Kinds
-----
``ai_assistant``
    Fetches a page *now, for a person* who asked an AI product something
    (ChatGPT-User, Claude-User, Perplexity-User, MistralAI-User, Google-Agent,
    DuckAssistBot, meta-externalfetcher, ...). Each request stands for a human's
    question: these are the "AI visits" most site owners want to count.
``ai_search``
    Builds the index an AI product searches later (OAI-SearchBot,
    Claude-SearchBot, PerplexityBot, meta-webindexer, ...).
``ai_training``
    Collects pages that may be used to train models (GPTBot, ClaudeBot, CCBot,
    Bytespider, meta-externalagent, Amazonbot, ...).
``search_engine``
    Classic search-engine crawlers (Googlebot, bingbot, DuckDuckBot, YandexBot,
    Baiduspider, Applebot, ...).
``preview``
    Fetches a link to draw a preview card when somebody shares it (Slackbot,
    facebookexternalhit, Twitterbot, LinkedInBot, Discordbot, TelegramBot, ...).
``monitor``
    Uptime checks, synthetic tests and health probes (UptimeRobot, Pingdom,
    Datadog Synthetics, kube-probe, ELB-HealthChecker, ...).
``other_bot``
    Everything else automated: HTTP libraries and command-line tools (curl,
    python-requests, Go-http-client, ...), headless browsers, SEO crawlers, and the
    generic fallback for any product token containing ``bot``, ``crawl`` or ``spider``.

Sources
-------
Each group of :data:`DEFAULT_RULES` names the operator's own crawler documentation.
Three entries are *robots.txt product tokens only* and never appear in a
``User-Agent`` header: ``Google-Extended`` (Google's crawling is done by Googlebot;
the token only controls whether the content may be used for Gemini),
``Applebot-Extended`` (likewise for Applebot and Apple's models) and
``Webzio-Extended``. They are in the table so that it doubles as a reference for
robots.txt, and so they are matched before ``Applebot`` should anybody send them.

A ``User-Agent`` is a claim, not a proof: anybody can send ``Googlebot``. Operators
publish IP ranges or reverse-DNS rules for verification; this module does not
verify, it classifies what the header says.

Matching
--------
Tokens are matched case-insensitively anywhere in the header. When several rules
match, the one *earliest in the table* wins, wherever in the header it matched:
specific rules come before generic ones (``ChatGPT-User`` before the generic
``bot``, ``Applebot-Extended`` before ``Applebot``, ``TelegramBot`` before
``Twitterbot`` because Telegram sends ``TelegramBot (like TwitterBot)``,
``LinkedInBot`` before ``Apache-HttpClient``).

Human browsers are never matched on purpose: there is no rule for ``Chrome``,
``Safari`` or ``Mobile``, and the generic ``bot`` rule skips ``CUBOT``, an Android
phone brand whose model names appear in its browsers' ``User-Agent``.

An empty or missing header (``None``, ``""`` or only spaces) is classified as
:data:`UNKNOWN_AGENT` (``other_bot``, agent ``"unknown"``): every browser sends one,
so its absence almost always means a script.

Speed
-----
All tokens are compiled into one regular expression (the literal tokens as a
prefix trie, which is several times faster than a flat alternation); the matched
text is looked up in a table to find the rule. Results are kept in a bounded LRU
cache keyed by the header (``cache_size`` entries; headers are truncated to
:data:`MAX_USER_AGENT_LENGTH` characters first, which also bounds the memory).
A cached answer costs about 0.2 µs; a header seen for the first time about
10 µs (``python bench/agents.py``).
Regex tokens written in lowercase and starting with a literal character keep the
expression fast; others are matched with ``(?i:...)`` and still work.

Extending
---------
Rows are plain :class:`AgentRule` tuples::

    from plausible_wsgi.agents import AgentClassifier, AgentRule

    classifier = AgentClassifier(
        extra_rules=[
            AgentRule("acme-uptime", "Acme Uptime", "Acme Inc.", "monitor"),
            # Override a default: every default row whose agent is "GPTBot" is replaced.
            AgentRule("GPTBot", "GPTBot", "OpenAI", "ai_search"),
            AgentRule(r"acme-\\d+-crawler", "Acme crawler", "Acme Inc.", "other_bot", regex=True),
        ]
    )

``extra_rules`` are checked before the table and replace the rows that have the same
agent name (compared case-insensitively). To start from nothing, pass ``rules=()``;
to drop rows, pass a filtered ``DEFAULT_RULES``. A rule whose ``agent`` is ``""``
reports the product token around the match instead (that is how the generic
fallback reports ``"FooBot"`` for ``Mozilla/5.0 (compatible; FooBot/1.0)``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from plausible_wsgi.agent_rules import (
    AGENT_KINDS,
    DEFAULT_RULES,
    UNKNOWN_AGENT,
    AgentKind,
    AgentMatch,
    AgentRule,
)
from plausible_wsgi.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Sequence

    _Trie = dict[str, "_Trie"]

__all__ = [
    "AGENT_KINDS",
    "DEFAULT_RULES",
    "MAX_USER_AGENT_LENGTH",
    "UNKNOWN_AGENT",
    "AgentClassifier",
    "AgentKind",
    "AgentMatch",
    "AgentRule",
    "classify_user_agent",
]

#: Headers are cut to this many characters before matching and caching. Real
#: ``User-Agent`` values stay far below it; the cut bounds the work and the cache.
MAX_USER_AGENT_LENGTH: Final = 1024


_WORD_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_END: Final = ""  # trie key marking the end of a token; tokens are never empty


def _product_token(user_agent: str, start: int, end: int) -> str:
    """The run of letters, digits, ``-`` and ``_`` around ``user_agent[start:end]``."""
    while start > 0 and user_agent[start - 1] in _WORD_CHARS:
        start -= 1
    length = len(user_agent)
    while end < length and user_agent[end] in _WORD_CHARS:
        end += 1
    return user_agent[start:end].strip("-_")


def _trie_pattern(node: _Trie) -> str:
    """A regular expression matching every token stored in ``node``."""
    branches = [
        re.escape(char) + _trie_pattern(child) for char, child in sorted(node.items()) if char
    ]
    if not branches:
        return ""
    optional = _END in node
    if len(branches) == 1 and not optional:
        return branches[0]
    return "(?:" + "|".join(branches) + (")?" if optional else ")")


def _validate(rule: object) -> AgentRule:
    """``rule`` as an :class:`AgentRule`, checked."""
    if not isinstance(rule, AgentRule):
        if not isinstance(rule, tuple):
            raise ConfigurationError(f"agent rules must be AgentRule tuples, got {rule!r}")
        try:
            rule = AgentRule(*rule)
        except TypeError as exc:
            raise ConfigurationError(f"agent rules must be AgentRule tuples, got {rule!r}") from exc
    if not isinstance(rule.token, str) or not rule.token:
        raise ConfigurationError(f"AgentRule.token must be a non-empty string: {rule!r}")
    if not isinstance(rule.agent, str) or not isinstance(rule.operator, str):
        raise ConfigurationError(f"AgentRule.agent and .operator must be strings: {rule!r}")
    if rule.kind not in AGENT_KINDS:
        raise ConfigurationError(
            f"AgentRule.kind must be one of {', '.join(AGENT_KINDS)}: {rule!r}"
        )
    return rule


class _Matcher:
    """The compiled table: finds the first rule (in table order) matching a header."""

    __slots__ = ("_literal_index", "_regexes", "_results", "_rules", "_search", "_trie")

    def __init__(self, rules: Sequence[AgentRule]) -> None:
        self._rules = tuple(rules)
        self._results = tuple(AgentMatch(r.kind, r.agent, r.operator) for r in self._rules)
        trie: _Trie = {}
        literal_index: dict[str, int] = {}
        regexes: list[tuple[int, re.Pattern[str]]] = []
        alternatives: list[str] = []
        for index, rule in enumerate(self._rules):
            if rule.regex:
                source = _regex_source(rule)
                regexes.append((index, re.compile(source)))
                alternatives.append(source)
                continue
            token = rule.token.lower()
            if token in literal_index:  # a later duplicate can never win
                continue
            literal_index[token] = index
            node = trie
            for char in token:
                node = node.setdefault(char, {})
            node[_END] = {}
        if trie:
            alternatives.insert(0, _trie_pattern(trie))
        self._trie = trie
        self._literal_index = literal_index
        self._regexes = tuple(regexes)
        self._search = re.compile("|".join(alternatives)).search if alternatives else None

    @property
    def rules(self) -> tuple[AgentRule, ...]:
        return self._rules

    def match(self, user_agent: str) -> AgentMatch | None:
        """Classify one header (uncached)."""
        text = user_agent.lower()
        if not text.strip():
            return UNKNOWN_AGENT
        search = self._search
        if search is None:
            return None
        found = search(text)
        if found is None:
            return None
        best = len(self._rules)
        best_span = (0, 0)
        # The pattern finds *where* some rule matches; which rule wins is decided
        # here, so that table order (not position in the header) decides.
        while found is not None:
            position = found.start()
            index, end = self._best_at(text, position, best)
            if index < best:
                best, best_span = index, (position, end)
                if index == 0:
                    break
            found = search(text, position + 1)
        if best == len(self._rules):  # pragma: no cover - every hit resolves to a rule
            return None
        result = self._results[best]
        if not result.agent:
            source = user_agent if len(user_agent) == len(text) else text
            name = _product_token(source, *best_span) or "unknown"
            result = result._replace(agent=name)
        return result

    def _best_at(self, text: str, position: int, limit: int) -> tuple[int, int]:
        """The earliest rule below ``limit`` matching at ``position``, and its end."""
        best, end = limit, position
        node = self._trie
        literal_index = self._literal_index
        for offset in range(position, len(text)):
            child = node.get(text[offset])
            if child is None:
                break
            node = child
            if _END in node:
                index = literal_index[text[position : offset + 1]]
                if index < best:
                    best, end = index, offset + 1
        for index, pattern in self._regexes:
            if index >= best:
                break
            found = pattern.match(text, position)
            if found is not None:
                return index, found.end()
        return best, end


def _regex_source(rule: AgentRule) -> str:
    """The rule's pattern for the lowercased header, validated."""
    source = rule.token
    # Headers are lowercased before matching: a pattern without capitals already
    # matches case-insensitively; others are matched with (?i:...).
    source = f"(?:{source})" if source == source.lower() else f"(?i:{source})"
    try:
        compiled = re.compile(source)
    except re.error as exc:
        raise ConfigurationError(f"AgentRule.token is not a valid regex ({exc}): {rule!r}") from exc
    if compiled.match("") is not None:
        raise ConfigurationError(f"AgentRule.token must not match an empty string: {rule!r}")
    return source


class AgentClassifier:
    """Classify ``User-Agent`` headers against a table of :class:`AgentRule`.

    :param rules: the table, first match wins; :data:`DEFAULT_RULES` by default.
    :param extra_rules: checked before ``rules``; each replaces the rows of ``rules``
        with the same agent name (case-insensitive).
    :param cache_size: how many distinct headers to remember (LRU); ``0`` disables
        the cache.
    :raises ConfigurationError: for a malformed rule or a negative ``cache_size``.
    """

    __slots__ = ("_cached", "_matcher")

    def __init__(
        self,
        rules: Iterable[AgentRule] = DEFAULT_RULES,
        *,
        extra_rules: Iterable[AgentRule] = (),
        cache_size: int = 4096,
    ) -> None:
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ConfigurationError(f"cache_size must be an int >= 0, got {cache_size!r}")
        extras = [_validate(rule) for rule in extra_rules]
        overridden = {rule.agent.casefold() for rule in extras if rule.agent}
        table = extras + [
            rule
            for rule in map(_validate, rules)
            if not rule.agent or rule.agent.casefold() not in overridden
        ]
        self._matcher = _Matcher(table)
        self._cached = functools.lru_cache(maxsize=cache_size)(self._matcher.match)

    @property
    def rules(self) -> tuple[AgentRule, ...]:
        """The effective table, in matching order (extra rules first)."""
        return self._matcher.rules

    def classify(self, user_agent: str | None) -> AgentMatch | None:
        """What ``user_agent`` is: ``None`` for a person's browser.

        A missing, empty or blank header gives :data:`UNKNOWN_AGENT`.
        """
        if not user_agent:
            return UNKNOWN_AGENT
        if len(user_agent) > MAX_USER_AGENT_LENGTH:
            user_agent = user_agent[:MAX_USER_AGENT_LENGTH]
        return self._cached(user_agent)

    def cache_info(self) -> functools._CacheInfo:
        """Hits, misses, ``maxsize`` and ``currsize`` of the cache."""
        return self._cached.cache_info()

    def cache_clear(self) -> None:
        """Forget every cached answer."""
        self._cached.cache_clear()

    def __repr__(self) -> str:
        info = self._cached.cache_info()
        return f"<AgentClassifier rules={len(self.rules)} cache={info.currsize}/{info.maxsize}>"


_DEFAULT_CLASSIFIER: Final = AgentClassifier()


#: ``classify_user_agent(user_agent)``: classify with the default table and a shared
#: cache of 4096 headers; ``None`` means a person's browser (see :class:`AgentClassifier`).
#: The default classifier's own method, not a wrapper: the middleware calls it per request.
classify_user_agent: Final = _DEFAULT_CLASSIFIER.classify
