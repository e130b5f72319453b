"""User-Agent classification: real headers, browsers that must stay human, the table."""

from __future__ import annotations

import threading

import pytest
from agent_samples import BOTS, HUMANS

from plausible_wsgi.agents import (
    AGENT_KINDS,
    DEFAULT_RULES,
    MAX_USER_AGENT_LENGTH,
    UNKNOWN_AGENT,
    AgentClassifier,
    AgentMatch,
    AgentRule,
    classify_user_agent,
)
from plausible_wsgi.errors import ConfigurationError


@pytest.fixture(scope="module")
def classifier() -> AgentClassifier:
    return AgentClassifier()


@pytest.mark.parametrize(
    ("user_agent", "kind", "agent", "operator"),
    [pytest.param(ua, kind, agent, op, id=name) for name, ua, kind, agent, op in BOTS],
)
def test_real_bot_user_agents(
    classifier: AgentClassifier, user_agent: str, kind: str, agent: str, operator: str
) -> None:
    assert classifier.classify(user_agent) == AgentMatch(kind, agent, operator)  # type: ignore[arg-type]


@pytest.mark.parametrize("user_agent", [pytest.param(ua, id=name) for name, ua in HUMANS])
def test_real_browsers_are_never_bots(classifier: AgentClassifier, user_agent: str) -> None:
    assert classifier.classify(user_agent) is None


def test_tables_are_large_enough() -> None:
    assert len(BOTS) >= 40
    assert len(HUMANS) >= 12
    assert {kind for _, _, kind, _, _ in BOTS} == set(AGENT_KINDS)


@pytest.mark.parametrize(
    "user_agent",
    [
        pytest.param(ua, id=name)
        for name, ua, _, agent, _ in BOTS
        if agent not in ("Linespider", "wpbot")
    ],
)
def test_matching_ignores_case(classifier: AgentClassifier, user_agent: str) -> None:
    expected = classifier.classify(user_agent)
    assert classifier.classify(user_agent.upper()) == expected
    assert classifier.classify(user_agent.lower()) == expected


def test_module_function_uses_the_default_table(classifier: AgentClassifier) -> None:
    for _, user_agent, *_ in BOTS:
        assert classify_user_agent(user_agent) == classifier.classify(user_agent)
    for _, user_agent in HUMANS:
        assert classify_user_agent(user_agent) is None


# --- missing and odd headers -----------------------------------------------------


@pytest.mark.parametrize(
    "user_agent", [None, "", " ", "\t  \t"], ids=["none", "empty", "space", "blank"]
)
def test_missing_user_agent_is_an_unknown_bot(
    classifier: AgentClassifier, user_agent: str | None
) -> None:
    assert classifier.classify(user_agent) is UNKNOWN_AGENT
    assert AgentMatch("other_bot", "unknown", "") == UNKNOWN_AGENT
    assert classify_user_agent(user_agent) is UNKNOWN_AGENT


def test_only_the_first_max_length_characters_are_read() -> None:
    classifier = AgentClassifier()
    padding = "x" * (MAX_USER_AGENT_LENGTH + 10)
    assert classifier.classify("Googlebot/2.1 " + padding) == AgentMatch(
        "search_engine", "Googlebot", "Google"
    )
    assert classifier.classify(padding + " Googlebot/2.1") is None


def test_non_ascii_header_still_names_generic_bots(classifier: AgentClassifier) -> None:
    # "İ" lowercases to two characters: the reported name must still be sensible.
    match = classifier.classify("İİ Mozilla/5.0 (compatible; NewsBot/2.0)")
    assert match is not None
    assert match.kind == "other_bot"
    assert match.agent.lower() == "newsbot"


