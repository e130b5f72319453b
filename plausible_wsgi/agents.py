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
from typing import TYPE_CHECKING, Final, Literal, NamedTuple, get_args

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

AgentKind = Literal[
    "ai_assistant",
    "ai_search",
    "ai_training",
    "search_engine",
    "preview",
    "monitor",
    "other_bot",
]

#: Every :data:`AgentKind`, in the order of the module documentation.
AGENT_KINDS: Final[tuple[AgentKind, ...]] = get_args(AgentKind)

#: Headers are cut to this many characters before matching and caching. Real
#: ``User-Agent`` values stay far below it; the cut bounds the work and the cache.
MAX_USER_AGENT_LENGTH: Final = 1024


class AgentMatch(NamedTuple):
    """What an automated ``User-Agent`` is."""

    kind: AgentKind
    #: The agent's name as its operator spells it: ``"GPTBot"``, ``"curl"``.
    agent: str
    #: Who runs it: ``"OpenAI"``, ``"Google"``; ``""`` when unknown or not one party.
    operator: str


class AgentRule(NamedTuple):
    """One row of the table.

    :param token: what to look for in the header, case-insensitively: a literal
        substring, or a regular expression when ``regex`` is true (searched anywhere;
        use ``(?:...)`` for grouping: numbered backreferences are not supported).
    :param agent: the name reported in :attr:`AgentMatch.agent`; ``""`` reports the
        product token around the match (letters, digits, ``-`` and ``_``).
    :param operator: reported in :attr:`AgentMatch.operator`.
    :param kind: one of :data:`AGENT_KINDS`.
    :param regex: whether ``token`` is a regular expression.
    """

    token: str
    agent: str
    operator: str
    kind: AgentKind
    regex: bool = False


#: Returned for a missing, empty or blank ``User-Agent``.
UNKNOWN_AGENT: Final = AgentMatch("other_bot", "unknown", "")

_R = AgentRule

