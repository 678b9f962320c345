"""Runs last (tests/conftest.py orders it): no log line written by a stack of this test run,
services and nginx alike, holds a password, token, ticket or password hash that the run used,
an OpenID sign-in's state, nonce, codes or client secret, nor the query string of a /realtime/
or /auth/oidc/ URL. (The fault tests, which run beside the other end-to-end tests, check their
own stacks' logs as they stop.)"""

from pathlib import Path

import asyncpg
import pytest

from servicekit.db import asyncpg_dsn

from .conftest import ROOT, SECRETS_SEEN, SESSION_STARTED, NativeStack, log_leaks


def logs_of_this_run() -> list[Path]:
    """Every log file the stacks started by this test run wrote (var/<stack>-<id>/)."""
    return [
        path
        for path in sorted((ROOT / "var").glob("*/*.log"))
        if path.stat().st_mtime >= SESSION_STARTED
    ]


async def stored_secrets(database_url: str) -> set[str]:
    """Password hashes (an account made through an OpenID provider has none), and the hex of
    refresh-token hashes, as a log would show them."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        hashes = await connection.fetch(
            "SELECT password_hash FROM auth.users WHERE password_hash IS NOT NULL"
        )
        tokens = await connection.fetch(
            "SELECT encode(token_hash, 'hex') AS hex FROM auth.refresh_tokens"
        )
    finally:
        await connection.close()
    return {row["password_hash"] for row in hashes} | {row["hex"] for row in tokens}


async def test_no_log_line_holds_a_secret(stack: NativeStack | None) -> None:
    if stack is None:
        pytest.skip("the stack at E2E_BASE_URL keeps its logs elsewhere")
    secrets = set(SECRETS_SEEN.values) | await stored_secrets(stack.config.database_url)
    assert len(secrets) > 20, "the run used too few secrets for this check to mean anything"
    logs = logs_of_this_run()
    assert any(path.name == "realtime-1.log" for path in logs)
    assert any(path.name == "nginx-error.log" for path in logs)
    leaks = log_leaks(logs, secrets)
    assert not leaks, "\n".join(leaks[:20])
