"""A local Plausible Events API: validate, record and inspect events in tests.

:class:`PlausibleReceiver` serves :class:`ReceiverApp` on a free loopback port; point
a collector at :attr:`PlausibleReceiver.url`, then assert on what arrived with
:meth:`PlausibleReceiver.wait_for`. The app answers like Plausible's ``/api/event``
(``202 ok``, ``202`` + ``x-plausible-dropped``, ``400`` with the server's error fields)
and can be scripted to fail (:class:`Fault`). Open the URL in a browser to watch events
arrive on the inspector page.

Usage::

    from plausible_wsgi.receiver import Fault, PlausibleReceiver

    with PlausibleReceiver() as receiver:
        receiver.enqueue_faults(Fault(503, {"Retry-After": "0"}))
        ...  # send an event to receiver.url + "/api/event"
        [event] = receiver.wait_for(1)
"""

from __future__ import annotations

from .app import Attempt, Fault, ReceivedEvent, ReceiverApp
from .server import PlausibleReceiver

__all__ = ["Attempt", "Fault", "PlausibleReceiver", "ReceivedEvent", "ReceiverApp"]