# The table. Order matters: the first matching row wins. Each group cites the
# operator's published crawler documentation.
DEFAULT_RULES: Final[tuple[AgentRule, ...]] = (
    # ----- AI assistants: fetch a page now, for a person ---------------------------
    # OpenAI: https://platform.openai.com/docs/bots
    _R("ChatGPT-User", "ChatGPT-User", "OpenAI", "ai_assistant"),
    # Anthropic: https://support.anthropic.com/en/articles/8896518
    # (Claude-Web is the user fetcher's former name.)
    _R("Claude-User", "Claude-User", "Anthropic", "ai_assistant"),
    _R("Claude-Web", "Claude-Web", "Anthropic", "ai_assistant"),
    # Perplexity: https://docs.perplexity.ai/guides/bots
    _R("Perplexity-User", "Perplexity-User", "Perplexity", "ai_assistant"),
    # Mistral AI: https://docs.mistral.ai/robots/
    _R("MistralAI-User", "MistralAI-User", "Mistral AI", "ai_assistant"),
    # Google user-triggered fetchers:
    # https://developers.google.com/crawling/docs/crawlers-fetchers/google-user-triggered-fetchers
    # (Google-Agent was first announced as GoogleAgent-Mariner.)
    _R("google-?agent", "Google-Agent", "Google", "ai_assistant", regex=True),
    _R("Gemini-Deep-Research", "Gemini-Deep-Research", "Google", "ai_assistant"),
    _R("Google-GeminiNotebook", "Google-GeminiNotebook", "Google", "ai_assistant"),
    _R("Google-NotebookLM", "Google-NotebookLM", "Google", "ai_assistant"),
    # DuckDuckGo: https://duckduckgo.com/duckduckgo-help-pages/results/duckassistbot
    _R("DuckAssistBot", "DuckAssistBot", "DuckDuckGo", "ai_assistant"),
    # Meta: https://developers.facebook.com/docs/sharing/webmasters/web-crawlers/
    _R("meta-externalfetcher", "meta-externalfetcher", "Meta", "ai_assistant"),
    # Amazon: https://developer.amazon.com/amazonbot
    _R("Amzn-User", "Amzn-User", "Amazon", "ai_assistant"),
    # Cohere documents no crawler page; cohere-ai answers user prompts, the
    # training crawler below has its own token.
    _R("cohere-ai", "cohere-ai", "Cohere", "ai_assistant"),
    # ----- AI search indexes -----------------------------------------------------
    _R("OAI-SearchBot", "OAI-SearchBot", "OpenAI", "ai_search"),
    _R("Claude-SearchBot", "Claude-SearchBot", "Anthropic", "ai_search"),
    _R("PerplexityBot", "PerplexityBot", "Perplexity", "ai_search"),
    _R("meta-webindexer", "meta-webindexer", "Meta", "ai_search"),
    _R("Amzn-SearchBot", "Amzn-SearchBot", "Amazon", "ai_search"),
    # Google common crawlers:
    # https://developers.google.com/crawling/docs/crawlers-fetchers/google-common-crawlers
    _R("Google-CloudVertexBot", "Google-CloudVertexBot", "Google", "ai_search"),
    # Microsoft: https://learn.microsoft.com/azure/search/ (Azure AI Search web crawler)
    _R("AzureAI-SearchBot", "AzureAI-SearchBot", "Microsoft", "ai_search"),
    # Yandex: https://yandex.com/support/webmaster/robot-workings/check-yandex-robots.html
    _R("YandexAdditional", "YandexAdditional", "Yandex", "ai_search"),
    # You.com: https://about.you.com/youbot/
    _R("YouBot", "YouBot", "You.com", "ai_search"),
    # Phind: https://www.phind.com/
    _R("PhindBot", "PhindBot", "Phind", "ai_search"),
    # ----- AI training -------------------------------------------------------------
    _R("GPTBot", "GPTBot", "OpenAI", "ai_training"),
    _R("ClaudeBot", "ClaudeBot", "Anthropic", "ai_training"),
    _R("anthropic-ai", "anthropic-ai", "Anthropic", "ai_training"),
    # robots.txt tokens only, never sent as a User-Agent (see the module docstring):
    # https://developers.google.com/crawling/docs/crawlers-fetchers/google-common-crawlers
    # https://support.apple.com/en-us/119829
    _R("Google-Extended", "Google-Extended", "Google", "ai_training"),
    _R("Applebot-Extended", "Applebot-Extended", "Apple", "ai_training"),
    _R("Webzio-Extended", "Webzio-Extended", "Webz.io", "ai_training"),
    # Common Crawl: https://commoncrawl.org/ccbot
    _R("CCBot", "CCBot", "Common Crawl", "ai_training"),
    # ByteDance: no public page; the UA gives spider-feedback@bytedance.com
    _R("Bytespider", "Bytespider", "ByteDance", "ai_training"),
    _R("TikTokSpider", "TikTokSpider", "ByteDance", "ai_training"),
    # Meta (page above): meta-externalagent trains models; FacebookBot is its
    # older crawler for language-model work.
    _R("meta-externalagent", "meta-externalagent", "Meta", "ai_training"),
    _R("FacebookBot", "FacebookBot", "Meta", "ai_training"),
    # Amazon (page above)
    _R("Amazonbot", "Amazonbot", "Amazon", "ai_training"),
    _R("cohere-training-data-crawler", "cohere-training-data-crawler", "Cohere", "ai_training"),
    # Diffbot: https://docs.diffbot.com/docs/why-is-my-website-being-crawled-by-diffbot
    _R("Diffbot", "Diffbot", "Diffbot", "ai_training"),
    # Webz.io (Omgili): https://webz.io/bot.html
    _R("omgili", "Omgilibot", "Webz.io", "ai_training"),
    # ImageSift: https://imagesift.com/about
    _R("ImagesiftBot", "ImagesiftBot", "ImageSift", "ai_training"),
    # Allen Institute for AI: https://allenai.org/crawler (also Ai2Bot-Dolma)
    _R("AI2Bot", "AI2Bot", "Ai2", "ai_training"),
    # Timpi: https://timpi.io/ ; Huawei PanguBot; Kangaroo LLM
    _R("Timpibot", "Timpibot", "Timpi", "ai_training"),
    _R("PanguBot", "PanguBot", "Huawei", "ai_training"),
    _R("Kangaroo Bot", "Kangaroo Bot", "Kangaroo LLM", "ai_training"),
    _R("img2dataset", "img2dataset", "", "ai_training"),
    # ----- search engines ------------------------------------------------------------
    # Google common crawlers (page above); Googlebot covers -Image, -News, -Video.
    _R("Googlebot", "Googlebot", "Google", "search_engine"),
    _R("Google-InspectionTool", "Google-InspectionTool", "Google", "search_engine"),
    _R("Storebot-Google", "Storebot-Google", "Google", "search_engine"),
    # Microsoft: https://www.bing.com/webmasters/help/which-crawlers-does-bing-use-8c184ec0
    _R("bingbot", "bingbot", "Microsoft", "search_engine"),
    _R("msnbot", "msnbot", "Microsoft", "search_engine"),
    # DuckDuckGo: https://duckduckgo.com/duckduckgo-help-pages/results/duckduckbot
    _R("DuckDuckBot", "DuckDuckBot", "DuckDuckGo", "search_engine"),
    # Apple: https://support.apple.com/en-us/119829
    _R("Applebot", "Applebot", "Apple", "search_engine"),
    # Yandex (page above). Not plain "Yandex": the Yandex apps send YandexSearch/.
    _R(
        "yandex[a-z]*bot|yandex(?:images|video|news|favicons|metrika)",
        "YandexBot",
        "Yandex",
        "search_engine",
        regex=True,
    ),
    # Baidu: https://www.baidu.com/search/spider.html
    _R("Baiduspider", "Baiduspider", "Baidu", "search_engine"),
    # Yahoo: https://help.yahoo.com/kb/SLN22600.html
    _R("Slurp", "Slurp", "Yahoo", "search_engine"),
    # Sogou: https://www.sogou.com/docs/help/webmasters.htm (its browser is not a spider)
    _R(r"sogou[\w ]*spider", "Sogou spider", "Sogou", "search_engine", regex=True),
    # Seznam: https://o-seznam.cz/napoveda/vyhledavani/en/seznambot-crawler/
    _R("SeznamBot", "SeznamBot", "Seznam", "search_engine"),
    # Qwant: https://help.qwant.com/bot/
    _R("Qwantify", "Qwantify", "Qwant", "search_engine"),
    _R("Qwantbot", "Qwantbot", "Qwant", "search_engine"),
    # Huawei Petal Search: https://webmaster.petalsearch.com/site/petalbot
    _R("PetalBot", "PetalBot", "Huawei", "search_engine"),
    # Naver: https://naver.me/spd ; Kakao (Daum); Mojeek; Coc Coc; Seekport
    _R("Yeti/", "Yeti", "Naver", "search_engine"),
    _R("Daumoa", "Daumoa", "Kakao", "search_engine"),
    _R("MojeekBot", "MojeekBot", "Mojeek", "search_engine"),
    _R("coccocbot", "coccocbot", "Coc Coc", "search_engine"),
    _R("SeekportBot", "SeekportBot", "Seekport", "search_engine"),
    # ----- link previews -------------------------------------------------------------
    # Telegram: https://core.telegram.org/bots/webapps — sends "TelegramBot (like
    # TwitterBot)", so it must come before Twitterbot.
    _R("TelegramBot", "TelegramBot", "Telegram", "preview"),
    # Meta (page above). iMessage previews send "facebookexternalhit/1.1 Facebot
    # Twitterbot/1.0" and are reported as facebookexternalhit.
    _R("facebookexternalhit", "facebookexternalhit", "Meta", "preview"),
    _R("Facebot", "Facebot", "Meta", "preview"),
    _R("WhatsApp/", "WhatsApp", "Meta", "preview"),
    # X: https://developer.x.com/en/docs/x-for-websites/cards/guides/getting-started
    _R("Twitterbot", "Twitterbot", "X", "preview"),
    # LinkedIn: https://www.linkedin.com/help/linkedin/answer/a521928 (its UA also
    # names Apache-HttpClient, hence before the libraries)
    _R("LinkedInBot", "LinkedInBot", "LinkedIn", "preview"),
    # Slack: https://api.slack.com/robots
    _R("Slackbot-LinkExpanding", "Slackbot-LinkExpanding", "Slack", "preview"),
    _R("Slack-ImgProxy", "Slack-ImgProxy", "Slack", "preview"),
    _R("Slackbot", "Slackbot", "Slack", "preview"),
    # Discord: https://discord.com/developers/docs/resources/message#embed-object
    _R("Discordbot", "Discordbot", "Discord", "preview"),
    # Pinterest: https://help.pinterest.com/en/business/article/pinterest-crawler
    _R("Pinterestbot", "Pinterestbot", "Pinterest", "preview"),
    _R("pinterest.com/bot", "Pinterestbot", "Pinterest", "preview"),
    # Reddit; Embedly; Iframely; VK; Snap; Bluesky; Mastodon (its link fetcher)
    _R("redditbot", "redditbot", "Reddit", "preview"),
    _R("Embedly", "Embedly", "Embedly", "preview"),
    _R("Iframely", "Iframely", "Iframely", "preview"),
    _R("vkShare", "vkShare", "VK", "preview"),
    _R("Snap URL Preview Service", "Snap URL Preview Service", "Snap", "preview"),
    _R("Cardyb", "Bluesky Cardyb", "Bluesky", "preview"),
    _R(r"\(mastodon/", "Mastodon", "", "preview", regex=True),
    # Microsoft (Bing page above); Skype and Teams previews
    _R("SkypeUriPreview", "SkypeUriPreview", "Microsoft", "preview"),
    _R("BingPreview", "BingPreview", "Microsoft", "preview"),
    _R("MicrosoftPreview", "MicrosoftPreview", "Microsoft", "preview"),
    _R("DuckDuckGo-Favicons-Bot", "DuckDuckGo-Favicons-Bot", "DuckDuckGo", "preview"),
    # ----- monitors and health checks --------------------------------------------------
    # UptimeRobot: https://uptimerobot.com/help/
    _R("UptimeRobot", "UptimeRobot", "UptimeRobot", "monitor"),
    # Pingdom: https://documentation.solarwinds.com/en/success_center/pingdom/
    _R("Pingdom", "Pingdom", "SolarWinds", "monitor"),
    # StatusCake; Site24x7 (Zoho); Better Stack (ex Better Uptime)
    _R("StatusCake", "StatusCake", "StatusCake", "monitor"),
    _R("Site24x7", "Site24x7", "Zoho", "monitor"),
    _R("Better Uptime Bot", "Better Uptime Bot", "Better Stack", "monitor"),
    # Datadog: https://docs.datadoghq.com/synthetics/guide/identify_synthetics_bots/
    # (API tests send Datadog/Synthetics; browser tests end with DatadogSynthetics)
    _R("datadog/?synthetics", "Datadog Synthetics", "Datadog", "monitor", regex=True),
    # New Relic synthetics pinger
    _R("NewRelicPinger", "NewRelicPinger", "New Relic", "monitor"),
    # Google Cloud: uptime checks, load-balancer health checks; Lighthouse / PageSpeed
    _R("GoogleStackdriverMonitoring", "GoogleStackdriverMonitoring", "Google", "monitor"),
    _R("GoogleHC/", "GoogleHC", "Google", "monitor"),
    _R("Chrome-Lighthouse", "Chrome-Lighthouse", "Google", "monitor"),
    # AWS Elastic Load Balancing; Kubernetes probes; Consul; Cloudflare
    _R("ELB-HealthChecker", "ELB-HealthChecker", "Amazon", "monitor"),
    _R("kube-probe/", "kube-probe", "Kubernetes", "monitor"),
    _R("Consul Health Check", "Consul Health Check", "HashiCorp", "monitor"),
    _R("Cloudflare-Healthchecks", "Cloudflare-Healthchecks", "Cloudflare", "monitor"),
    # Others: Uptime Kuma (self-hosted), GTmetrix, Freshping, Sentry, Checkly,
    # HetrixTools, Nagios check_http
    _R("Uptime-Kuma", "Uptime-Kuma", "", "monitor"),
    _R("GTmetrix", "GTmetrix", "GTmetrix", "monitor"),
    _R("FreshpingBot", "FreshpingBot", "Freshworks", "monitor"),
    _R("SentryUptimeBot", "SentryUptimeBot", "Sentry", "monitor"),
    _R("Checkly/", "Checkly", "Checkly", "monitor"),
    _R("HetrixTools", "HetrixTools", "HetrixTools", "monitor"),
    _R("check_http/", "check_http", "Nagios", "monitor"),
    # ----- other bots -------------------------------------------------------------------
    # Operators' non-search, non-AI fetchers (Google, Microsoft, Meta, OpenAI pages above)
    _R("AdsBot-Google", "AdsBot-Google", "Google", "other_bot"),
    _R("Mediapartners-Google", "Mediapartners-Google", "Google", "other_bot"),
    _R("FeedFetcher-Google", "FeedFetcher-Google", "Google", "other_bot"),
    _R("Google-Site-Verification", "Google-Site-Verification", "Google", "other_bot"),
    _R("Google-Read-Aloud", "Google-Read-Aloud", "Google", "other_bot"),
    _R("APIs-Google", "APIs-Google", "Google", "other_bot"),
    _R("GoogleOther", "GoogleOther", "Google", "other_bot"),
    _R("adidxbot", "adidxbot", "Microsoft", "other_bot"),
    _R("meta-externalads", "meta-externalads", "Meta", "other_bot"),
    _R("facebookcatalog", "facebookcatalog", "Meta", "other_bot"),
    _R("OAI-AdsBot", "OAI-AdsBot", "OpenAI", "other_bot"),
    # SEO crawlers: Ahrefs https://ahrefs.com/robot, Semrush https://www.semrush.com/bot/,
    # Majestic https://mj12bot.com/, Moz https://moz.com/help/moz-procedures/crawlers
    _R("AhrefsBot", "AhrefsBot", "Ahrefs", "other_bot"),
    _R("AhrefsSiteAudit", "AhrefsSiteAudit", "Ahrefs", "other_bot"),
    _R("SemrushBot", "SemrushBot", "Semrush", "other_bot"),
    _R("SiteAuditBot", "SiteAuditBot", "Semrush", "other_bot"),
    _R("MJ12bot", "MJ12bot", "Majestic", "other_bot"),
    _R("DotBot", "DotBot", "Moz", "other_bot"),
    _R("rogerbot", "rogerbot", "Moz", "other_bot"),
    _R("BLEXBot", "BLEXBot", "WebMeUp", "other_bot"),
    _R("DataForSeoBot", "DataForSeoBot", "DataForSEO", "other_bot"),
    _R("serpstatbot", "serpstatbot", "Serpstat", "other_bot"),
    _R("Barkrowler", "Barkrowler", "Babbar", "other_bot"),
    _R("Screaming Frog", "Screaming Frog SEO Spider", "Screaming Frog", "other_bot"),
    _R("archive.org_bot", "archive.org_bot", "Internet Archive", "other_bot"),
    # Scanners
    _R("CensysInspect", "CensysInspect", "Censys", "other_bot"),
    _R("zgrab", "zgrab", "", "other_bot"),
    _R("Nmap Scripting Engine", "Nmap", "", "other_bot"),
    # Headless browsers and scraping frameworks
    _R("HeadlessChrome", "HeadlessChrome", "", "other_bot"),
    _R("PhantomJS", "PhantomJS", "", "other_bot"),
    _R("Scrapy", "Scrapy", "", "other_bot"),
    _R("Nutch", "Nutch", "", "other_bot"),
    _R("heritrix", "Heritrix", "", "other_bot"),
    # HTTP libraries and tools (Apache-HttpClient before Java/, which it names)
    _R("curl/", "curl", "", "other_bot"),
    _R("Wget/", "Wget", "", "other_bot"),
    _R("python-requests", "python-requests", "", "other_bot"),
    _R("Python-urllib", "Python-urllib", "", "other_bot"),
    _R("aiohttp/", "aiohttp", "", "other_bot"),
    _R("python-httpx", "python-httpx", "", "other_bot"),
    _R("Go-http-client", "Go-http-client", "", "other_bot"),
    _R("okhttp", "okhttp", "", "other_bot"),
    _R("Apache-HttpClient", "Apache-HttpClient", "", "other_bot"),
    _R("Java/", "Java", "", "other_bot"),
    _R("libwww-perl", "libwww-perl", "", "other_bot"),
    _R("GuzzleHttp", "GuzzleHttp", "", "other_bot"),
    _R("axios/", "axios", "", "other_bot"),
    _R("node-fetch", "node-fetch", "", "other_bot"),
    _R("undici", "undici", "", "other_bot"),
    _R("Dart/", "Dart", "", "other_bot"),
    _R("PostmanRuntime", "PostmanRuntime", "Postman", "other_bot"),
    _R("insomnia/", "Insomnia", "Kong", "other_bot"),
    _R("HTTPie/", "HTTPie", "", "other_bot"),
    # Generic fallback: any product token with bot / crawl / spider in it, reported
    # by its own name. "CUBOT" is an Android phone brand, not a bot.
    _R("bot(?<!cubot)", "", "", "other_bot", regex=True),
    _R("crawl", "", "", "other_bot"),
    _R("spider", "", "", "other_bot"),
)

del _R

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


def classify_user_agent(user_agent: str | None) -> AgentMatch | None:
    """Classify with the default table and a shared cache of 4096 headers.

    ``None`` means a person's browser; see :class:`AgentClassifier`.
    """
    return _DEFAULT_CLASSIFIER.classify(user_agent)
