// A WebSocket subscription made without a position takes the one the server gives in
// `subscribed`: a drop before any event came resumes from it, with nothing to refetch.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Proxy, eventLog, idsOf, recorder, signUp, waitFor } from "./helpers.js";

test("ws: subscribed without a position, dropped before any event: resumes, no reset", async () => {
  const proxy = await new Proxy().start();
  const writer = await signUp();
  const reader = await signUp(proxy.url);
  const board = await writer.client.boards.create("Position");
  await writer.client.members.set(board.id, reader.me.id, "viewer");
  const channel = `board:${board.id}`;
  const start = (await eventLog(channel, 0)).at(-1).id;
  const record = recorder();
  const sub = reader.client.live.subscribe([channel], { transport: "ws", ...record.options });
  await waitFor(() => sub.state === "live", { what: "WebSocket live" });
  const position = sub.lastEventId;
  assert.ok(Number.isInteger(position) && position >= start, `position ${position}, log at ${start}`);

  assert.equal(proxy.drop(), 1);
  await writer.client.tasks.create(board.id, { title: "after the drop" });
  await waitFor(() => record.events.length === 1, { what: "the event written after the drop" });
  assert.deepEqual(record.resets, []);
  assert.ok(record.reconnects().length >= 1);
  assert.deepEqual(idsOf(record.events), (await eventLog(channel, position)).map((e) => e.id));
  sub.close();
  await proxy.close();
});
