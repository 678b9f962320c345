// 4002: a subscriber cut off as too slow resumes without losing or repeating anything. Runs on
// the stack whose connection queues hold 3 events (tests/clients/test_js_client.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { eventLog, idsOf, recorder, signUp, waitFor } from "./helpers.js";

async function sharedBoard() {
  const owner = await signUp();
  const viewer = await signUp();
  const board = await owner.client.boards.create("Too slow");
  await owner.client.members.set(board.id, viewer.me.id, "viewer");
  return { owner, viewer, board, channel: `board:${board.id}` };
}

for (const transport of ["sse", "ws"]) {
  test(`${transport}: cut off as too slow (4002), it resumes and loses nothing`, async () => {
    const { owner, viewer, board, channel } = await sharedBoard();
    const record = recorder();
    const start = (await eventLog(channel, 0)).at(-1).id;
    const sub = viewer.client.live.subscribe([channel], { transport, lastEventId: start, ...record.options });
    await waitFor(() => sub.state === "live");
    // Bursts larger than the test stack's QUEUE_LIMIT (3) reach the connection at once.
    for (let burst = 0; burst < 12 && !record.reconnects().some((r) => r.code === 4002); burst += 1) {
      await Promise.all(Array.from({ length: 40 }, (_, i) =>
        owner.client.tasks.create(board.id, { title: `burst ${burst}.${i}` })));
    }
    assert.ok(record.reconnects().some((r) => r.code === 4002), JSON.stringify(record.reconnects()));
    const expected = (await eventLog(channel, start)).map((e) => e.id);
    await waitFor(() => record.events.length >= expected.length, { timeoutMs: 20_000 });
    assert.deepEqual(idsOf(record.events), expected);
    sub.close();
  });
}
