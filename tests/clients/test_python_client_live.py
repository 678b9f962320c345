"""The Python client's live subscriptions, in the same scenarios as the JavaScript client's:
resume through replica restarts and gateway drops, token expiry, stalls, close codes."""

import asyncio
import logging
import time

import pytest

from .conftest import HEARTBEAT_SECONDS, ClientStack
from .helpers import (
    PASSWORD,
    TOLERANT_HEARTBEAT,
    Recorder,
    log_ids,
    patiently,
    restart_realtime,
    sign_up,
    subscribe,
    wait_for,
)
from .proxy import Proxy

TRANSPORTS = ["sse", "ws"]


async def shared_board(stack: ClientStack, reader_url: str | None = None):  # type: ignore[no-untyped-def]
    owner = await sign_up(stack.base_url)
    reader = await sign_up(reader_url or stack.base_url)
    board = await owner.client.boards.create("Live")
    await owner.client.members.set(board["id"], reader.me["id"], "viewer")
    channel = f"board:{board['id']}"
    start = max(await log_ids(stack, channel, 0))
    return owner, reader, board, channel, start


async def test_500_tasks_through_restarts_and_drops_every_event_once_in_order(
    client_stack: ClientStack, proxy: Proxy
) -> None:
    owner, reader, board, channel, start = await shared_board(client_stack, proxy.url)
    records = {transport: Recorder() for transport in TRANSPORTS}
    subscriptions = [
        subscribe(reader, channel, transport, records[transport], start) for transport in TRANSPORTS
    ]
    await wait_for(lambda: all(s.state == "live" for s in subscriptions), what="live")

    async def drop() -> None:
        await wait_for(lambda: len(proxy.streams()) == 2, what="both streams up")
        assert proxy.drop() == 2

    disruptions = {
        100: drop,
        200: lambda: restart_realtime(client_stack, 1),
        300: lambda: restart_realtime(client_stack, 2),
        400: drop,
    }
    pending = []
    counter = iter(range(500))

    async def write() -> None:
        for index in counter:
            if index in disruptions:
                pending.append(asyncio.create_task(disruptions[index]()))
            await owner.client.tasks.create(board["id"], title=f"task {index}")

    await asyncio.gather(*(write() for _ in range(4)))
    await asyncio.gather(*pending)
    expected = await log_ids(client_stack, channel, start)
    assert len(expected) == 500
    for transport, record in records.items():
        await wait_for(lambda r=record: len(r.events) >= len(expected), 60, transport)  # type: ignore[misc]
        assert [event.id for event in record.events] == expected, transport
        assert record.resets == []
        assert len(record.reconnects()) >= 3, (transport, record.reconnects())
        assert any(r.code == 1012 for r in record.reconnects()), (transport, record.reconnects())
    for subscription in subscriptions:
        await subscription.aclose()
    await owner.client.aclose()
    await reader.client.aclose()


async def test_a_subscription_survives_several_token_expiries(
    short_token_stack: ClientStack,
) -> None:
    client_stack = short_token_stack
    owner, reader, board, channel, start = await shared_board(client_stack)
    refreshed: list[None] = []
    reader.client.on_tokens(lambda: refreshed.append(None))
    records = {transport: Recorder() for transport in TRANSPORTS}
    subscriptions = [
        subscribe(reader, channel, transport, records[transport], start) for transport in TRANSPORTS
    ]
    await wait_for(lambda: all(s.state == "live" for s in subscriptions))
    until = time.monotonic() + 3.5 * client_stack.access_token_ttl_seconds
    written = 0
    while time.monotonic() < until:
        await owner.client.tasks.create(board["id"], title=f"tick {written}")
        written += 1
        await asyncio.sleep(0.2)
    expected = await log_ids(client_stack, channel, start)
    for transport, record in records.items():
        await wait_for(lambda r=record: len(r.events) >= len(expected), 10, transport)  # type: ignore[misc]
        assert [event.id for event in record.events] == expected, transport
    assert len(refreshed) >= 3
    sse_codes = [r.code for r in records["sse"].reconnects()]
    assert sse_codes.count(4001) >= 3, sse_codes
    assert set(sse_codes) == {4001}, [(r.code, r.reason) for r in records["sse"].reconnects()]
    assert records["ws"].reconnects() == [], "re-authenticated in place, never reconnected"
    for subscription in subscriptions:
        await subscription.aclose()
    await owner.client.aclose()
    await reader.client.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_stalled_connection_is_detected_and_replaced(
    client_stack: ClientStack, proxy: Proxy, transport: str
) -> None:
    owner, reader, board, channel, start = await shared_board(client_stack, proxy.url)
    record = Recorder()
    subscription = subscribe(reader, channel, transport, record, start, HEARTBEAT_SECONDS)
    await wait_for(lambda: subscription.state == "live")
    await owner.client.tasks.create(board["id"], title="before")
    await wait_for(lambda: len(record.events) == 1)
    stalled_at = time.monotonic()
    assert proxy.stall() == 1
    for i in range(5):
        await owner.client.tasks.create(board["id"], title=f"during {i}")
    await wait_for(lambda: bool(record.reconnects()), what="stall detected")
    assert time.monotonic() - stalled_at <= 3 * HEARTBEAT_SECONDS + 1
    assert "stalled" in record.reconnects()[0].reason
    await wait_for(lambda: len(record.events) == 6, what="events written during the stall")
    assert subscription.state == "live"
    assert [e.id for e in record.events] == await log_ids(client_stack, channel, start)
    await subscription.aclose()
    await owner.client.aclose()
    await reader.client.aclose()


