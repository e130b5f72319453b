"""Who owns a spool row: one incarnation of a process on this host.

A tag is the pid namespace plus the process's start time, so a pid recycled by
another process, or the same pid in another container, is not taken for the owner.
"""

from __future__ import annotations

import os
from typing import Optional

__all__ = ["alive", "process_tag"]


def process_tag(pid: int) -> Optional[str]:
    """Names one incarnation of ``pid`` on this host: the pid namespace and start time.

    ``None`` when the process does not exist. Without ``/proc`` (not Linux) the start
    time is unknown and a recycled pid looks alive until its lease runs out.
    """
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        if fields[0] in (b"Z", b"X"):
            return None  # a zombie: dead, waiting for a parent (or init) to reap it
        return f"{namespace}:{fields[19].decode()}"  # field 22: start time in ticks
    except FileNotFoundError:
        return None
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:
        pass
    return f"{namespace}:?"


def alive(pid: int, tag: Optional[str], my_namespace: str) -> bool:
    """Whether the owner ``pid``/``tag`` may still be running.

    A tag from another pid namespace (another container sharing the file) cannot be
    checked here: it counts as alive, and only its lease can expire.
    """
    namespace, _, start = (tag or "").rpartition(":")
    if namespace != my_namespace:
        return True
    current = process_tag(pid)
    if current is None:
        return False
    return start == "?" or current == tag
