"""TEST ONLY (deploy/compose/test-oidc.yml, `make compose-test`): a TCP relay in the auth
container's network namespace, from 127.0.0.1:OIDC_TEST_PORT to the test OpenID provider that
the tests start on the Docker host (OIDC_TEST_BRIDGE:OIDC_TEST_PORT, the bridge's address).

Why: the provider's issuer is http://127.0.0.1:<port>, the one address that the browser (on the
host), the tests and auth-service all use, so that the ID token's `iss` is the same for every
party; and auth-service takes plain-HTTP issuers on loopback only (OidcProvider.issuer). In the
auth container 127.0.0.1 is the container's own: this relay makes it the host's provider."""

import asyncio
import os


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copies until end of stream, then passes the end on (HTTP keep-alive, half-close)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


async def main(port: int, target: str) -> None:
    async def relay(client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        try:
            provider_reader, provider = await asyncio.open_connection(target, port)
        except OSError as error:
            print(f"oidc-test-relay: {target}:{port} refused: {error}", flush=True)
            client.close()
            return
        await asyncio.gather(pipe(client_reader, provider), pipe(provider_reader, client))
        provider.close()
        client.close()

    server = await asyncio.start_server(relay, "127.0.0.1", port)
    print(f"oidc-test-relay: 127.0.0.1:{port} -> {target}:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(os.environ["OIDC_TEST_PORT"]), os.environ["OIDC_TEST_BRIDGE"]))
