// Access tokens of a few seconds (the test stack's ACCESS_TOKEN_TTL_SECONDS, passed as
// STACK_ACCESS_TOKEN_TTL_SECONDS): a subscription outlives
// several of them. SSE streams end before each token expires (disconnect 4001) and resume;
// a WebSocket is re-authenticated in place and never reconnects.
import { test } from "node:test";
import assert from "node:assert/strict";
import { eventLog, idsOf, recorder, signUp, sleep, waitFor } from "./helpers.js";

const RUN_MS = 3500 * Number(process.env.STACK_ACCESS_TOKEN_TTL_SECONDS ?? 12);

test("a subscription survives several token expiries without a gap", async () => {
  const writer = await signUp();
  const reader = await signUp();
  const board = await writer.client.boards.create("Expiry");
  await writer.client.members.set(board.id, reader.me.id, "viewer");
  const channel = `board:${board.id}`;
  // The setup's own events are in the log before subscribing, so none of them arrives live.
  await eventLog(channel, 0);
  const tokens = [];
  reader.client.on("tokens", (info) => tokens.push(info));

  const sse = recorder();
  const sseSub = reader.client.live.subscribe([channel], { transport: "sse", ...sse.options });
  await waitFor(() => sseSub.state === "live");
  const start = sseSub.lastEventId;
  const ws = recorder();
  const wsSub = reader.client.live.subscribe([channel], { transport: "ws", lastEventId: start, ...ws.options });
  await waitFor(() => wsSub.state === "live");

  const until = Date.now() + RUN_MS;
  let written = 0;
  while (Date.now() < until) {
    await writer.client.tasks.create(board.id, { title: `tick ${written}` });
    written += 1;
    await sleep(200);
  }
  const expected = (await eventLog(channel, start)).map((e) => e.id);
  for (const [name, record] of [["sse", sse], ["ws", ws]]) {
    await waitFor(() => record.events.length >= expected.length, { what: `${name} catching up` });
    assert.deepEqual(idsOf(record.events), expected, name);
  }
  // Three lifetimes at least went by, each one refreshed before it ran out.
  assert.ok(tokens.length >= 3, `refreshed ${tokens.length} times`);
  const expiries = sse.reconnects().filter((r) => r.code === 4001);
  assert.ok(expiries.length >= 3, `SSE: ${JSON.stringify(sse.reconnects())}`);
  assert.deepEqual(sse.reconnects().filter((r) => r.code !== 4001), []);
  assert.deepEqual(ws.reconnects(), [], "the WebSocket should have been re-authenticated in place");
  sseSub.close();
  wsSub.close();
});
