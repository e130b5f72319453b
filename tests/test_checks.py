"""plausible_wsgi.checks: domains and endpoints normalised or refused with the value meant."""

from __future__ import annotations

import pytest

import plausible_wsgi as pw
from plausible_wsgi.checks import check_domain, check_endpoint


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("example.com", "example.com"),
        ("EXAMPLE.COM", "example.com"),  # Plausible lower-cases a site when it is created
        (" Example.com ", "example.com"),
        ("www.example.com", "www.example.com"),  # Plausible strips www. itself
        ("a.com, B.com", "a.com,b.com"),
        ("example.com/blog", "example.com/blog"),  # a sub-folder site
    ],
)
def test_domain_normalised(given: str, expected: str) -> None:
    assert check_domain(given) == expected
    assert pw.PlausibleCollector(given).domain == expected


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("https://example.com", "example.com"),
        ("example.com/", "example.com"),
        ("https://www.example.com/", "www.example.com"),
        ("example.com/blog/", "example.com/blog"),
    ],
)
def test_domain_as_url_refused_naming_the_bare_domain(given: str, meant: str) -> None:
    with pytest.raises(pw.ConfigurationError, match=f"did you mean '{meant}'"):
        pw.PlausibleCollector(given)


@pytest.mark.parametrize(
    "given",
    [
        "https://plausible.io",
        "https://plausible.io/",
        "http://127.0.0.1:8000",
        "https://example.com/stats",  # self-hosted or proxied under a sub-path
        "https://example.com/stats/plausible/",
    ],
)
def test_endpoint_accepted(given: str) -> None:
    assert check_endpoint(given) == given.rstrip("/")


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("https://plausible.io/js/script.js", "https://plausible.io"),
        ("https://plausible.io/js/script.tagged-events.js", "https://plausible.io"),
        ("https://plausible.io/api/event", "https://plausible.io"),
        ("https://plausible.io/api/event/", "https://plausible.io"),
        ("https://plausible.io/example.com", "https://plausible.io"),  # a dashboard page
        ("https://stats.example.com/js/script.js", "https://stats.example.com"),
        ("https://example.com/stats/api/event", "https://example.com/stats"),
        ("https://example.com/stats/js/script.js", "https://example.com/stats"),
        ("https://stats.example.com/share/example.com", "https://stats.example.com"),
        ("https://stats.example.com/sites/example.com", "https://stats.example.com"),
    ],
)
def test_endpoint_path_refused_naming_the_base_meant(given: str, meant: str) -> None:
    with pytest.raises(pw.ConfigurationError, match=f"Did you mean '{meant}'") as raised:
        pw.PlausibleCollector("example.com", endpoint=given)
    assert "endpoint" in str(raised.value)


def test_number_checks_are_one_concept() -> None:
    """The collector's and the policies' number checks say the same thing."""
    with pytest.raises(pw.ConfigurationError, match=r"flush_interval .* must be finite and > 0"):
        pw.PlausibleCollector("example.com", flush_interval=float("inf"))
    with pytest.raises(pw.ConfigurationError, match="RetryConfig: deadline must be finite and > 0"):
        pw.RetryConfig(deadline=float("inf"))
