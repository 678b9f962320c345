// Close codes as docs/contract.md §7 says: 4401 and 4403 stop the subscription and report it (4002 is in
// too-slow.test.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { newClient, patiently, recorder, signUp, waitFor, PASSWORD } from "./helpers.js";

async function sharedBoard() {
  const owner = await signUp();
  const viewer = await signUp();
  const board = await owner.client.boards.create("Codes");
  await owner.client.members.set(board.id, viewer.me.id, "viewer");
  return { owner, viewer, board, channel: `board:${board.id}` };
}

function stopped(record) {
  return record.states.find((s) => s.state === "stopped");
}

for (const transport of ["sse", "ws"]) {
  test(`${transport}: removal from the board stops the subscription with 4403`, async () => {
    const { owner, viewer, board, channel } = await sharedBoard();
    const record = recorder();
    const sub = viewer.client.live.subscribe([channel], { transport, ...record.options });
    await waitFor(() => sub.state === "live");
    await owner.client.members.remove(board.id, viewer.me.id);
    await waitFor(() => sub.state === "stopped", { what: "stopped" });
    assert.equal(stopped(record).code, 4403);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.deepEqual(record.states.filter((s) => s.state === "reconnecting"), []);
  });

  test(`${transport}: a channel the user may not read stops at once with 4403`, async () => {
    const { board, channel } = await sharedBoard();
    const stranger = await signUp();
    const record = recorder();
    const sub = stranger.client.live.subscribe([channel], { transport, ...record.options });
    await waitFor(() => sub.state === "stopped", { what: "stopped" });
    assert.equal(stopped(record).code, 4403);
    assert.ok(board.id);
  });

  test(`${transport}: a rejected ticket stops the subscription with 4401`, async () => {
    const { viewer, channel } = await sharedBoard();
    // The server sees a ticket it never issued: SSE answers 401, WebSocket closes 4401.
    const spoil = (url) => String(url).replace(/ticket=[^&]+/, "ticket=not-a-ticket");
    const client = newClient(undefined, {
      fetch: (url, init) => fetch(spoil(url), init),
      WebSocket: class extends WebSocket { constructor(url) { super(spoil(url)); } },
    });
    await patiently(() => client.login(viewer.email, PASSWORD));
    const record = recorder();
    const sub = client.live.subscribe([channel], { transport, ...record.options });
    await waitFor(() => sub.state === "stopped", { what: "stopped" });
    assert.equal(stopped(record).code, 4401);
    assert.equal(record.states.filter((s) => s.state === "reconnecting").length, 0);
  });
}

test("ws: a token of another user on a live connection closes it with 4401, and it stops", async () => {
  const { viewer, owner, channel } = await sharedBoard();
  const record = recorder();
  const sub = viewer.client.live.subscribe([channel], { transport: "ws", ...record.options });
  await waitFor(() => sub.state === "live");
  // The application logs in as someone else: the client re-authenticates the live socket
  // with the new token, which the server refuses.
  await patiently(() => viewer.client.login(owner.email, PASSWORD));
  await waitFor(() => sub.state === "stopped", { what: "stopped" });
  assert.equal(stopped(record).code, 4401);
});
