"""The coalescing transport under `perflab serve`'s uvicorn protocol: a response's head and body in one write."""

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


def test_a_write_is_held_until_the_next_joins_it_or_the_step_ends() -> None:
    async def go() -> list[bytes]:
        inner = _Recording()
        t = _CoalescingTransport(inner, asyncio.get_running_loop())
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(b"")  # nothing to send: not a write
        assert inner.writes == []  # held
        t.write(memoryview(b"body"))
        assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]  # joined, and out at once
        t.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # a head with no body after it
        assert len(inner.writes) == 1
        await asyncio.sleep(0)  # the step ends: it leaves alone
        t.write(b"held")
        t.flush()  # end of file: out now, not at the step's end
        assert inner.writes[-1] == b"held"
        await asyncio.sleep(0)
        return inner.writes

    assert asyncio.run(go()) == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"HTTP/1.1 204 No Content\r\n\r\n", b"held"]


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