# --- table order --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "agent"),
    [
        pytest.param(
            "Mozilla/5.0 (compatible; Applebot-Extended/1.0)",
            "Applebot-Extended",
            id="applebot-extended",
        ),
        pytest.param("Mozilla/5.0 (compatible; Applebot/0.1)", "Applebot", id="applebot"),
        pytest.param("TelegramBot (like TwitterBot)", "TelegramBot", id="telegram-before-twitter"),
        pytest.param(
            "Apache-HttpClient/4.5 (Java/11)", "Apache-HttpClient", id="apache-before-java"
        ),
        pytest.param(
            "Mozilla/5.0 (compatible; YandexAdditionalBot/1.0)", "YandexAdditional", id="yandex-ai"
        ),
        pytest.param(
            "Mozilla/5.0 (compatible; GoogleAgent-Mariner)",
            "Google-Agent",
            id="google-agent-old-name",
        ),
        pytest.param(
            "Mozilla/5.0 DatadogSynthetics", "Datadog Synthetics", id="datadog-browser-test"
        ),
    ],
)
def test_specific_rules_win(classifier: AgentClassifier, user_agent: str, agent: str) -> None:
    match = classifier.classify(user_agent)
    assert match is not None
    assert match.agent == agent


def test_table_order_wins_over_position_in_the_header(classifier: AgentClassifier) -> None:
    # Both python-requests (a library) and GPTBot match; GPTBot is earlier in the table.
    match = classifier.classify("python-requests/2.31 (compatible; GPTBot/1.2)")
    assert match == AgentMatch("ai_training", "GPTBot", "OpenAI")


def test_every_default_literal_rule_is_reachable(classifier: AgentClassifier) -> None:
    """No literal row is shadowed by an earlier one."""
    for rule in DEFAULT_RULES:
        if rule.regex or not rule.agent:
            continue
        match = classifier.classify(f"Mozilla/5.0 (compatible; {rule.token}1.0)")
        assert match == AgentMatch(rule.kind, rule.agent, rule.operator), rule


def test_default_table_is_well_formed() -> None:
    tokens = [rule.token.lower() for rule in DEFAULT_RULES]
    assert len(tokens) == len(set(tokens))
    assert all(rule.kind in AGENT_KINDS for rule in DEFAULT_RULES)
    # The generic fallback rules are last.
    assert [rule.agent for rule in DEFAULT_RULES[-3:]] == ["", "", ""]
    assert all(rule.agent for rule in DEFAULT_RULES[:-3])


# --- extension and override --------------------------------------------------------------


def test_extra_rules_are_checked_first() -> None:
    classifier = AgentClassifier(
        extra_rules=[AgentRule("AcmeMonitor", "Acme", "Acme Inc.", "monitor")]
    )
    assert classifier.rules[0].agent == "Acme"
    # Later in the header than python-requests, but an extra rule: it wins.
    assert classifier.classify("python-requests/2.31 AcmeMonitor/1.0") == AgentMatch(
        "monitor", "Acme", "Acme Inc."
    )
    assert classifier.classify("python-requests/2.31") == AgentMatch(
        "other_bot", "python-requests", ""
    )


def test_extra_rules_override_defaults_with_the_same_agent() -> None:
    classifier = AgentClassifier(extra_rules=[AgentRule("GPTBot", "gptbot", "OpenAI", "ai_search")])
    gptbot = BOTS[0][1]
    assert classifier.classify(gptbot) == AgentMatch("ai_search", "gptbot", "OpenAI")
    assert [rule for rule in classifier.rules if rule.agent.lower() == "gptbot"] == [
        AgentRule("GPTBot", "gptbot", "OpenAI", "ai_search")
    ]
    assert len(classifier.rules) == len(DEFAULT_RULES)


def test_extra_regex_rule_with_capitals_matches_case_insensitively() -> None:
    rule = AgentRule(r"Acme-\d+-Crawler", "Acme crawler", "Acme Inc.", "other_bot", regex=True)
    classifier = AgentClassifier(extra_rules=[rule])
    expected = AgentMatch("other_bot", "Acme crawler", "Acme Inc.")
    assert classifier.classify("Mozilla/5.0 (compatible; acme-42-crawler)") == expected
    assert classifier.classify("Mozilla/5.0 (compatible; ACME-42-CRAWLER)") == expected
    assert classifier.classify("Mozilla/5.0 (compatible; Acme-X-Crawler)") == AgentMatch(
        "other_bot", "Acme-X-Crawler", ""
    )


