"""Hundreds of concurrent requests on one event loop: each event carries its own visitor.

The handlers interleave on purpose (they yield to the loop between reading and
tracking, some track from a thread), so a request context leaking from one task to
another would put a wrong visitor on an event.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from asgi_helpers import Exchange, http_scope
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plausible_wsgi.asgi import PlausibleMiddleware
from plausible_wsgi.testing import MemoryCollector

CONCURRENT = 300

visitors = st.lists(
    st.tuples(
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30),
        st.integers(min_value=1, max_value=2**32 - 2),
    ),
    min_size=CONCURRENT,
    max_size=CONCURRENT,
    unique_by=(lambda v: v[0], lambda v: v[1]),
)


def address(number: int) -> str:
    return ".".join(str((number >> shift) & 255) for shift in (24, 16, 8, 0))


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(visitors=visitors, seed=st.integers(0, 2**16))
def test_concurrent_requests_each_carry_their_own_visitor(
    visitors: list[tuple[str, int]], seed: int
) -> None:
    collector = MemoryCollector()
    rng = random.Random(seed)
    pauses = [rng.randrange(4) for _ in visitors]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        number = int(scope["path"].rsplit("/", 1)[1])
        for _ in range(pauses[number]):
            await asyncio.sleep(0)
        if number % 3 == 0:
            await asyncio.to_thread(collector.track, "Signup", props={"n": number})
        else:
            collector.track("Signup", props={"n": number})
        await asyncio.sleep(0)
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = PlausibleMiddleware(app, collector, bots="pageview")

    async def main() -> None:
        async def one(number: int) -> None:
            agent, ip = visitors[number]
            scope = http_scope(f"/v/{number}", user_agent=agent, client=(address(ip), 1))
            exchange = Exchange()
            await middleware(scope, exchange.receive, exchange.send)

        await asyncio.gather(*(one(number) for number in range(CONCURRENT)))

    asyncio.run(asyncio.wait_for(main(), timeout=60))
    events = collector.events
    assert len(events) == 2 * CONCURRENT
    for event in events:
        number = int(event.url.rsplit("/", 1)[1])
        agent, ip = visitors[number]
        assert event.user_agent == agent
        assert event.client_ip == address(ip)
        if event.name == "Signup":
            assert event.props == {"n": str(number)}
    assert middleware.stats().tracked == {"pageview": CONCURRENT}
