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
    const start = (await eventLog(channel, 0)).at(-1).id;
    const burst = (label) => Promise.all(Array.from({ length: 40 }, (_, i) =>
      owner.client.tasks.create(board.id, { title: `${label}.${i}` })));
    // A backlog to replay, and writes going on all along: live events queue behind each replay
    // and bursts reach the connection faster than its 3-event queue drains.
    for (let round = 0; round < 5; round += 1) await burst(`backlog ${round}`);
    const record = recorder();
    const cutOff = () => record.reconnects().some((r) => r.code === 4002);
    const writing = (async () => {
      for (let round = 0; round < 30 && !cutOff(); round += 1) await burst(`burst ${round}`);
    })();
    const sub = viewer.client.live.subscribe([channel], { transport, lastEventId: start, ...record.options });
    await writing;
    assert.ok(cutOff(), JSON.stringify(record.reconnects()));
    const expected = (await eventLog(channel, start)).map((e) => e.id);
    await waitFor(() => record.events.length >= expected.length, { timeoutMs: 30_000 });
    assert.deepEqual(idsOf(record.events), expected);
    sub.close();
  });
}