async def test_a_websocket_handshake_cut_off_is_retried(
    client_stack: ClientStack, proxy: Proxy
) -> None:
    """A connection closed before the handshake's answer (the gateway going down mid-handshake,
    seen under the 500-task test's drops) is a lost connection to retry, not the end."""
    owner, reader, board, channel, start = await shared_board(client_stack, proxy.url)
    record = Recorder()
    subscription = subscribe(reader, channel, "ws", record, start, HEARTBEAT_SECONDS)
    await wait_for(lambda: subscription.state == "live")
    proxy.cut_handshakes = 2
    assert proxy.drop() == 1
    await owner.client.tasks.create(board["id"], title="after the cut handshakes")
    await wait_for(lambda: len(record.events) == 1, what="the event after reconnecting")
    assert proxy.cut_handshakes == 0
    assert record.stopped is None
    assert subscription.state == "live"
    assert len(record.reconnects()) >= 3
    await subscription.aclose()
    await owner.client.aclose()
    await reader.client.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_removal_stops_the_subscription_with_4403(
    client_stack: ClientStack, transport: str
) -> None:
    owner, reader, board, channel, _ = await shared_board(client_stack)
    record = Recorder()
    subscription = subscribe(reader, channel, transport, record)
    await wait_for(lambda: subscription.state == "live")
    await owner.client.members.remove(board["id"], reader.me["id"])
    await wait_for(lambda: record.stopped is not None, what="stopped")
    assert record.stopped is not None
    assert record.stopped.code == 4403
    assert subscription.state == "stopped"
    assert record.reconnects() == []
    await owner.client.aclose()
    await reader.client.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_channel_out_of_reach_stops_with_4403(
    client_stack: ClientStack, transport: str
) -> None:
    _, _, _, channel, _ = await shared_board(client_stack)
    stranger = await sign_up(client_stack.base_url)
    record = Recorder()
    subscribe(stranger, channel, transport, record)
    await wait_for(lambda: record.stopped is not None, what="stopped")
    assert record.stopped is not None
    assert record.stopped.code == 4403
    await stranger.client.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_rejected_ticket_stops_with_4401(client_stack: ClientStack, transport: str) -> None:
    _, reader, _, channel, _ = await shared_board(client_stack)

    async def unknown_ticket() -> str:
        return "not-a-ticket"

    reader.client.live.ticket = unknown_ticket  # type: ignore[method-assign]
    record = Recorder()
    subscribe(reader, channel, transport, record)
    await wait_for(lambda: record.stopped is not None, what="stopped")
    assert record.stopped is not None
    assert record.stopped.code == 4401
    assert record.reconnects() == []
    await reader.client.aclose()


