"""Where the time of ``track()`` and of the middleware goes: for the report on misses.

Two views of the same paths:

- each piece timed alone (``timeit``, best of 5, the thread's CPU time), named as
  ``file.py function``, so that a miss can be traced to its cause;
- ``cProfile`` of whole requests through the middleware (bare WSGI app), sorted by
  own time (its per-call figures include the profiler's overhead);
- ``cProfile`` of the delivery thread as in ``bench/e2e.py``: a busy thread (a page
  costing ~300 µs of Python) tracks a page view per page, delivered to the nginx sink
  at default settings (one worker: a fast server is drained by one), so that what
  remains of delivery per event shows with the GIL contended.

    python -m bench._profile [delivery]
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time
import timeit
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import IP, PROPS, UA, URL, closed_endpoint
from bench.middleware import ENVIRON, _start_response, bare_app, requests_loop


def _time(label: str, stmt: str, names: dict[str, Any], number: int = 100_000) -> None:
    # This thread's CPU time: on a shared machine, other processes' turns stay out.
    timings = timeit.repeat(stmt, number=number, repeat=5, globals=names, timer=time.thread_time)
    best = min(timings) / number
    print(f"  {label:<70} {best * 1e6:6.2f} µs")


def main() -> int:
    import plausible_wsgi as pw
    from plausible_wsgi import context, events, proxies, request
    from plausible_wsgi.middleware import decision as decision_module

    collector = _collector()
    wrapped = pw.PlausibleMiddleware(bare_app, collector)
    env = dict(ENVIRON, **{"wsgi.input": io.BytesIO()})
    headers = [("Content-Type", "text/html; charset=utf-8")]
    exchange = wrapped._read(env, _start_response)
    exchange.start_response("200 OK", headers)
    decision = wrapped.recorder.decision(exchange)
    assert decision.plan is not None, decision
    assert exchange.visitor
    names: dict[str, Any] = {
        **globals(),
        "c": collector,
        "engine": collector._engine,
        "E": events,
        "C": context,
        "R": request,
        "P": proxies,
        "D": decision_module,
        "mw": wrapped,
        "rec": wrapped.recorder,
        "env": env,
        "sr": _start_response,
        "key": wrapped.recorder.pages.targets()[0],
        "x": exchange,
        "req": exchange.request_facts(),
        "resp": decision_module.ResponseFacts(status=200, content_type=headers[0][1]),
        "plan": decision.plan,
        "decision": decision,
        "info": exchange,
        "ev": decision.plan.event(exchange),
        "custom": events.make_event(
            events.EventKind.CUSTOM, "Signup", url=URL, props=PROPS, user_agent=UA, client_ip=IP
        ),
        "bare_loop": requests_loop(bare_app),
        "mw_loop": requests_loop(wrapped),
    }
    print("track('Signup', props=...) outside a request")
    for label, stmt in [
        ("collector.py Tracker.track (whole)",
         "c.track('Signup', props=PROPS, url=URL, user_agent=UA, client_ip=IP)"),
        ("events.py make_event",
         "E.make_event(E.EventKind.CUSTOM, 'Signup', url=URL, props=PROPS, user_agent=UA, "
         "client_ip=IP)"),
        ("  events.py validate_props", "E.validate_props(PROPS)"),
        ("  events.py validate_url", "E.validate_url(URL)"),
        ("  events.py validate_name", "E.validate_name('Signup')"),
        ("engine.py DeliveryEngine.put", "engine.put(custom)"),
    ]:  # fmt: skip
        _time(label, stmt, names)
    print("\none page view through PlausibleMiddleware (bare WSGI app)")
    for label, stmt, number in [
        ("bench: whole request without the middleware", "bare_loop(1)", 20_000),
        ("bench: whole request with the middleware", "mw_loop(1)", 20_000),
        ("middleware/wsgi.py PlausibleMiddleware._read (target remembered)",
         "mw._read(env, sr)", 100_000),
        ("  request.py sendable_user_agent", "R.sendable_user_agent(UA)", 100_000),
        ("  agents.py classify (cached)", "mw.options.classify(UA)", 100_000),
        ("  request.py referrer_origin", "R.referrer_origin(env['HTTP_REFERER'])", 100_000),
        ("  proxies.py client_ip", "P.client_ip(env, 0)", 100_000),
        ("  context.py RequestInfo", "C.RequestInfo(URL, None, UA, IP)", 100_000),
        ("middleware/wsgi.py PlausibleMiddleware._page (a target's first request)",
         "mw._page(env, key)", 100_000),
        ("  request.py decode_path", "R.decode_path('', '/pricing')", 100_000),
        ("  request.py request_host", "R.request_host(env)", 100_000),
        ("  request.py QueryPolicy.scrub", "mw.options.query.scrub(env['QUERY_STRING'])",
         100_000),
        ("context.py bind_request + unbind_request",
         "C.unbind_request(C.bind_request(info))", 100_000),
        ("middleware/recorder.py Recorder.finish (decision remembered)", "rec.finish(x)",
         50_000),
        ("  middleware/recorder.py Recorder.decision (remembered)", "rec.decision(x)",
         100_000),
        ("    middleware/decision.py decide (a new kind of request)",
         "D.decide(req, resp, mw.options)", 100_000),
        ("  middleware/decision.py EventPlan.event", "plan.event(info)", 100_000),
        ("  middleware/stats.py Counters.finished", "rec.counters.finished(decision)",
         100_000),
        ("  collector.py PlausibleCollector.collect", "c.collect(ev)", 50_000),
        ("    events.py validate_event", "E.validate_event(ev)", 100_000),
        ("    engine.py DeliveryEngine.put", "engine.put(ev)", 50_000),
    ]:  # fmt: skip
        _time(label, stmt, names, number)
    collector.close(0.01)
    print("\ncProfile: 20,000 requests through the middleware, by own time")
    # A fresh collector: the one above holds the timings' million events, and the
    # garbage collector's passes over them would be charged to whatever allocates.
    collector = _collector()
    loop = requests_loop(pw.PlausibleMiddleware(bare_app, collector))
    profile = cProfile.Profile()
    profile.enable()
    loop(20_000)
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(15)
    print(out.getvalue())
    collector.close(0.01)
    delivery_profile()
    return 0


def _busy(loops: int) -> int:
    total = 0
    for i in range(loops):  # pure Python, holds the GIL like a page being rendered
        total += i
    return total


def delivery_profile(events: int = 5000, page_us: float = 300.0) -> None:
    """Print the delivery thread's profile while a busy thread tracks ``events``."""
    import sys
    import threading

    import plausible_wsgi as pw
    from bench._sink import Sink

    start = time.thread_time()
    _busy(1_000_000)
    loops = int(1_000_000 / ((time.thread_time() - start) * 1e6) * page_us)
    # The thread's CPU time: wall time would put the waits for the GIL (the busy
    # thread holds it) into send and recv_into.
    profile = cProfile.Profile(time.thread_time)
    cpu: dict[str, float] = {}

    def hook(*_: object) -> None:  # the first call in a new thread: the delivery worker
        sys.setprofile(None)
        profile.enable()
        cpu.setdefault("start", time.thread_time())

    with Sink() as sink:
        collector = pw.PlausibleCollector("example.com", endpoint=sink.url, max_workers=1)
        threading.setprofile(hook)
        try:
            for _ in range(events):
                _busy(loops)
                collector.track_pageview(url=URL, user_agent=UA, client_ip=IP)
            collector.flush(60)
        finally:
            threading.setprofile(None)  # type: ignore[arg-type]
        sent = collector.stats().sent
        collector.close(5)  # the worker ends: nothing more lands in the profile
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    print(
        f"\ncProfile: the delivery thread, {sent} page views from a thread busy "
        f"{page_us:.0f} µs per page (default settings, max_workers=1), by own time; "
        f"{stats.total_tt / max(sent, 1) * 1e6:.1f} µs per event under the profiler"
    )
    stats.sort_stats("tottime").print_stats(20)
    print(out.getvalue())


def _collector() -> Any:
    import plausible_wsgi as pw

    return pw.PlausibleCollector(
        "example.com",
        endpoint=closed_endpoint(),
        batch_size=10**9,
        flush_interval=3600.0,
        max_queue_size=10**9,
        max_buffer_bytes=1 << 40,  # nothing evicted: the profile is of buffering
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["delivery"]:
        delivery_profile()
        raise SystemExit(0)
    raise SystemExit(main())
