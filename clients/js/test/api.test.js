// Every REST helper against the real API through the gateway, errors included.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { StackError } from "../index.js";
import { PASSWORD, newClient, patiently, signUp } from "./helpers.js";

async function rejects(promise, status, error) {
  try {
    await promise;
  } catch (caught) {
    assert.ok(caught instanceof StackError, `not a StackError: ${caught}`);
    assert.equal(caught.status, status);
    assert.equal(caught.error, error);
    return caught;
  }
  assert.fail(`expected ${status} ${error}`);
}

test("register, login, me, updateMe, logout", async () => {
  const client = newClient();
  const email = `js-${randomUUID().slice(0, 10)}@example.com`;
  const user = await patiently(() => client.register(email, PASSWORD, "Ada"));
  assert.equal(user.email, email);
  assert.equal(user.display_name, "Ada");
  const taken = await rejects(patiently(() => client.register(email, PASSWORD)), 409, "email_taken");
  assert.equal(typeof taken.detail, "string");
  const me = await patiently(() => client.login(email, PASSWORD));
  assert.equal(me.id, user.id);
  assert.ok(client.signedIn);
  assert.ok(client.accessTokenExpiresAt > Date.now());
  const renamed = await client.updateMe({ displayName: "Ada L." });
  assert.equal(renamed.display_name, "Ada L.");
  assert.equal((await client.me()).display_name, "Ada L.");
  await client.logout();
  assert.equal(client.signedIn, false);
  await rejects(client.me(), 401, "not_authenticated");
});

test("a wrong password is a StackError with the token endpoint's RFC 6749 fields", async () => {
  const { email } = await signUp();
  const error = await rejects(patiently(() => newClient().login(email, "wrong password 1")), 400, "invalid_grant");
  assert.equal(typeof error.detail, "string");
  assert.equal(error.retryAfter, null);
});

test("validation errors keep the detail list that names the field", async () => {
  const { client } = await signUp();
  const error = await rejects(client.boards.create(""), 422, "validation_error");
  assert.ok(Array.isArray(error.detail));
  assert.ok(error.detail.some((item) => item.loc.includes("name")), JSON.stringify(error.detail));
  assert.match(error.message, /name/);
});

test("a refresh rotates the pair; the old refresh token is spent", async () => {
  const { client } = await signUp();
  const before = client.accessTokenExpiresAt;
  await new Promise((resolve) => setTimeout(resolve, 1100));
  await client.refresh();
  assert.ok(client.accessTokenExpiresAt > before);
  assert.ok((await client.me()).id);
});

test("concurrent refreshes share one request and do not end the session", async () => {
  const { client } = await signUp();
  const signedOut = [];
  client.on("signedOut", (info) => signedOut.push(info));
  await Promise.all([client.refresh(), client.refresh(), client.refresh()]);
  assert.ok((await client.me()).id);
  assert.deepEqual(signedOut, []);
});

test("a session ended elsewhere signs the client out and says so", async () => {
  const { client, email } = await signUp();
  const other = newClient();
  await patiently(() => other.login(email, PASSWORD));
  const signedOut = [];
  client.on("signedOut", (info) => signedOut.push(info));
  // A password change ends the user's other sessions (docs/contract.md §4).
  await other.updateMe({ password: "a new password 2", currentPassword: PASSWORD });
  await assert.rejects(client.refresh(), (error) => error instanceof StackError && error.status === 400);
  assert.equal(client.signedIn, false);
  assert.equal(signedOut.length, 1);
});

test("boards: create, get with ETag, list pages, update with ifMatch, 412 when stale, delete", async () => {
  const { client } = await signUp();
  const created = [];
  for (let i = 0; i < 5; i += 1) created.push(await client.boards.create(`Board ${i}`));
  assert.equal(created[0].role, "owner");
  const board = await client.boards.get(created[0].id);
  assert.equal(board.etag, `"${board.version}"`);
  assert.equal(JSON.stringify(board).includes("etag"), false);
  const page = await client.boards.page({ limit: 2 });
  assert.equal(page.items.length, 2);
  assert.ok(page.next_cursor);
  const listed = [];
  for await (const item of client.boards.list({ limit: 2 })) listed.push(item.id);
  assert.deepEqual(new Set(listed), new Set(created.map((b) => b.id)));
  assert.equal(listed.length, 5);
  const renamed = await client.boards.update(board.id, { name: "Renamed" }, { ifMatch: board.version });
  assert.equal(renamed.name, "Renamed");
  assert.equal(renamed.version, board.version + 1);
  await rejects(client.boards.update(board.id, { name: "Stale" }, { ifMatch: board.etag }), 412, "precondition_failed");
  assert.equal((await client.boards.get(board.id)).name, "Renamed");
  await rejects(client.boards.delete(board.id, { ifMatch: board.version }), 412, "precondition_failed");
  assert.equal(await client.boards.delete(board.id, { ifMatch: renamed.etag }), null);
  await rejects(client.boards.get(board.id), 404, "board_not_found");
});

