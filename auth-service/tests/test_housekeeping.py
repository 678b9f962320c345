"""Housekeeping deletes what has expired, and only that."""

import os

from fastapi import FastAPI
from sqlalchemy import text

from auth_service.config import Settings
from auth_service.housekeeping import prune

from .conftest import Account, count_rows

THROTTLE_ROWS = "SELECT count(*) FROM auth.login_throttle WHERE email_hash = ANY(:keys)"


async def test_prune_deletes_expired_rows_and_keeps_live_ones(
    app: FastAPI, settings: Settings, account: Account
) -> None:
    # Throttle rows: a quiet window long past (stale), a window still open, and a lockout
    # that ended less than a window ago (its doubling must be remembered).
    stale, open_window, recent_lockout = os.urandom(32), os.urandom(32), os.urandom(32)
    async with app.state.db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO auth.login_throttle"
                " (email_hash, failures, window_started_at, lockouts, locked_until) VALUES"
                " (:stale, 3, now() - interval '2 hours', 1, now() - interval '1 hour'),"
                " (:open, 3, now() - interval '1 minute', 0, NULL),"
                " (:recent, 0, now() - interval '20 minutes', 2, now() - interval '5 minutes')"
            ),
            {"stale": stale, "open": open_window, "recent": recent_lockout},
        )
        await conn.execute(
            text(
                "INSERT INTO auth.action_tokens (token_hash, user_id, purpose, email, expires_at)"
                " VALUES (:expired, :user, 'reset', 'x@example.com', now() - interval '1 second'),"
                " (:live, :user, 'reset', 'x@example.com', now() + interval '30 minutes')"
            ),
            {"expired": b"expired" * 4, "live": b"live" * 8, "user": account.id},
        )
        await conn.execute(
            text(
                "INSERT INTO auth.lookup_budget (user_id, window_started_at, lookups)"
                " VALUES (:user, now() - interval '2 minutes', 30)"
            ),
            {"user": account.id},
        )

    await prune(app.state.db.sessionmaker, settings)

    keys = [stale, open_window, recent_lockout]
    assert await count_rows(app, THROTTLE_ROWS, keys=keys) == 2
    assert await count_rows(app, THROTTLE_ROWS, keys=[stale]) == 0
    tokens = "SELECT count(*) FROM auth.action_tokens WHERE token_hash = ANY(:hashes)"
    assert await count_rows(app, tokens, hashes=[b"expired" * 4]) == 0
    assert await count_rows(app, tokens, hashes=[b"live" * 8]) == 1
    budget = "SELECT count(*) FROM auth.lookup_budget WHERE user_id = :user"
    assert await count_rows(app, budget, user=account.id) == 0


async def test_prune_deletes_unfinished_sign_in_flows_and_codes_once_expired(
    app: FastAPI, settings: Settings, account: Account
) -> None:
    expired, live = os.urandom(32), os.urandom(32)
    async with app.state.db.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO auth.oidc_flows (state_hash, browser_hash, nonce_hash,"
                " code_verifier, provider, expires_at) VALUES"
                " (:expired, :x, :x, 'v', 'p', now() - interval '1 second'),"
                " (:live, :x, :x, 'v', 'p', now() + interval '10 minutes')"
            ),
            {"expired": expired, "live": live, "x": b"x"},
        )
        await conn.execute(
            text(
                "INSERT INTO auth.sign_in_codes (code_hash, user_id, method, expires_at) VALUES"
                " (:expired, :user, 'oidc:p', now() - interval '1 second'),"
                " (:live, :user, 'oidc:p', now() + interval '1 minute')"
            ),
            {"expired": expired, "live": live, "user": account.id},
        )

    await prune(app.state.db.sessionmaker, settings)

    flows = "SELECT count(*) FROM auth.oidc_flows WHERE state_hash = ANY(:hashes)"
    codes = "SELECT count(*) FROM auth.sign_in_codes WHERE code_hash = ANY(:hashes)"
    for query in (flows, codes):
        assert await count_rows(app, query, hashes=[expired]) == 0
        assert await count_rows(app, query, hashes=[live]) == 1
