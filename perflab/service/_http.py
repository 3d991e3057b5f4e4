"""uvicorn's httptools protocol, with each response written in one send.

uvicorn writes a response's head and its body apart: two send(2) calls, two loopback segments, two
wake-ups of the client. On the warm path that was a fifth of a worker's Python time (py-spy, 2026-12-08).
Here the transport holds one write: the next write joins it and both leave at once (a head and the
body that follows it in the same step), and a write still held leaves when the event-loop step ends
(`call_soon`: a head-only response, the last chunk of a stream) or when the client half-closes
(`eof_received`: uvicorn then closes the connection, and a held answer must go out first; a first
version flushed only at the step's end and lost answers to clients that shut their side at once).
`perflab serve` names this class to uvicorn (`server.HTTP_PROTOCOL`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http import httptools_impl


class _CoalescingTransport(asyncio.Transport):
    """Delegates to `inner`; a write is held until the next one (joined with it) or the end of the
    loop step, whichever comes first."""

    def __init__(self, inner: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._inner = inner
        self._loop = loop
        self._held: bytes | bytearray | memoryview | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        held = self._held
        if held is None:
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._held = None
            self._inner.write(b"".join((held, data)))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Write what is held now (the end of the step, end of file, close)."""
        held, self._held = self._held, None
        if held is not None and not self._inner.is_closing():
            self._inner.write(held)

    def close(self) -> None:
        self.flush()
        self._inner.close()

    def write_eof(self) -> None:
        self.flush()
        self._inner.write_eof()

    def abort(self) -> None:
        self._held = None
        self._inner.abort()

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size() + (len(self._held) if self._held is not None else 0)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()


class HttpToolsProtocol(httptools_impl.HttpToolsProtocol):
    """uvicorn's own protocol over the coalescing transport."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._joined = _CoalescingTransport(transport, self.loop)
        super().connection_made(self._joined)

    def eof_received(self) -> None:
        """The client shut its side: uvicorn's transport closes now, so what is held goes first."""
        self._joined.flush()
        super().eof_received()
