"""Delivery: from an accepted event to one POST at Plausible, and what happens when it fails.

Read in data-flow order: :mod:`.engine` (a bounded :mod:`.buffer` drained by
:mod:`.workers`) → :mod:`.deliverer` (one event's attempts under the :mod:`.policies`:
:mod:`.retry`, :mod:`.breaker`) → :mod:`.transport` (connections, TLS, proxy, deadline)
and :mod:`.http11` (the bytes on the wire). :mod:`.failure` says how an attempt failed,
:mod:`.retry_after` reads the server's wait, :mod:`.hooks` runs the user's callbacks and
:mod:`.health` warns when delivery is dead. The engine knows nothing of HTTP.
"""
