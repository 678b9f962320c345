// Resume: an SSE and a WebSocket subscriber follow a board while a writer creates 500 tasks;
// meanwhile both realtime replicas restart and the proxy drops every live stream twice.
// Each subscriber must see every committed event of the board exactly once, in order.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Proxy, eventLog, idsOf, recorder, restartRealtime, signUp, waitFor,
} from "./helpers.js";

const TASKS = 500;

test("500 tasks, two replica restarts, two gateway drops: every event once, in order", async () => {
  const proxy = await new Proxy().start();
  const writer = await signUp();
  const reader = await signUp(proxy.url);
  const board = await writer.client.boards.create("Resume");
  await writer.client.members.set(board.id, reader.me.id, "viewer");
  const channel = `board:${board.id}`;
  // The setup's events reach the log a moment after their commit: wait for them, so that the
  // position the subscriber starts from is not passed by them arriving live.
  await eventLog(channel, 0);

  const sse = recorder();
  const sseSub = reader.client.live.subscribe([channel], { transport: "sse", ...sse.options });
  await waitFor(() => sseSub.state === "live", { what: "SSE live" });
  const start = sseSub.lastEventId;
  assert.equal(typeof start, "number");
  const ws = recorder();
  const wsSub = reader.client.live.subscribe([channel], { transport: "ws", lastEventId: start, ...ws.options });
  await waitFor(() => wsSub.state === "live", { what: "WebSocket live" });

  const titles = [];
  const drop = async () => {
    // Both streams may be between connections after a restart: wait until they are up.
    await waitFor(() => proxy.streams().length === 2, {
      timeoutMs: 30_000,
      what: () => `both streams up (${proxy.streams().length}; sse: ${JSON.stringify(sse.states.slice(-3))}, `
        + `ws: ${JSON.stringify(ws.states.slice(-3))})`,
    });
    assert.equal(proxy.drop(), 2);
  };
  const disruptions = {
    100: drop,
    200: () => restartRealtime(1),
    300: () => restartRealtime(2),
    400: drop,
  };
  const pending = [];
  let next = 0;
  // Four writers at once, so that the log moves while replays run.
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (next < TASKS) {
      const index = next++;
      if (disruptions[index]) pending.push(disruptions[index]());
      titles.push((await writer.client.tasks.create(board.id, { title: `task ${index}` })).title);
    }
  }));
  await Promise.all(pending);

  const log = await eventLog(channel, start);
  assert.equal(log.filter((e) => e.type === "task.created").length, TASKS);
  const expected = log.map((e) => e.id);
  for (const [name, record] of [["sse", sse], ["ws", ws]]) {
    await waitFor(() => record.events.length >= expected.length, {
      timeoutMs: 60_000,
      what: () => `${name}: ${expected.length} events (has ${record.events.length}; `
        + `last states ${JSON.stringify(record.states.slice(-4))}, errors ${JSON.stringify(record.errors.map(String))})`,
    });
    assert.deepEqual(idsOf(record.events), expected, `${name} saw other events than the log's`);
    assert.deepEqual(record.resets, [], `${name} was reset`);
    const created = record.events.filter((e) => e.type === "task.created").map((e) => e.data.title);
    assert.deepEqual(new Set(created), new Set(titles));
    // The disruptions reached this subscriber: at least the two drops and one restart.
    const reconnects = record.reconnects();
    assert.ok(reconnects.length >= 3, `${name}: ${JSON.stringify(reconnects)}`);
    assert.ok(reconnects.some((r) => r.code === 1012), `${name} never saw a restart: ${JSON.stringify(reconnects)}`);
  }
  sseSub.close();
  wsSub.close();
  assert.equal(sseSub.state, "stopped");
  await proxy.close();
});
