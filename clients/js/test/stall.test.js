// A connection that stops carrying bytes without closing (the proxy stops forwarding) is
// found by heartbeat stall detection within twice the heartbeat and replaced; nothing is lost.
import { test } from "node:test";
import assert from "node:assert/strict";
import { HEARTBEAT_MS, Proxy, eventLog, idsOf, recorder, signUp, waitFor } from "./helpers.js";

for (const transport of ["sse", "ws"]) {
  test(`${transport}: a stalled connection is detected and replaced`, async () => {
    const proxy = await new Proxy().start();
    const writer = await signUp();
    const reader = await signUp(proxy.url);
    const board = await writer.client.boards.create("Stall");
    await writer.client.members.set(board.id, reader.me.id, "viewer");
    const channel = `board:${board.id}`;
    const record = recorder({ heartbeatMs: HEARTBEAT_MS });
    const start = (await eventLog(channel, 0)).at(-1).id;
    const sub = reader.client.live.subscribe([channel], { transport, lastEventId: start, ...record.options });
    await waitFor(() => sub.state === "live");
    await writer.client.tasks.create(board.id, { title: "before" });
    await waitFor(() => record.events.length === 1);

    const stalledAt = Date.now();
    assert.equal(proxy.stall(), 1);
    for (let i = 0; i < 5; i += 1) await writer.client.tasks.create(board.id, { title: `during ${i}` });
    await waitFor(() => record.states.some((s) => s.state === "reconnecting"), { what: "stall detected" });
    const detectedIn = Date.now() - stalledAt;
    assert.ok(detectedIn <= 3 * HEARTBEAT_MS + 1000, `detected after ${detectedIn} ms`);
    assert.match(record.reconnects()[0].reason, /stalled/);
    await waitFor(() => record.events.length === 6, { what: "the events written during the stall" });
    assert.equal(sub.state, "live");
    assert.deepEqual(idsOf(record.events), (await eventLog(channel, start)).map((e) => e.id));
    sub.close();
    await proxy.close();
  });
}
