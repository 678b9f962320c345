"""Runs a service the way every deployment does, with the stack's uvicorn settings written once:

    python -m servicekit.serve realtime_service.main:app --host 0.0.0.0 --port 8003

The Dockerfiles, the chart, the native launcher and the tests all start services this way.
"""

import argparse
from collections.abc import Sequence

import uvicorn

from servicekit.websocket_linger import LingeringWebSocketProtocol

# uvicorn's own access log would log query strings (realtime's tickets): the services log
# requests themselves. Idle keep-alive connections outlive the gateway's (nginx closes first,
# so it never sends a request on a connection uvicorn is closing: a 502). WebSocket frames
# are capped at realtime's own message cap (8 KiB), so a frame of any size is refused with
# 1009, and the refusal reaches the client through the gateway (servicekit.websocket_linger).
KEEP_ALIVE_SECONDS = 75
WS_MAX_SIZE = 8192


def config(app: str, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        proxy_headers=True,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        ws=LingeringWebSocketProtocol,
        ws_max_size=WS_MAX_SIZE,
        ws_per_message_deflate=False,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m servicekit.serve")
    parser.add_argument("app", help="the ASGI app, as module:attribute")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args(argv)
    uvicorn.Server(config(arguments.app, arguments.host, arguments.port)).run()


if __name__ == "__main__":
    main()
