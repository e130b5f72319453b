"""Real ``User-Agent`` headers, bots and browsers, shared by the agent tests."""

from __future__ import annotations

# Real User-Agent headers as the operators document them or as they appear in logs.
# (id, header, kind, agent, operator)
BOTS: list[tuple[str, str, str, str, str]] = [
    # --- OpenAI
    (
        "gptbot",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
        "+https://openai.com/gptbot)",
        "ai_training",
        "GPTBot",
        "OpenAI",
    ),
    (
        "chatgpt-user",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; ChatGPT-User/1.0; "
        "+https://openai.com/bot",
        "ai_assistant",
        "ChatGPT-User",
        "OpenAI",
    ),
    (
        "oai-searchbot",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; OAI-SearchBot/1.0; "
        "+https://openai.com/searchbot",
        "ai_search",
        "OAI-SearchBot",
        "OpenAI",
    ),
    # --- Anthropic
    (
        "claudebot",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; "
        "+claudebot@anthropic.com)",
        "ai_training",
        "ClaudeBot",
        "Anthropic",
    ),
    (
        "claude-user",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Claude-User/1.0; "
        "+Claude-User@anthropic.com)",
        "ai_assistant",
        "Claude-User",
        "Anthropic",
    ),
    (
        "claude-searchbot",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Claude-SearchBot/1.0; "
        "+Claude-SearchBot@anthropic.com)",
        "ai_search",
        "Claude-SearchBot",
        "Anthropic",
    ),
    # --- Perplexity, Mistral, DuckDuckGo
    (
        "perplexitybot",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; PerplexityBot/1.0; "
        "+https://perplexity.ai/perplexitybot)",
        "ai_search",
        "PerplexityBot",
        "Perplexity",
    ),
    (
        "perplexity-user",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Perplexity-User/1.0; "
        "+https://perplexity.ai/perplexity-user)",
        "ai_assistant",
        "Perplexity-User",
        "Perplexity",
    ),
    (
        "mistralai-user",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; MistralAI-User/1.0; "
        "+https://docs.mistral.ai/robots)",
        "ai_assistant",
        "MistralAI-User",
        "Mistral AI",
    ),
    (
        "duckassistbot",
        "DuckAssistBot/1.2; (+http://duckduckgo.com/duckassistbot.html)",
        "ai_assistant",
        "DuckAssistBot",
        "DuckDuckGo",
    ),
    (
        "duckduckbot",
        "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
        "search_engine",
        "DuckDuckBot",
        "DuckDuckGo",
    ),
    # --- Google
    (
        "google-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko; compatible; "
        "Google-Agent)",
        "ai_assistant",
        "Google-Agent",
        "Google",
    ),
    (
        "google-gemininotebook",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/138.0.0.0 Mobile Safari/537.36 (compatible; Google-GeminiNotebook; "
        "+https://developers.google.com/crawling/docs/crawlers-fetchers/google-gemininotebook)",
        "ai_assistant",
        "Google-GeminiNotebook",
        "Google",
    ),
    (
        "googlebot-smartphone",
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/131.0.6778.139 Mobile Safari/537.36 "
        "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "search_engine",
        "Googlebot",
        "Google",
    ),
    (
        "googlebot-desktop",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; "
        "+http://www.google.com/bot.html) Chrome/131.0.6778.139 Safari/537.36",
        "search_engine",
        "Googlebot",
        "Google",
    ),
    ("googlebot-image", "Googlebot-Image/1.0", "search_engine", "Googlebot", "Google"),
    (
        "google-inspectiontool",
        "Mozilla/5.0 (compatible; Google-InspectionTool/1.0;)",
        "search_engine",
        "Google-InspectionTool",
        "Google",
    ),
    (
        "adsbot-google",
        "AdsBot-Google (+http://www.google.com/adsbot.html)",
        "other_bot",
        "AdsBot-Google",
        "Google",
    ),
    (
        "googleother",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GoogleOther) "
        "Chrome/131.0.6778.139 Safari/537.36",
        "other_bot",
        "GoogleOther",
        "Google",
    ),
    (
        "feedfetcher-google",
        "FeedFetcher-Google; (+http://www.google.com/feedfetcher.html)",
        "other_bot",
        "FeedFetcher-Google",
        "Google",
    ),
    (
        "google-stackdriver-uptime",
        "GoogleStackdriverMonitoring-UptimeChecks(https://cloud.google.com/monitoring)",
        "monitor",
        "GoogleStackdriverMonitoring",
        "Google",
    ),
    (
        "chrome-lighthouse",
        "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
        "monitor",
        "Chrome-Lighthouse",
        "Google",
    ),
    ("google-health-check", "GoogleHC/1.0", "monitor", "GoogleHC", "Google"),
    # --- Microsoft
    (
        "bingbot",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
        "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
        "search_engine",
        "bingbot",
        "Microsoft",
    ),
    (
        "microsoftpreview",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; MicrosoftPreview/2.0; "
        "+https://aka.ms/MicrosoftPreview) Chrome/116.0.1938.76 Safari/537.36",
        "preview",
        "MicrosoftPreview",
        "Microsoft",
    ),
    (
        "skypeuripreview",
        "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 "
        "skype-url-preview@microsoft.com",
        "preview",
        "SkypeUriPreview",
        "Microsoft",
    ),
    # --- Apple, Amazon, Meta
    (
        "applebot",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
        "search_engine",
        "Applebot",
        "Apple",
    ),
    (
        "amazonbot",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_1) AppleWebKit/600.2.5 (KHTML, like Gecko) "
        "Version/8.0.2 Safari/600.2.5 (Amazonbot/0.1; +https://developer.amazon.com/support/amazonbot)",
        "ai_training",
        "Amazonbot",
        "Amazon",
    ),
    (
        "meta-externalagent",
        "meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
        "ai_training",
        "meta-externalagent",
        "Meta",
    ),
    (
        "meta-externalfetcher",
        "meta-externalfetcher/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
        "ai_assistant",
        "meta-externalfetcher",
        "Meta",
    ),
    (
        "meta-webindexer",
        "meta-webindexer/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
        "ai_search",
        "meta-webindexer",
        "Meta",
    ),
    (
        "facebookexternalhit",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "preview",
        "facebookexternalhit",
        "Meta",
    ),
    (
        "imessage-preview",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) "
        "Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0",
        "preview",
        "facebookexternalhit",
        "Meta",
    ),
    ("whatsapp", "WhatsApp/2.23.20.0 A", "preview", "WhatsApp", "Meta"),
    # --- other AI crawlers
    ("ccbot", "CCBot/2.0 (https://commoncrawl.org/faq/)", "ai_training", "CCBot", "Common Crawl"),
    (
        "bytespider",
        "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile "
        "Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)",
        "ai_training",
        "Bytespider",
        "ByteDance",
    ),
    (
        "ai2bot",
        "Mozilla/5.0 (compatible) AI2Bot (+https://www.allenai.org/crawler)",
        "ai_training",
        "AI2Bot",
        "Ai2",
    ),
    (
        "imagesiftbot",
        "Mozilla/5.0 (compatible; ImagesiftBot; +imagesift.com)",
        "ai_training",
        "ImagesiftBot",
        "ImageSift",
    ),
    # --- search engines
    (
        "yandexbot",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "search_engine",
        "YandexBot",
        "Yandex",
    ),
    (
        "yandeximages",
        "Mozilla/5.0 (compatible; YandexImages/3.0; +http://yandex.com/bots)",
        "search_engine",
        "YandexBot",
        "Yandex",
    ),
    (
        "baiduspider",
        "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
        "search_engine",
        "Baiduspider",
        "Baidu",
    ),
    (
        "yahoo-slurp",
        "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
        "search_engine",
        "Slurp",
        "Yahoo",
    ),
    (
        "sogou",
        "Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)",
        "search_engine",
        "Sogou spider",
        "Sogou",
    ),
    (
        "seznambot",
        "Mozilla/5.0 (compatible; SeznamBot/4.0; "
        "+https://o-seznam.cz/napoveda/vyhledavani/en/seznambot-crawler/)",
        "search_engine",
        "SeznamBot",
        "Seznam",
    ),
    (
        "qwantify",
        "Mozilla/5.0 (compatible; Qwantify/Bleriot/1.1; +https://help.qwant.com/bot)",
        "search_engine",
        "Qwantify",
        "Qwant",
    ),
    (
        "petalbot",
        "Mozilla/5.0 (Linux; Android 7.0;) AppleWebKit/537.36 (KHTML, like Gecko) Mobile "
        "Safari/537.36 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
        "search_engine",
        "PetalBot",
        "Huawei",
    ),
    # --- link previews
    ("twitterbot", "Twitterbot/1.0", "preview", "Twitterbot", "X"),
    ("telegrambot", "TelegramBot (like TwitterBot)", "preview", "TelegramBot", "Telegram"),
    (
        "linkedinbot",
        "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
        "preview",
        "LinkedInBot",
        "LinkedIn",
    ),
    (
        "slackbot-linkexpanding",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "preview",
        "Slackbot-LinkExpanding",
        "Slack",
    ),
    ("slackbot", "Slackbot 1.0 (+https://api.slack.com/robots)", "preview", "Slackbot", "Slack"),
    (
        "discordbot",
        "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
        "preview",
        "Discordbot",
        "Discord",
    ),
    (
        "pinterestbot",
        "Mozilla/5.0 (compatible; Pinterestbot/1.0; +http://www.pinterest.com/bot.html)",
        "preview",
        "Pinterestbot",
        "Pinterest",
    ),
    (
        "redditbot",
        "Mozilla/5.0 (compatible; redditbot/1.0; +http://www.reddit.com/feedback)",
        "preview",
        "redditbot",
        "Reddit",
    ),
    (
        "embedly",
        "Mozilla/5.0 (compatible; Embedly/0.2; +http://support.embed.ly/)",
        "preview",
        "Embedly",
        "Embedly",
    ),
    (
        "iframely",
        "Iframely/1.3.1 (+https://iframely.com/docs/about)",
        "preview",
        "Iframely",
        "Iframely",
    ),
    (
        "mastodon",
        "http.rb/5.1.1 (Mastodon/4.2.1; +https://mastodon.social/)",
        "preview",
        "Mastodon",
        "",
    ),
    # --- monitors
    (
        "uptimerobot",
        "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
        "monitor",
        "UptimeRobot",
        "UptimeRobot",
    ),
    (
        "pingdom",
        "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
        "monitor",
        "Pingdom",
        "SolarWinds",
    ),
    (
        "better-uptime",
        "Better Uptime Bot Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/74.0.3729.169 Safari/537.36",
        "monitor",
        "Better Uptime Bot",
        "Better Stack",
    ),
    ("datadog-api-test", "Datadog/Synthetics", "monitor", "Datadog Synthetics", "Datadog"),
    ("newrelicpinger", "NewRelicPinger/1.0 (1234567)", "monitor", "NewRelicPinger", "New Relic"),
    ("kube-probe", "kube-probe/1.29", "monitor", "kube-probe", "Kubernetes"),
    ("aws-elb", "ELB-HealthChecker/2.0", "monitor", "ELB-HealthChecker", "Amazon"),
    # --- libraries, tools, headless browsers, SEO crawlers
    ("curl", "curl/8.5.0", "other_bot", "curl", ""),
    ("wget", "Wget/1.21.4", "other_bot", "Wget", ""),
    ("python-requests", "python-requests/2.32.3", "other_bot", "python-requests", ""),
    ("python-urllib", "Python-urllib/3.11", "other_bot", "Python-urllib", ""),
    ("aiohttp", "Python/3.12 aiohttp/3.10.5", "other_bot", "aiohttp", ""),
    ("httpx", "python-httpx/0.27.2", "other_bot", "python-httpx", ""),
    ("go-http-client", "Go-http-client/2.0", "other_bot", "Go-http-client", ""),
    ("okhttp", "okhttp/4.12.0", "other_bot", "okhttp", ""),
    ("java", "Java/17.0.9", "other_bot", "Java", ""),
    (
        "apache-httpclient",
        "Apache-HttpClient/4.5.14 (Java/17.0.8)",
        "other_bot",
        "Apache-HttpClient",
        "",
    ),
    ("libwww-perl", "libwww-perl/6.72", "other_bot", "libwww-perl", ""),
    ("postman", "PostmanRuntime/7.42.0", "other_bot", "PostmanRuntime", "Postman"),
    (
        "headlesschrome",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/131.0.6778.85 Safari/537.36",
        "other_bot",
        "HeadlessChrome",
        "",
    ),
    (
        "phantomjs",
        "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) "
        "PhantomJS/2.1.1 Safari/538.1",
        "other_bot",
        "PhantomJS",
        "",
    ),
    ("scrapy", "Scrapy/2.11.2 (+https://scrapy.org)", "other_bot", "Scrapy", ""),
    (
        "ahrefsbot",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "other_bot",
        "AhrefsBot",
        "Ahrefs",
    ),
    (
        "semrushbot",
        "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
        "other_bot",
        "SemrushBot",
        "Semrush",
    ),
    (
        "mj12bot",
        "Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)",
        "other_bot",
        "MJ12bot",
        "Majestic",
    ),
    (
        "dotbot",
        "Mozilla/5.0 (compatible; DotBot/1.2; +https://opensiteexplorer.org/dotbot; help@moz.com)",
        "other_bot",
        "DotBot",
        "Moz",
    ),
    # --- generic fallback: reported by their own product token
    (
        "generic-spider",
        "Mozilla/5.0 (compatible; Linespider/1.1; +https://lin.ee/4dwXkTH)",
        "other_bot",
        "Linespider",
        "",
    ),
    (
        "generic-bot",
        "Mozilla/5.0 (compatible; wpbot/1.1; +https://forms.gle/ajBaxygz9jSR8p8G9)",
        "other_bot",
        "wpbot",
        "",
    ),
]

