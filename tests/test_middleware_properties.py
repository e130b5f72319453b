"""Properties of PlausibleMiddleware over hostile requests and odd applications.

Whatever the request (odd bytes in the path, no Host, huge or forged headers) and
whatever the application does (non-HTML bodies, late ``start_response``, raising
before or during the response, a raising ``close()``):

- the server gets exactly the response the bare application gives;
- the only exception that reaches the server is the application's own, unchanged;
- every event the middleware records is one Plausible accepts (the collector drops
  nothing as invalid);
- the request context is unbound afterwards and the request is counted once.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from typing import Any, Callable, NamedTuple, Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import event as label
from hypothesis import strategies as st

from plausible_wsgi.context import current_request
from plausible_wsgi.events import MAX_URL_BYTES, Event, validate_event
from plausible_wsgi.middleware import PlausibleMiddleware
from plausible_wsgi.testing import MemoryCollector

LATIN_1 = st.characters(max_codepoint=0xFF)
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def mostly(value: object, odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``value`` about three times in four, else something from ``odd``."""
    return st.one_of(st.just(value), st.just(value), st.just(value), odd)


ANY_CHAR = st.characters(codec=None)


def wsgi_text(max_size: int = 60) -> st.SearchStrategy[str]:
    """What a server puts in the environ: bytes as latin-1, sometimes valid UTF-8."""
    utf8 = st.text(max_size=max_size).map(
        lambda s: s.encode("utf-8", "surrogatepass").decode("latin-1")
    )
    return st.one_of(st.text(LATIN_1, max_size=max_size), utf8, st.text(ANY_CHAR, max_size=8))


paths = st.one_of(
    st.sampled_from(["/", "", "/a/b.pdf", "/users/42", "/static/x.css", "/robots.txt"]),
    wsgi_text().map(lambda s: "/" + s),
    wsgi_text(),
)
hosts = mostly(
    "example.com",
    st.none()
    | st.sampled_from(["example.com", "www.example.com:8080", "[::1]:80", "EXAMPLE.COM", ""])
    | st.text(max_size=30)
    | st.just("a" * 5000),
)
ips = st.one_of(
    st.none(),
    st.ip_addresses().map(str),
    st.sampled_from(["unknown", "", "[::1]:80", "1.2.3.4:5", "::ffff:10.0.0.1", " , ,"]),
    st.text(max_size=40),
)
forwarded = st.one_of(
    st.none(),
    st.lists(ips.map(lambda ip: ip or ""), max_size=6).map(", ".join),
    st.just("1.1.1.1, " * 2000),
    st.text(max_size=100),
)
user_agents = mostly(
    BROWSER,
    st.none()
    | st.sampled_from(
        [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "GPTBot/1.2",
            "curl/8.5.0",
        ]
    )
    | st.text(max_size=100)
    | st.integers(10_000, 30_000).map(lambda n: "Mozilla/5.0 " + "a" * n),
)


# Built once: a strategy built inside the composite below would be built and validated
# again for every example, a third of this file's CPU time.
methods = mostly("GET", st.sampled_from(["POST", "HEAD", "PUT", "get", ""]))
script_names = st.one_of(st.just(""), paths)
query_strings = st.one_of(
    st.just(""),
    st.just("utm_source=x&email=a%40b&ref=" + "r" * 3000),
    wsgi_text(200),
)
server_names = st.sampled_from(["example.com", "", "::1", "0.0.0.0"])
server_ports = st.sampled_from(["443", "80", "8000", "", "socket"])
schemes = mostly("https", st.sampled_from(["http", "HTTP", "ftp"]))
OPTIONAL_HEADERS = {
    "HTTP_HOST": hosts,  # a None deletes the key
    "REMOTE_ADDR": ips,
    "HTTP_X_FORWARDED_FOR": forwarded,
    "HTTP_USER_AGENT": user_agents,
    "HTTP_REFERER": st.one_of(st.none(), st.text(max_size=50), st.just("https://r/" + "x" * 5000)),
    "HTTP_RANGE": st.one_of(st.none(), st.sampled_from(["bytes=0-", "bytes=10-", "junk"])),
}


@st.composite
def environs(draw: st.DrawFn) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": draw(methods),
        "SCRIPT_NAME": draw(script_names),
        "PATH_INFO": draw(paths),
        "QUERY_STRING": draw(query_strings),
        "SERVER_NAME": draw(server_names),
        "SERVER_PORT": draw(server_ports),
        "wsgi.url_scheme": draw(schemes),
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
    }
    for key, strategy in OPTIONAL_HEADERS.items():
        value = draw(strategy)
        if value is not None:
            environ[key] = value
    return environ


class AppError(Exception):
    """Raised by the application, never by the middleware."""


class Plan(NamedTuple):
    status: str
    headers: list[tuple[str, str]]
    chunks: list[bytes]
    style: str  # "list", "generator", "closing"
    fail: Optional[str]  # None, "before", "during", "close", "no_start"


plans = st.builds(
    Plan,
    status=st.sampled_from(
        [
            "200 OK",
            "206 Partial Content",
            "204 No Content",
            "301 Moved",
            "404 Not Found",
            "500 Oops",
            "999 Odd",
            "abc",
            "",
        ]
    ),
    headers=mostly(
        [("Content-Type", "text/html; charset=utf-8")],
        st.lists(
            st.tuples(
                st.sampled_from(["Content-Type", "content-type", "Content-Disposition", "X-A"]),
                st.sampled_from(
                    [
                        "text/html",
                        "text/html; charset=utf-8",
                        "TEXT/HTML",
                        "application/json",
                        "application/pdf",
                        "attachment; filename=x",
                        "",
                        ";;",
                    ]
                ),
            ),
            max_size=4,
        ),
    ),
    chunks=st.lists(st.binary(max_size=20), max_size=4),
    style=st.sampled_from(["list", "generator", "closing"]),
    fail=mostly(None, st.sampled_from(["before", "during", "close", "no_start"])),
)


