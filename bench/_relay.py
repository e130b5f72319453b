"""A TCP relay on loopback adding a fixed delay each way, in its own process (a far
server for benchmarks: ``Relay(port, 0.02)`` is a 40 ms round trip in front of it).

Every chunk read is written on ``delay`` seconds later, in order, in both directions.

    python bench/_relay.py UPSTREAM_PORT DELAY   (prints the port it listens on)
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from types import TracebackType
from typing import Optional


async def _forward(src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def later() -> None:
        while True:
            due, data = await chunks.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not data:
                dst.close()
                return
            dst.write(data)

    writing = asyncio.create_task(later())
    data = b"-"
    while data:
        try:
            data = await src.read(65536)
        except OSError:
            data = b""
        chunks.put_nowait((loop.time() + delay, data))
    await writing


async def _serve(upstream: int, delay: float) -> None:
    async def relay(near_r: asyncio.StreamReader, near_w: asyncio.StreamWriter) -> None:
        far_r, far_w = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(_forward(near_r, far_w, delay), _forward(far_r, near_w, delay))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


class Relay:
    """The relay in a subprocess; ``url`` reaches ``upstream`` through it."""

    def __init__(self, upstream: int, delay: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(upstream), str(delay)], stdout=subprocess.PIPE
        )
        assert self.process.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}"

    def close(self) -> None:
        self.process.kill()
        self.process.wait()

    def __enter__(self) -> Relay:
        return self

    def __exit__(
        self,
        kind: Optional[type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]), float(sys.argv[2])))
