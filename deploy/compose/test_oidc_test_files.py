"""The test-only compose file of the sign-in tests (test-oidc.yml) and its relay: checked here
without an engine; `make compose-test` runs them."""

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from devstack.testing import free_port

HERE = Path(__file__).parent
COMPOSE = HERE.parents[1] / "docker-compose.yml"
TEST_FILE = HERE / "test-oidc.yml"
RELAY = HERE / "oidc_test_relay.py"


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema against the compose specification (as test_compose_static.py)."""
    check = Path(sys.executable).parent / "check-jsonschema"
    command = [str(check), "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_the_test_providers_file_follows_the_specification() -> None:
    assert validate(TEST_FILE).returncode == 0, validate(TEST_FILE).stdout
    services = yaml.safe_load(TEST_FILE.read_text())["services"]
    assert services["oidc-test-relay"]["network_mode"] == "service:auth"
    assert "OIDC_PROVIDERS" in services["auth"]["environment"]


def test_nothing_of_the_test_provider_is_in_the_development_stack() -> None:
    development = COMPOSE.read_text()
    assert "oidc-test-relay" not in development
    assert "OIDC_TEST" not in development
    assert "OIDC_PROVIDERS" not in development
    # Only compose-test adds the file, to its first copy.
    assert "deploy/compose/test-oidc.yml" in (HERE / "test.sh").read_text()


async def echo_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers everything it reads, in capitals, once the other side has finished."""
    data = await reader.read()
    writer.write(data.upper())
    await writer.drain()
    writer.close()


@pytest.fixture
async def relay() -> AsyncIterator[int]:
    """The relay as the test file runs it, from 127.0.0.1:<port> to 127.0.0.2:<port> (any
    loopback address stands in for the Docker bridge's), in front of `echo_upper`."""
    port = free_port()
    server = await asyncio.start_server(echo_upper, "127.0.0.2", port)
    env = {**os.environ, "OIDC_TEST_PORT": str(port), "OIDC_TEST_BRIDGE": "127.0.0.2"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(RELAY), env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        assert b"oidc-test-relay: 127.0.0.1" in await process.stdout.readline()
        yield port
    finally:
        process.terminate()
        await process.wait()
        server.close()


async def test_the_relay_forwards_both_ways_and_passes_the_end_of_stream_on(relay: int) -> None:
    for _ in range(2):  # one connection after another
        reader, writer = await asyncio.open_connection("127.0.0.1", relay)
        writer.write(b"GET /.well-known/openid-configuration")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"GET /.WELL-KNOWN/OPENID-CONFIGURATION"
        writer.close()