def test_custom_table_replaces_the_defaults() -> None:
    classifier = AgentClassifier(rules=[AgentRule("curl/", "curl", "", "other_bot")])
    assert classifier.classify("curl/8.0") == AgentMatch("other_bot", "curl", "")
    assert classifier.classify(BOTS[0][1]) is None
    assert AgentClassifier(rules=()).classify("curl/8.0") is None
    assert AgentClassifier(rules=()).classify("") is UNKNOWN_AGENT


def test_rules_can_be_plain_tuples() -> None:
    classifier = AgentClassifier(rules=[("curl/", "curl", "", "other_bot")])  # type: ignore[list-item]
    assert classifier.rules == (AgentRule("curl/", "curl", "", "other_bot"),)


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param(AgentRule("", "x", "", "other_bot"), id="empty-token"),
        pytest.param(AgentRule("x", "x", "", "robot"), id="unknown-kind"),  # type: ignore[arg-type]
        pytest.param(AgentRule("(", "x", "", "other_bot", regex=True), id="bad-regex"),
        pytest.param(AgentRule("x?", "x", "", "other_bot", regex=True), id="regex-matches-empty"),
        pytest.param(AgentRule(b"x", "x", "", "other_bot"), id="bytes-token"),  # type: ignore[arg-type]
        pytest.param(AgentRule("x", None, "", "other_bot"), id="agent-not-str"),  # type: ignore[arg-type]
        pytest.param("curl", id="not-a-tuple"),
        pytest.param(("curl",), id="short-tuple"),
    ],
)
def test_malformed_rules_are_refused(rule: object) -> None:
    with pytest.raises(ConfigurationError):
        AgentClassifier(extra_rules=[rule])  # type: ignore[list-item]


@pytest.mark.parametrize("size", [-1, 1.5, True, None], ids=["negative", "float", "bool", "none"])
def test_bad_cache_size_is_refused(size: object) -> None:
    with pytest.raises(ConfigurationError, match="cache_size"):
        AgentClassifier(cache_size=size)  # type: ignore[arg-type]


# --- cache ---------------------------------------------------------------------------------


def test_cache_never_exceeds_its_size() -> None:
    classifier = AgentClassifier(cache_size=8)
    for number in range(200):
        classifier.classify(f"Mozilla/5.0 (compatible; Bot{number}/1.0)")
        classifier.classify(f"Mozilla/5.0 (Windows NT 10.0) Chrome/{number}.0.0.0 Safari/537.36")
        assert classifier.cache_info().currsize <= 8
    assert classifier.cache_info().currsize == 8
    assert classifier.cache_info().maxsize == 8


def test_cache_hits_return_the_same_answer() -> None:
    classifier = AgentClassifier(cache_size=16)
    first = classifier.classify(BOTS[0][1])
    assert classifier.classify(BOTS[0][1]) is first
    info = classifier.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    classifier.cache_clear()
    assert classifier.cache_info().currsize == 0
    assert "AgentClassifier" in repr(classifier)


def test_cache_can_be_disabled_and_gives_the_same_answers(classifier: AgentClassifier) -> None:
    uncached = AgentClassifier(cache_size=0)
    for _, user_agent, *_ in BOTS:
        assert uncached.classify(user_agent) == classifier.classify(user_agent)
    for _, user_agent in HUMANS:
        assert uncached.classify(user_agent) is None
    assert uncached.cache_info().currsize == 0


def test_concurrent_classification_is_consistent() -> None:
    classifier = AgentClassifier(cache_size=4)
    headers = [ua for _, ua, *_ in BOTS] + [ua for _, ua in HUMANS]
    expected = [AgentClassifier(cache_size=0).classify(ua) for ua in headers]
    errors: list[str] = []

    def work() -> None:
        for _ in range(20):
            for header, answer in zip(headers, expected):
                if classifier.classify(header) != answer:
                    errors.append(header)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert classifier.cache_info().currsize <= 4
