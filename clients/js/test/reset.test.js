// `reset` reaches the application, and a subscription whose session ends stops rather than
// waiting for ever.
import { test } from "node:test";
import assert from "node:assert/strict";
import { eventLog, idsOf, recorder, signUp, waitFor } from "./helpers.js";

async function sharedBoard() {
  const owner = await signUp();
  const viewer = await signUp();
  const board = await owner.client.boards.create("Reset");
  await owner.client.members.set(board.id, viewer.me.id, "viewer");
  const channel = `board:${board.id}`;
  return { owner, viewer, board, channel, start: (await eventLog(channel, 0)).at(-1).id };
}

for (const transport of ["sse", "ws"]) {
  test(`${transport}: a cursor ahead of the log is reset, then the subscription follows live`, async () => {
    const { owner, viewer, board, channel, start } = await sharedBoard();
    const record = recorder();
    const sub = viewer.client.live.subscribe([channel], { transport, lastEventId: start + 1e9, ...record.options });
    await waitFor(() => sub.state === "live" && record.resets.length > 0, { what: "reset" });
    assert.equal(record.resets.length, 1);
    if (transport === "ws") assert.equal(record.resets[0].channel, channel);
    else assert.deepEqual(record.resets[0].channels, [channel]);
    const title = "one\u2028two\u2029three\u0085four";
    const created = await owner.client.tasks.create(board.id, { title });
    await waitFor(() => record.events.length === 1, { what: "the live event" });
    assert.equal(record.events[0].data.id, created.id);
    assert.equal(record.events[0].data.title, title);
    assert.deepEqual(idsOf(record.events), (await eventLog(channel, start)).map((e) => e.id));
    sub.close();
  });

  test(`${transport}: after logout the subscription stops with 4401 when its token runs out`, async () => {
    const { viewer, channel } = await sharedBoard();
    const record = recorder();
    const sub = viewer.client.live.subscribe([channel], { transport, ...record.options });
    await waitFor(() => sub.state === "live");
    await viewer.client.logout();
    // The connection's token (4 s on its test stack) ends it with 4001; there is none to refresh.
    await waitFor(() => sub.state === "stopped", { timeoutMs: 20_000, what: "stopped" });
    const { state, code, reason } = record.states.at(-1);
    assert.deepEqual({ state, code, reason }, { state: "stopped", code: 4401, reason: "signed out" });
    assert.deepEqual(record.states.filter((s) => s.state === "connecting").length, 1, JSON.stringify(record.states));
  });
}