class ClosingIterable:
    def __init__(self, chunks: list[bytes], error: Optional[AppError]) -> None:
        self.chunks = chunks
        self.error = error

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        if self.error is not None:
            raise self.error


def make_app(plan: Plan, error: AppError) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if plan.fail == "before":
            raise error
        if plan.style == "generator":
            return generate(start_response)
        if plan.fail != "no_start":
            start_response(plan.status, list(plan.headers))
        if plan.style == "closing" or plan.fail == "close":
            return ClosingIterable(plan.chunks, error if plan.fail == "close" else None)
        return list(plan.chunks)

    def generate(start_response: Callable[..., Any]) -> Iterator[bytes]:
        if plan.fail != "no_start":
            start_response(plan.status, list(plan.headers))
        for index, chunk in enumerate(plan.chunks):
            if plan.fail == "during" and index == len(plan.chunks) // 2:
                raise error
            yield chunk
        if plan.fail == "during":
            raise error

    return app


class Outcome(NamedTuple):
    status: Optional[str]
    headers: Optional[list[tuple[str, str]]]
    body: bytes
    error: Optional[BaseException]


def serve(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> Outcome:
    """Run one request like a server would, capturing whatever comes out."""
    seen: dict[str, Any] = {}
    body = b""

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        seen["status"], seen["headers"] = status, headers
        return lambda data: None

    try:
        iterable = app(environ, start_response)
    except BaseException as exc:
        return Outcome(seen.get("status"), seen.get("headers"), body, exc)
    error: Optional[BaseException] = None
    try:
        body = b"".join(iterable)
    except BaseException as exc:
        error = exc
    finally:
        try:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            error = error or exc
    return Outcome(seen.get("status"), seen.get("headers"), body, error)


options = st.fixed_dictionaries(
    {},
    optional={
        "trusted_proxies": st.integers(0, 3),
        "bots": st.sampled_from(["skip", "event", "pageview"]),
        "track_404": st.booleans(),
        "track_actions": st.booleans(),
        "file_downloads": st.booleans(),
        "allowed_hosts": st.sampled_from([["example.com"], [".example.com", "[::1]"]]),
        "keep_query_params": st.sampled_from([["*"], ["page", "q"]]),
        "url_masks": st.just([(r"/users/\d+", "/users/:id"), (r"\W", "{}")]),
        "exclude_paths": st.just(["/static/", re.compile(r"\.css$")]),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(environ=environs(), plan=plans, opts=options)
def test_never_changes_the_response_and_only_reraises_the_apps_errors(
    environ: dict[str, Any], plan: Plan, opts: dict[str, Any]
) -> None:
    error = AppError("the app's own")
    bare = serve(make_app(plan, error), dict(environ))

    collector = MemoryCollector()
    middleware = PlausibleMiddleware(make_app(plan, error), collector, **opts)
    through = serve(middleware, environ)

    assert through.status == bare.status
    assert through.headers == bare.headers
    assert through.body == bare.body
    assert through.error is bare.error
    assert current_request() is None

    stats = middleware.stats()
    label(f"outcome: {next(iter({**stats.tracked, **stats.skipped}), None)}")
    assert stats.errors == 0
    assert stats.requests == 1
    assert sum(stats.tracked.values()) + sum(stats.skipped.values()) == 1
    assert collector.stats().dropped == {}
    for event in collector.events:
        # A plain copy: page views come as ValidEvent, which validate_event trusts.
        assert validate_event(Event(*event)) == event
        assert len(event.url.encode("utf-8")) <= MAX_URL_BYTES


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(environ=environs())
def test_track_inside_any_request_never_fails_because_of_the_request(
    environ: dict[str, Any],
) -> None:
    """A handler's track() gets a valid event, or needs an explicit URL (no usable host)."""
    collector = MemoryCollector()
    outcomes: list[str] = []

    def app(env: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = current_request()
        if request is None:
            outcomes.append("unbound")
        else:
            collector.track("Signup", props={"plan": "pro"})
            outcomes.append("tracked")
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"ok"]

    result = serve(PlausibleMiddleware(app, collector), environ)
    assert result.error is None
    assert len(outcomes) == 1
    signups = [event for event in collector.events if event.name == "Signup"]
    assert len(signups) == (1 if outcomes == ["tracked"] else 0)


@settings(max_examples=100, deadline=None)
@given(environ=environs(), raising=st.sampled_from(["collector", "should_track"]))
def test_own_failures_are_counted_never_raised(environ: dict[str, Any], raising: str) -> None:
    class Broken(MemoryCollector):
        def collect(self, event: Any) -> bool:
            raise RuntimeError("broken collector")

    def should_track(env: dict[str, Any], status: int, headers: Any) -> bool:
        raise RuntimeError("broken should_track")

    def app(env: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<p>"]

    good = MemoryCollector()
    if raising == "collector":
        middleware = PlausibleMiddleware(app, [Broken(), good], bots="pageview")
    else:
        middleware = PlausibleMiddleware(app, good, should_track=should_track, bots="pageview")
    result = serve(middleware, environ)
    assert (result.status, result.body, result.error) == ("200 OK", b"<p>", None)
    stats = middleware.stats()
    tracked = sum(stats.tracked.values())
    if raising == "collector":
        assert stats.errors == tracked
        assert len(good.events) == tracked
    else:
        assert good.events == []
        assert stats.errors == (0 if stats.skipped.get("should_track") is None else 1)
