"""The development mail catcher: an SMTP server on 127.0.0.1 that accepts every message and
saves it as an `.eml` file (open it with any mail client).

    python deploy/local/mailcatcher.py --port 8025 --dir var/stack/mail

The native launcher starts it when SMTP_HOST is unset and points auth-service at it.
"""

import argparse
import asyncio
import time
import uuid
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session


class SaveToDirectory:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
        # Written whole under a temporary name, then renamed: a reader never sees half a file.
        partial = self.directory / f".{name}.part"
        await asyncio.to_thread(partial.write_bytes, content)
        await asyncio.to_thread(partial.rename, self.directory / name)
        return "250 OK"


async def serve(port: int, directory: Path) -> None:
    handler = SaveToDirectory(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.port, args.dir))


if __name__ == "__main__":
    main()
