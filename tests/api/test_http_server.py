"""api.http_server.OneWrite: what uvicorn writes during one event-loop step reaches the socket
as one write, in order; closing writes what is kept first; nothing is written to a closed
connection. (The real server, which writes through it, is tested in test_http_limits.)"""

from __future__ import annotations

import asyncio
from typing import Any

from api.http_server import OneWrite


class Recorded:
    """A transport that records its writes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False
        self.extra = {"peername": ("127.0.0.1", 1)}

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str) -> Any:
        return self.extra.get(name)


def _run(steps: Any) -> Recorded:
    recorded = Recorded()

    async def main() -> None:
        transport = OneWrite(recorded, asyncio.get_running_loop())  # type: ignore[arg-type]
        await steps(transport, recorded)

    asyncio.run(main())
    return recorded


def test_one_steps_writes_go_out_as_one_write_in_order() -> None:
    async def steps(transport: OneWrite, recorded: Recorded) -> None:
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"")  # uvicorn's empty last body part
        transport.write(memoryview(b"{}"))
        assert recorded.writes == []  # not before the step ends
        await asyncio.sleep(0)
        transport.write(b"next")
        await asyncio.sleep(0)

    assert _run(steps).writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", b"next"]


def test_close_writes_what_is_kept_first_and_a_closed_connection_gets_nothing() -> None:
    async def steps(transport: OneWrite, recorded: Recorded) -> None:
        transport.write(b"head")
        transport.write(b"body")
        transport.close()
        assert recorded.writes == [b"headbody"] and recorded.closing
        transport.write(b"late")  # the peer went away meanwhile: dropped at the flush
        await asyncio.sleep(0)
        assert transport.is_closing()  # the transport's own answer
        assert transport.get_extra_info("peername") == ("127.0.0.1", 1)

    assert _run(steps).writes == [b"headbody"]