# Real browsers. None of these may ever be classified as automated.
HUMANS: list[tuple[str, str]] = [
    (
        "chrome-windows",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
    ),
    (
        "chrome-macos",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
    ),
    (
        "chrome-android-reduced",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Mobile Safari/537.36",
    ),
    (
        "chrome-ios-crios",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
    ),
    (
        "safari-macos",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Safari/605.1.15",
    ),
    (
        "safari-iphone",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    ),
    (
        "safari-ipad",
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/16.6 Mobile/15E148 Safari/604.1",
    ),
    (
        "firefox-windows",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    ),
    (
        "firefox-linux",
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    ("firefox-android", "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0"),
    (
        "firefox-ios",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) FxiOS/131.0 Mobile/15E148 Safari/605.1.15",
    ),
    (
        "edge-windows",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    ),
    (
        "edge-android",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Mobile Safari/537.36 EdgA/131.0.0.0",
    ),
    (
        "samsung-internet",
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    ),
    (
        "opera",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/130.0.0.0 Safari/537.36 OPR/115.0.0.0",
    ),
    (
        "yandex-browser",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 YaBrowser/24.6.0.0 Safari/537.36",
    ),
    (
        "duckduckgo-browser-android",
        "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 "
        "Chrome/131.0.0.0 Mobile DuckDuckGo/5 Safari/537.36",
    ),
    (
        "cubot-phone-underscore",
        "Mozilla/5.0 (Linux; Android 9; CUBOT_X19 Build/PPR1.180610.011) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/100.0.4896.127 Mobile Safari/537.36",
    ),
    (
        "cubot-phone-spaced",
        "Mozilla/5.0 (Linux; Android 11; CUBOT NOTE 20 PRO) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    ),
    (
        "instagram-in-app",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Mobile/15E148 Instagram 337.0.3.23.54 (iPhone14,5; iOS 17_5; en_US; "
        "en; scale=3.00; 1170x2532; 614078057)",
    ),
    (
        "facebook-in-app-ios",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/470.0.0.35.103;FBBV/621370345;"
        "FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.5;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
    ),
    (
        "facebook-in-app-android",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP2A.240805.005; wv) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Version/4.0 Chrome/127.0.6533.103 Mobile Safari/537.36 "
        "[FB_IAB/FB4A;FBAV/477.0.0.49.82;]",
    ),
    (
        "linkedin-in-app",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Mobile/15E148 [LinkedInApp]/9.30.1346",
    ),
    (
        "google-app-ios",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) GSA/330.0.665236494 Mobile/15E148 Safari/604.1",
    ),
    (
        "slack-desktop",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Slack/4.41.97 Chrome/130.0.6723.118 Electron/33.2.1 Safari/537.36 Sonic Slack_SSB/4.41.97",
    ),
]
