"""The dashboards and rules against a real Prometheus scraping the native stack under load:
every metric they name exists, every panel query returns data, every rule evaluates."""

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect

from devstack.launcher import NativeStack
from devstack.promql import dashboard_queries, exported_metric_names, recorded_names, substitute
from devstack.testing import SseStream, free_port

from .conftest import SECRETS_SEEN, log_leaks, native_only, native_stack, sign_up

pytestmark = native_only("it scrapes the stack with a Prometheus of its own")

RATE_INTERVAL = "5s"  # Grafana's $__rate_interval for a 1 s scrape interval


@pytest.fixture(scope="module")
async def monitored() -> AsyncIterator[NativeStack]:
    async with native_stack(
        "observed",
        monitoring=True,
        prometheus_port=free_port(),
        nginx_exporter_port=free_port(),
        postgres_exporter_port=free_port(),
        scrape_interval="1s",
    ) as stack:
        yield stack
    # Its stack's logs, for the secrets this test process carried, as its stack stops.
    leaks = log_leaks(sorted(stack.config.run_dir.glob("*.log")), SECRETS_SEEN.values)
    assert not leaks, "\n".join(leaks[:20])


async def drive_load(base_url: str, seconds: float = 6.0) -> None:
    """Bounded in time and count, through the gateway, touching every service; spread over
    several scrapes, since a rate needs an increase between two of them."""
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as gateway:
        alice, bob = await sign_up(gateway), await sign_up(gateway)
        spent = {"grant_type": "refresh_token", "refresh_token": alice.tokens["refresh_token"]}
        await gateway.post("/auth/token", data=spent)
        await gateway.post("/auth/token", data=spent)  # reuse: revokes the family
        board = (await gateway.post("/api/boards", json={"name": "o"}, headers=bob.headers)).json()
        channel = f"board:{board['id']}"
        ticket = (await gateway.post("/realtime/tickets", headers=bob.headers)).json()["ticket"]
        ws_url = base_url.replace("http://", "ws://") + "/realtime/ws"
        wrong = {"grant_type": "password", "username": alice.email, "password": "wrong!!!"}
        async with (
            gateway.stream(
                "GET", "/realtime/sse", params={"channels": channel, "ticket": ticket}
            ) as response,
            connect(ws_url, origin=base_url) as ws,  # type: ignore[arg-type]
        ):
            stream = SseStream(response)
            await stream.until("ready")
            await ws.send(json.dumps({"type": "auth", "token": bob.tokens["access_token"]}))
            await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                await gateway.post("/auth/token", data=wrong)
                await gateway.get("/auth/users/me", headers=bob.headers)
                task = await gateway.post(
                    f"/api/boards/{board['id']}/tasks", json={"title": "t"}, headers=bob.headers
                )
                await gateway.patch(
                    f"/api/tasks/{task.json()['id']}", json={"status": "done"}, headers=bob.headers
                )
                await stream.until("task.updated")
                await asyncio.sleep(0.3)  # under the gateway's 5/s login limit
            await gateway.get(
                "/api/boards/00000000-0000-0000-0000-000000000000", headers=bob.headers
            )


async def instant(client: httpx.AsyncClient, query: str) -> list[dict[str, object]]:
    response = await client.get("/api/v1/query", params={"query": query})
    assert response.status_code == 200, response.text
    result: list[dict[str, object]] = response.json()["data"]["result"]
    return result


async def test_dashboards_and_rules_have_data_under_load(monitored: NativeStack) -> None:
    config = monitored.config
    started = time.time()
    await drive_load(config.gateway_url)
    await asyncio.sleep(3)  # the last scrapes and rule evaluations
    prometheus = f"http://127.0.0.1:{config.prometheus_port}"
    async with httpx.AsyncClient(base_url=prometheus, timeout=10) as client:
        missing = [
            name
            for name in sorted(exported_metric_names())
            if not await instant(client, f'count({{__name__="{name}"}})')
        ]
        assert not missing, f"named by dashboards or rules but not exported: {missing}"

        empty = []
        for query in dashboard_queries():
            response = await client.get(
                "/api/v1/query_range",
                params={
                    "query": substitute(query.expr, RATE_INTERVAL),
                    "start": started,
                    "end": time.time(),
                    "step": 1,
                },
            )
            assert response.status_code == 200, (query.where, response.text)
            values = [
                float(value)
                for series in response.json()["data"]["result"]
                for _, value in series["values"]
            ]
            if not any(math.isfinite(value) for value in values):
                empty.append(query.where)
        assert not empty, f"panels without a finite sample over the load: {empty}"

        groups = (await client.get("/api/v1/rules")).json()["data"]["groups"]
        unhealthy = [
            rule["name"] for group in groups for rule in group["rules"] if rule["health"] != "ok"
        ]
        assert groups
        assert not unhealthy, unhealthy
        for name in sorted(recorded_names()):
            assert await instant(client, name), f"recording rule {name} produced nothing"