async def test_another_users_token_on_a_live_websocket_stops_it_with_4401(
    client_stack: ClientStack,
) -> None:
    owner, reader, _, channel, _ = await shared_board(client_stack)
    record = Recorder()
    subscription = subscribe(reader, channel, "ws", record)
    await wait_for(lambda: subscription.state == "live")
    await patiently(lambda: reader.client.login(owner.email, PASSWORD))
    await wait_for(lambda: record.stopped is not None, what="stopped")
    assert record.stopped is not None
    assert record.stopped.code == 4401
    await owner.client.aclose()
    await reader.client.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cut_off_as_too_slow_it_resumes_and_loses_nothing(
    tiny_queue_stack: ClientStack, transport: str
) -> None:
    client_stack = tiny_queue_stack
    owner, reader, board, channel, start = await shared_board(client_stack)

    async def burst(label: str) -> None:
        await asyncio.gather(
            *(owner.client.tasks.create(board["id"], title=f"{label}.{i}") for i in range(40))
        )

    # A backlog to replay, and writes going on all along: live events queue behind each replay
    # and bursts reach the connection faster than its 3-event queue drains.
    for round_ in range(5):
        await burst(f"backlog {round_}")
    record = Recorder()

    def cut_off() -> bool:
        return any(r.code == 4002 for r in record.reconnects())

    async def keep_writing() -> None:
        for round_ in range(30):
            if cut_off():
                return
            await burst(f"burst {round_}")

    writing = asyncio.create_task(keep_writing())
    subscription = subscribe(reader, channel, transport, record, start)
    await writing
    assert cut_off(), record.reconnects()
    expected = await log_ids(client_stack, channel, start)
    await wait_for(lambda: len(record.events) >= len(expected))
    assert [e.id for e in record.events] == expected
    await subscription.aclose()
    await owner.client.aclose()
    await reader.client.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_cursor_ahead_of_the_log_is_reset_then_follows_live(
    client_stack: ClientStack, transport: str
) -> None:
    owner, reader, board, channel, start = await shared_board(client_stack)
    record = Recorder()
    subscription = reader.client.live.subscribe(
        [channel],
        transport="sse" if transport == "sse" else "ws",
        last_event_id=start + 10**9,
        heartbeat=TOLERANT_HEARTBEAT,
        on_state=record.states.append,
    )
    following = record.follow(subscription)
    await wait_for(lambda: subscription.state == "live" and bool(record.resets), what="reset")
    assert len(record.resets) == 1, record.resets
    assert record.resets[0].channel == (channel if transport == "ws" else None)
    # Line separators that JSON and jsonb leave as they are: the event stream's lines do not
    # end at them.
    title = "one\u2028two\u2029three\x85four"
    created = await owner.client.tasks.create(board["id"], title=title)
    await wait_for(lambda: len(record.events) == 1, what="the live event")
    assert record.events[0].data["id"] == created["id"]
    assert record.events[0].data["title"] == title
    assert [e.id for e in record.events] == await log_ids(client_stack, channel, start)
    # Closing ends an iteration that another task is waiting in.
    await subscription.aclose()
    await asyncio.wait_for(following, 5)
    assert subscription.state == "stopped"
    await owner.client.aclose()
    await reader.client.aclose()


async def test_a_websocket_subscription_without_a_position_resumes_from_the_servers(
    client_stack: ClientStack, proxy: Proxy
) -> None:
    owner, reader, board, channel, start = await shared_board(client_stack, proxy.url)
    record = Recorder()
    subscription = subscribe(reader, channel, "ws", record)
    await wait_for(lambda: subscription.state == "live")
    # `subscribed` gives the position the server follows the channel from: the log's end.
    position = subscription.last_event_id
    assert position is not None
    assert position >= start
    assert proxy.drop() == 1
    await owner.client.tasks.create(board["id"], title="after the drop")
    await wait_for(lambda: len(record.events) == 1, what="the event written after the drop")
    # Resumed from that position: nothing to refetch, nothing missed.
    assert record.resets == []
    assert len(record.reconnects()) >= 1
    assert [e.id for e in record.events] == await log_ids(client_stack, channel, position)
    await subscription.aclose()
    await owner.client.aclose()
    await reader.client.aclose()


async def test_tickets_never_reach_the_log(
    client_stack: ClientStack, caplog: pytest.LogCaptureFixture
) -> None:
    """httpx logs each request's URL at INFO and websockets the handshake at DEBUG: a ticket
    in the realtime URL is redacted from both."""
    _, reader, _, channel, _ = await shared_board(client_stack)
    issued: list[str] = []
    issue = reader.client.live.ticket

    async def recorded_ticket() -> str:
        issued.append(await issue())
        return issued[-1]

    reader.client.live.ticket = recorded_ticket  # type: ignore[method-assign]
    caplog.set_level(logging.DEBUG, logger="httpx")
    caplog.set_level(logging.DEBUG, logger="websockets.client")
    subscriptions = [subscribe(reader, channel, t, Recorder()) for t in TRANSPORTS]
    await wait_for(lambda: all(s.state == "live" for s in subscriptions), what="live")
    for subscription in subscriptions:
        await subscription.aclose()
    await reader.client.aclose()
    assert len(issued) == 2
    assert caplog.text.count("ticket=[redacted]") >= 2, caplog.text
    for ticket in issued:
        assert ticket not in caplog.text
