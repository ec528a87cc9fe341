"""A lean HTTP/1.1 client for load generation: keep-alive connections on asyncio protocols.

bench/ingress.py measures servers, so its load generator has to cost the machine far
less than the servers do. aiohttp's client spends about as much CPU per request as
the baseline receiver spends answering it, so on two cores the client and the server
filled the machine between them. This client sends a request built from prepared
bytes and reads back only the status line, Content-Length and the body: a quarter to
a fifth of aiohttp's cost per request (bench/README.md, session 4).

It speaks just enough HTTP for our servers: one request at a time per connection,
answers with a Content-Length (aiohttp's web.json_response always sends one). An
answer it cannot read closes the connection and counts as a transport error.
"""

from __future__ import annotations

import asyncio
import contextlib


class ProtocolError(ConnectionError):
    """The server's answer was not one this client can read."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            answer = self._answer()
        except ProtocolError as exc:
            self.waiter.set_exception(exc)
            self.close()
            return
        if answer is not None:
            self.waiter.set_result(answer)

    def _answer(self) -> tuple[int, bytes] | None:
        """(status, body) once the whole answer is in the buffer, else None."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[:end]).decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:
            raise ProtocolError("answer without Content-Length")
        if len(self.buffer) < end + 4 + length:
            return None
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        return int(parts[1]), body

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request: bytes, seconds: float) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await asyncio.wait_for(self.waiter, seconds)
        except BaseException:
            self.close()  # whatever is still to come on it belongs to this request
            raise
        finally:
            self.waiter = None


class RawClient:
    """POSTs prepared requests over a pool of keep-alive connections to one server."""

    def __init__(self, host: str, port: int, *, timeout: float) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()

    def head(self, path: str, headers: list[tuple[str, str]]) -> bytes:
        """A POST's request line and `headers`, each line ended, without the blank line
        that ends the head: the caller adds the headers that change, then b"\\r\\n"."""
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers]
        return "".join(line + "\r\n" for line in lines).encode("latin-1")

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Send one request on an idle connection (a new one if none is) and read its answer."""
        while self._idle and self._idle[-1].closed:  # the server let it go while idle
            self._idle.pop()
        connection = self._idle.pop() if self._idle else await self._connect()
        answer = await connection.exchange(request, self.timeout)
        if not connection.closed:
            self._idle.append(connection)
        return answer

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await asyncio.wait_for(
            loop.create_connection(_Connection, self.host, self.port), self.timeout
        )
        self._all.add(connection)
        return connection

    def close(self) -> None:
        for connection in self._all:
            with contextlib.suppress(Exception):
                connection.close()
        self._all.clear()
        self._idle.clear()
