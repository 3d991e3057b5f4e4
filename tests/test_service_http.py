"""The coalescing transport under `perflab serve`'s uvicorn protocol: one write per loop step."""

from __future__ import annotations

import asyncio
from typing import Any

from perflab.service._http import _CoalescingTransport


class _Recording(asyncio.Transport):
    """The transport below: records what reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted


def test_writes_of_one_loop_step_leave_as_one_and_in_order() -> None:
    async def go() -> list[bytes]:
        inner = _Recording()
        t = _CoalescingTransport(inner, asyncio.get_running_loop())
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(b"")  # nothing to send: not a write
        t.write(memoryview(b"body"))
        assert inner.writes == []  # held until the step ends
        await asyncio.sleep(0)
        t.write(b"next")  # a later step: its own write
        await asyncio.sleep(0)
        return inner.writes

    assert asyncio.run(go()) == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"next"]


def test_close_flushes_first_abort_drops_and_a_closed_transport_gets_nothing() -> None:
    async def go() -> tuple[_Recording, _Recording, _Recording]:
        loop = asyncio.get_running_loop()
        a, b, c = _Recording(), _Recording(), _Recording()
        ta, tb, tc = (_CoalescingTransport(x, loop) for x in (a, b, c))
        ta.write(b"last words")
        ta.close()
        tb.write(b"dropped")
        tb.abort()
        tc.write(b"too late")
        c.closed = True  # the peer went away before the step ended
        await asyncio.sleep(0)
        return a, b, c

    a, b, c = asyncio.run(go())
    assert a.writes == [b"last words"] and a.closed
    assert b.writes == [] and b.aborted
    assert c.writes == []
