"""A TCP proxy of the tests' own in front of the gateway: `drop()` cuts the live streams (SSE
and WebSocket connections) as a gateway restart would, `stall()` stops forwarding on them
without closing anything, as a dead NAT entry does, and `cut_handshakes` closes the next
WebSocket handshakes before any answer, as a gateway going down mid-handshake does. Other new
connections are never affected."""

import asyncio
import contextlib
import re
from types import TracebackType
from urllib.parse import urlsplit

REQUEST_LINE = re.compile(rb"[A-Z]+ /\S* HTTP/1\.[01]\r\n")
WEBSOCKET_HANDSHAKE = b"GET /realtime/ws"
STREAM_REQUESTS = (b"GET /realtime/sse", WEBSOCKET_HANDSHAKE)


class Pair:
    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client, self.upstream = client, upstream
        self.stream = False
        self.stalled = False

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            transport = writer.transport
            transport.abort()


class Proxy:
    def __init__(self, target: str) -> None:
        parsed = urlsplit(target)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.pairs: set[Pair] = set()
        self.url = ""
        self.cut_handshakes = 0

    async def __aenter__(self) -> "Proxy":
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for pair in list(self.pairs):
            pair.close()
        self.server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.transport.abort()
            return
        pair = Pair(writer, up_writer)
        self.pairs.add(pair)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, pair, inspect=True),
                self._pipe(up_reader, writer, pair, inspect=False),
            )
        finally:
            self.pairs.discard(pair)
            pair.close()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: Pair,
        inspect: bool,
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while chunk := await reader.read(65536):
                if inspect and REQUEST_LINE.match(chunk):
                    if self.cut_handshakes and chunk.startswith(WEBSOCKET_HANDSHAKE):
                        self.cut_handshakes -= 1
                        break
                    # Per request: a kept-alive connection that carried a stream which ended
                    # may carry an ordinary request next (a token refresh), which no drop
                    # may cut, as a gateway restart would not cut it either.
                    pair.stream = chunk.startswith(STREAM_REQUESTS)
                if not pair.stalled:
                    writer.write(chunk)
                    await writer.drain()
        pair.close()

    def streams(self) -> list[Pair]:
        return [pair for pair in self.pairs if pair.stream and not pair.stalled]

    def drop(self) -> int:
        streams = self.streams()
        for pair in streams:
            pair.close()
        return len(streams)

    def stall(self) -> int:
        streams = self.streams()
        for pair in streams:
            pair.stalled = True
        return len(streams)
