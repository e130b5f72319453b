"""What Plausible's ingestion server accepts: limits, read query params, currencies.

One place for the facts from Plausible's server code (``lib/plausible/ingestion/
request.ex``, ``lib/plausible/props.ex``, ``extra/lib/plausible/ingestion/request/
revenue.ex``): the client validates against them, the local receiver enforces them,
the middleware scrubs query strings with them.
"""

from __future__ import annotations

#: Larger bodies are answered ``413`` (Plug's default body limit on the real server).
MAX_BODY_BYTES = 8_000_000
#: Event names longer than this many characters are a ``400``.
MAX_NAME_LENGTH = 120
#: The *whole* URL, in UTF-8 bytes, host and query included.
MAX_URL_BYTES = 2000
#: Longer referrers are truncated, not rejected.
MAX_REFERRER_LENGTH = 2000
#: Props kept per event; the rest are dropped silently.
MAX_PROPS = 30
#: Prop key limit in UTF-8 bytes; a longer key is a ``400``.
MAX_PROP_KEY_BYTES = 300
#: Prop value limit in UTF-8 bytes; a longer value is a ``400``.
MAX_PROP_VALUE_BYTES = 2000

#: Unicode White_Space: what Elixir's ``String.trim`` family strips from names,
#: domains, hosts, prop keys and values, and the end of the pathname.
WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

#: Query parameters of the event URL that Plausible reads (sources, UTM tags and click
#: ids); every other query parameter is ignored.
TRACKED_QUERY_PARAMS: tuple[str, ...] = (
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "source",
    "ref",
    "gclid",
    "gbraid",
    "wbraid",
    "msclkid",
    "fbclid",
    "twclid",
)

#: ISO 4217 codes a revenue value may use: the currencies Plausible's money library
#: (ex_money, ``Money.Currency.known_current_currencies``) knows, which is the active
#: ISO list *with* its fund, precious-metal, testing and "no currency" codes (XAU,
#: XDR, XTS, XXX...). Plausible compares the code as sent: upper case only.
CURRENCIES: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV
    BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE
    CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD
    HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD
    KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV
    MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB
    RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT
    TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF
    XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG ZWL
    """.split()
)
