"""The data of :mod:`plausible_wsgi.agents`: its records and the default table.

Kept apart from the matcher because the table is long (one row per published
crawler, each group citing the operator's documentation) and changes on its own
schedule; :mod:`plausible_wsgi.agents` re-exports every name here.
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple, get_args

__all__ = [
    "AGENT_KINDS",
    "DEFAULT_RULES",
    "UNKNOWN_AGENT",
    "AgentKind",
    "AgentMatch",
    "AgentRule",
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
