"""gunicorn ``-k gevent`` for real: SIGTERM under load, with and without a spool, over
plain HTTP and TLS, and no ``MonkeyPatchWarning`` from importing the hooks module."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
from faults import TlsSink, make_self_signed_cert
from real_servers import Gunicorn, Load, drain, stored, tally

from plausible_wsgi.testing import PlausibleReceiver

pytest.importorskip("gevent", reason="gevent is in the dev extra")
pytestmark = pytest.mark.slow


def test_importing_the_hooks_imports_nothing_gevent_warns_about() -> None:
    """urllib3 (through requests) keeps direct references to ssl classes: imported
    before gevent patches, every gevent worker warns. The hooks module must not."""
    code = (
        "import sys, plausible_wsgi.gunicorn\n"
        "print(sorted(m for m in ('requests', 'urllib3') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def run_gevent(
    tmp_path: Path,
    endpoint: str,
    spool: Optional[Path],
    ca_bundle: Optional[Path] = None,
) -> tuple[list[str], str]:
    server = Gunicorn(tmp_path, endpoint, spool, "gevent", ca_bundle)
    try:
        server.wait_ready()
        load = Load(server.sock_path).start()
        load.wait_served(80)
        server.signal(signal.SIGTERM)  # graceful: in-flight requests finish, hooks run
        assert server.wait() == 0
    finally:
        served = load.stop() if "load" in locals() else []
        server.kill()
    return served, server.log()


@pytest.mark.parametrize("spooled", [False, True], ids=["memory", "spool"])
def test_sigterm_under_load_delivers_every_served_page(tmp_path: Path, spooled: bool) -> None:
    spool = tmp_path / "spool.sqlite3" if spooled else None
    with PlausibleReceiver() as receiver:
        served, log = run_gevent(tmp_path, receiver.url, spool)
        left = stored(spool) if spool else 0
        if spool:
            drain(spool, receiver.url)
        delivered = [e.url for e in receiver.events if "/p/" in e.url]
    figures = tally(served, delivered)
    print(f"\ngevent {'spool' if spooled else 'memory'}: {figures}, left in spool {left}")
    assert figures["lost"] == figures["duplicated"] == 0, figures
    assert left == 0  # the clean stop sent everything itself
    assert "MonkeyPatchWarning" not in log
    assert "Booting worker" in log


def test_tls_delivery_under_gevent(tmp_path: Path) -> None:
    pair = make_self_signed_cert(tmp_path)
    if pair is None:
        pytest.skip("no openssl command to make a certificate")
    cert, key = pair
    sink = TlsSink(cert, key)
    try:
        served, log = run_gevent(tmp_path, sink.url, None, ca_bundle=cert)
        delivered = [json.loads(b)["url"] for b in list(sink.bodies)]
    finally:
        sink.close()
    delivered = [url for url in delivered if "/p/" in url]
    figures = tally(served, delivered)
    assert figures["lost"] == figures["duplicated"] == 0, figures
    assert sink.handshake_failures == 0
    assert "MonkeyPatchWarning" not in log
    assert "RecursionError" not in log
