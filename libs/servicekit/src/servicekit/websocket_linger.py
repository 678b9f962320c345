"""uvicorn's WebSocket protocol, closing a refused connection without resetting it.

When a client's frame breaks the protocol (most often a frame over `--ws-max-size`, refused
with 1009), uvicorn writes the close frame and closes the socket at once, while the client
may still be sending the rest of its frame. Closing a socket with unread input makes the
kernel send a reset instead of a FIN, and a reset makes the peer's kernel drop what it has
not yet read: directly, the client usually reads the close frame first; through a proxy
(nginx relays it a moment later), the close frame is lost and the client sees 1006 with no
reason. So this protocol half-closes after the close frame and reads and discards whatever
still arrives, until the peer closes or `LINGER_SECONDS` pass.
"""

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

# Long enough for a client to finish sending a 16 MiB frame over a slow link, short enough
# that a client which never stops cannot hold the connection.
LINGER_SECONDS = 10.0


class LingeringWebSocketProtocol(WebSocketsSansIOProtocol):
    lingering = False

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        super().data_received(data)

    def handle_ping(self) -> None:
        # A ping in the same read as the refused frame: nothing more may be written after the
        # half-close.
        if not self.lingering:
            super().handle_ping()

    async def send(self, message: ASGISendEvent) -> None:
        # The app learns at once that the connection is gone, as after a peer's close.
        if self.lingering:
            raise ClientDisconnected()
        await super().send(message)

    def handle_parser_exception(self) -> None:
        close = self.conn.close_sent
        assert close is not None
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": close.code, "reason": close.reason}
        )
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if not self.transport.is_reading():
            self.transport.resume_reading()
        # As the parent's timer for a closing handshake: the end of the app leaves the
        # connection open while it runs, and the peer's FIN or close() cancels it.
        self.close_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
