"""Runs last in its unit of work (tests/conftest.py orders it): no log line written by a stack
of this test process, services and nginx alike, holds a password, token, ticket or password
hash that the run used, an OpenID sign-in's state, nonce, codes or client secret, nor the query
string of a /realtime/ or /auth/oidc/ URL. (The fault tests, which run beside the other
end-to-end tests, check their own stacks' logs as they stop, and so do the clients' stacks,
which run on the other pytest-xdist worker: tests/clients/conftest.py.)"""

from pathlib import Path

import pytest

from .conftest import ROOT, SECRETS_SEEN, SESSION_STARTED, NativeStack, log_leaks, stored_secrets


def logs_of_this_run() -> list[Path]:
    """Every log file the stacks started by this test run wrote (var/<stack>-<id>/)."""
    return [
        path
        for path in sorted((ROOT / "var").glob("*/*.log"))
        if path.stat().st_mtime >= SESSION_STARTED
    ]


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
