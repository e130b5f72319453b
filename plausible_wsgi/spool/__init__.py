"""The durable spool: events written to SQLite on the host, then sent by a relay.

:mod:`.store` is the SQLite file shared by a host's processes (over :mod:`.connections`,
fork-safe, and :mod:`.owner`, which process holds a row); :mod:`.feeder` moves rows into a
delivery engine and settles them; :mod:`.relay` is the one process per host that drains it.
"""
