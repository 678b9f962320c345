"""The JavaScript client's tests (`node --test`), run against this session's client stack.

pytest drives them rather than a Makefile line after pytest: the native stack, its settings
and the control endpoint (restart a replica, read the log) are set up once, in Python, for
both clients, and `make test` reports a failing JavaScript test like any other. Each test file
is one pytest test, so a failure names the file; node's own report is in the message."""

import asyncio
import os
import shutil
import signal

import pytest

from ..conftest import ROOT
from .conftest import ClientStack

JS_CLIENT = ROOT / "clients" / "js"
# These need queues small enough for a burst to overflow them, or tokens short enough to
# expire several times within a test.
ON_TINY_QUEUES = ["too-slow.test.js"]
ON_SHORT_TOKENS = ["expiry.test.js", "reset.test.js"]
JS_TESTS = sorted(
    path.name
    for path in (JS_CLIENT / "test").glob("*.test.js")
    if path.name not in ON_TINY_QUEUES + ON_SHORT_TOKENS
)


@pytest.mark.parametrize("test_file", JS_TESTS)
async def test_javascript_client(client_stack: ClientStack, test_file: str) -> None:
    await run_node_tests(client_stack, test_file)


@pytest.mark.parametrize("test_file", ON_TINY_QUEUES)
async def test_javascript_client_on_tiny_queues(
    tiny_queue_stack: ClientStack, test_file: str
) -> None:
    await run_node_tests(tiny_queue_stack, test_file)


@pytest.mark.parametrize("test_file", ON_SHORT_TOKENS)
async def test_javascript_client_on_short_tokens(
    short_token_stack: ClientStack, test_file: str
) -> None:
    await run_node_tests(short_token_stack, test_file)


async def run_node_tests(client_stack: ClientStack, test_file: str) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is missing: `make install` links Node.js 22 into .venv/bin"
    assert (JS_CLIENT / "node_modules" / "ws").is_dir(), "run `npm ci` in clients/js first"
    process = await asyncio.create_subprocess_exec(
        node,
        "--test",
        "--test-reporter=spec",
        "--test-concurrency=1",
        f"test/{test_file}",
        cwd=JS_CLIENT,
        env={
            **os.environ,
            "STACK_URL": client_stack.base_url,
            "STACK_CONTROL_URL": client_stack.control_url,
            "STACK_ACCESS_TOKEN_TTL_SECONDS": str(client_stack.access_token_ttl_seconds),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        # node --test runs each file in a child process: a timeout ends the whole group.
        start_new_session=True,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 300)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = await process.communicate()
        pytest.fail(f"node --test {test_file} ran over 300 s:\n{output.decode()}")
    assert process.returncode == 0, output.decode()