test("members: set, list, remove; 403 and 404 as the contract says", async () => {
  const owner = await signUp();
  const editor = await signUp();
  const stranger = await signUp();
  const board = await owner.client.boards.create("Team");
  const added = await owner.client.members.set(board.id, editor.me.id, "editor");
  assert.equal(added.role, "editor");
  const members = await owner.client.members.list(board.id);
  assert.deepEqual(new Set(members.map((m) => m.role)), new Set(["owner", "editor"]));
  await rejects(editor.client.members.set(board.id, stranger.me.id, "viewer"), 403, "forbidden");
  await rejects(stranger.client.members.list(board.id), 404, "board_not_found");
  assert.equal(await editor.client.members.remove(board.id, editor.me.id), null);
  await rejects(editor.client.boards.get(board.id), 404, "board_not_found");
});

test("tasks: create, get, list with filters and pages, update with ifMatch, 412, delete", async () => {
  const owner = await signUp();
  const { client } = owner;
  const board = await client.boards.create("Tasks");
  const first = await client.tasks.create(board.id, { title: "First", description: "d", assigneeId: owner.me.id });
  assert.equal(first.assignee_id, owner.me.id);
  assert.equal(first.status, "todo");
  for (let i = 0; i < 4; i += 1) await client.tasks.create(board.id, { title: `T${i}`, status: "doing" });
  const doing = [];
  for await (const task of client.tasks.list(board.id, { status: "doing", limit: 3 })) doing.push(task);
  assert.equal(doing.length, 4);
  const assigned = [];
  for await (const task of client.tasks.list(board.id, { assigneeId: owner.me.id })) assigned.push(task.id);
  assert.deepEqual(assigned, [first.id]);
  const page = await client.tasks.page(board.id, { limit: 2 });
  assert.equal(page.items.length, 2);
  const fetched = await client.tasks.get(first.id);
  assert.equal(fetched.etag, '"1"');
  const moved = await client.tasks.update(first.id, { status: "done" }, { ifMatch: fetched.etag });
  assert.equal(moved.status, "done");
  const stale = await rejects(client.tasks.update(first.id, { title: "Lost" }, { ifMatch: 1 }), 412, "precondition_failed");
  assert.equal(typeof stale.detail, "string");
  assert.equal((await client.tasks.get(first.id)).title, "First");
  await rejects(client.tasks.create(board.id, { title: "x", bogus: 1 }), 422, "validation_error");
  await rejects(client.tasks.delete(first.id, { ifMatch: 1 }), 412, "precondition_failed");
  assert.equal(await client.tasks.delete(first.id, { ifMatch: moved.version }), null);
  await rejects(client.tasks.get(first.id), 404, "task_not_found");
});

test("comments: viewers comment, pages newest first, authors edit with ifMatch, owners delete", async () => {
  const owner = await signUp();
  const viewer = await signUp();
  const board = await owner.client.boards.create("Comments");
  const found = await owner.client.lookupUser(viewer.me.email.toUpperCase());
  assert.equal(found.id, viewer.me.id);
  await rejects(owner.client.lookupUser(`nobody-${randomUUID()}@example.com`), 404, "not_found");
  await owner.client.members.set(board.id, found.id, "viewer");
  const task = await owner.client.tasks.create(board.id, { title: "Discuss" });
  const first = await viewer.client.comments.create(task.id, " First ");
  assert.equal(first.body, "First");
  assert.equal(first.author_id, viewer.me.id);
  assert.equal(first.etag, '"1"');
  for (let i = 0; i < 3; i += 1) await owner.client.comments.create(task.id, `C${i}`);
  const listed = [];
  for await (const comment of viewer.client.comments.list(task.id, { limit: 2 })) listed.push(comment.body);
  assert.deepEqual(listed, ["C2", "C1", "C0", "First"]);
  const page = await viewer.client.comments.page(task.id, { limit: 3 });
  assert.equal(page.items.length, 3);
  assert.equal(typeof page.next_cursor, "string");
  await rejects(owner.client.comments.update(first.id, "Not mine"), 403, "forbidden");
  const edited = await viewer.client.comments.update(first.id, "Edited", { ifMatch: first.etag });
  assert.equal(edited.version, 2);
  await rejects(viewer.client.comments.update(first.id, "Lost", { ifMatch: 1 }), 412, "precondition_failed");
  assert.equal((await owner.client.comments.get(first.id)).body, "Edited");
  await rejects(viewer.client.comments.create(task.id, ""), 422, "validation_error");
  assert.equal(await owner.client.comments.delete(first.id, { ifMatch: edited.version }), null);
  await rejects(viewer.client.comments.get(first.id), 404, "comment_not_found");
});

test("request() reaches any route and returns the parsed body", async () => {
  const { client, me } = await signUp();
  const user = await client.request("GET", "/auth/users/me");
  assert.equal(user.id, me.id);
  const ticket = await client.live.ticket();
  assert.equal(typeof ticket, "string");
  const missing = await rejects(client.request("GET", "/nowhere"), 404, "not_found");
  assert.equal(missing.detail, "Not Found");
});

test("429 from the gateway carries retryAfter", async () => {
  const client = newClient();
  // More at once than the gateway's burst for /auth/token lets through, each for another email
  // so that auth's per-account throttling (5 failures) cannot answer first.
  const attempts = Array.from({ length: 30 }, (_, i) =>
    client.login(`nobody-${i}@example.com`, "wrong password 1").catch((error) => error));
  const limited = (await Promise.all(attempts)).find((error) => error.status === 429);
  assert.ok(limited, "the gateway never limited /auth/token");
  assert.equal(limited.error, "rate_limited");
  assert.equal(limited.retryAfter, 1);
  await new Promise((resolve) => setTimeout(resolve, 2500));
});
