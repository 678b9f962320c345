// The demo page: the stack's JavaScript client (served as /web/stack-client.js from
// clients/js/index.js) does the talking; this file only keeps the page's own state and
// rendering. Each view shows only what belongs to it: signed out, the board list, one board.
import { StackClient } from "/web/stack-client.js";

const $ = (selector) => document.querySelector(selector);
const client = new StackClient();
const state = {
  me: null, board: null, tasks: new Map(), events: null, room: null, resetToken: null,
  commentsTask: null, comments: new Map(),
};
const STATUSES = ["todo", "doing", "done"];

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

// Outcomes that are not errors: a link sent, an address verified, a password changed.
function showNotice(message) {
  const box = $("#notice");
  box.textContent = message;
  box.hidden = !message;
}

client.on("signedOut", () => {
  showError("Your session has ended: please log in again.");
  signedOut();
});

async function login(email, password) {
  await signedIn(await client.login(email, password));
}

async function signedIn(me) {
  state.me = me;
  $("#whoami").textContent = state.me.display_name || state.me.email;
  $("#whoami").title = state.me.email;
  $("#logout").hidden = false;
  renderUnverified();
  await Promise.all([showBoards(), renderAccount()]);
}

// Sign-in through OpenID providers: buttons for the configured ones; the provider sends the
// browser back to #sign-in=CODE (a one-time code, exchanged at once; see followLink).

const providers = client.providers().catch(() => []);

async function renderProviders() {
  $("#providers").append(...(await providers).map(({ name, display_name }) =>
    button(`Sign in with ${display_name}`, async () => {
      location.assign(await client.startProviderSignIn(name));
    })));
}

// Passkeys: the browser's WebAuthn API, with the options the stack sends as JSON.

async function signInWithPasskey() {
  const options = await client.passkeySignInOptions();
  const credential = await navigator.credentials.get({
    publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options),
  });
  await signedIn(await client.signInWithPasskey(credential.toJSON()));
}

async function addPasskey(name) {
  const options = await client.passkeyRegistrationOptions();
  const credential = await navigator.credentials.create({
    publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options),
  });
  await client.registerPasskey(name, credential.toJSON());
  await renderAccount();
}

async function renderPasskeys() {
  $("#passkeys").replaceChildren(...(await client.passkeys()).map((passkey) => {
    const item = document.createElement("li");
    item.textContent = `${passkey.name} `;
    item.dataset.passkey = passkey.id;
    item.append(button("Delete", async () => {
      await client.deletePasskey(passkey.id);
      await renderPasskeys();
    }));
    return item;
  }));
}

async function renderAccount() {
  const linked = await client.linkedProviders();
  $("#linked").replaceChildren(...linked.map((provider) => {
    const item = document.createElement("li");
    item.textContent = `${provider.display_name}${provider.email ? ` (${provider.email})` : ""} `;
    item.dataset.provider = provider.provider;
    item.append(button("Unlink", async () => {
      await client.unlinkProvider(provider.provider);
      await renderAccount();
    }));
    return item;
  }));
  const linkable = (await providers).filter(({ name }) => !linked.some((p) => p.provider === name));
  $("#link-buttons").replaceChildren(...linkable.map(({ name, display_name }) =>
    button(`Link ${display_name}`, async () => {
      location.assign(await client.linkProvider(name));
    })));
  await renderPasskeys();
  $("#account").hidden = false;
}

function button(label, handler) {
  const element = document.createElement("button");
  element.textContent = label;
  element.addEventListener("click", () => {
    showError("");
    handler().catch((e) => showError(e.message));
  });
  return element;
}

function renderUnverified() {
  $("#unverified").hidden = !state.me || state.me.email_verified;
}

async function logout() {
  closeLive();
  await client.logout().catch(() => {});
  signedOut();
}

function signedOut() {
  closeLive();
  Object.assign(state, { me: null, board: null });
  $("#whoami").textContent = "";
  $("#whoami").title = "";
  $("#logout").hidden = true;
  $("#account").hidden = true;
  $("#account").open = false;
  renderUnverified();
  show("#auth-view");
}

function show(view) {
  for (const id of ["#auth-view", "#reset-view", "#boards-view", "#board-view"]) {
    $(id).hidden = id !== view;
  }
}

// Links from mail: PUBLIC_URL/#verify-email=TOKEN and #reset-password=TOKEN; and the way back
// from an OpenID provider, #sign-in=CODE (&linked=PROVIDER after a link). A fragment never
// reaches a server or its logs; the token leaves the address bar at once, so that it stays
// neither in the history nor on the screen.
function followLink() {
  const link = /^#(verify-email|reset-password|sign-in)=([\w-]+)(?:&linked=([\w-]+))?$/.exec(location.hash);
  if (!link) return;
  history.replaceState(null, "", location.pathname + location.search);
  const [, kind, token, linked] = link;
  if (kind === "sign-in") {
    signInWithCode(token, linked).catch((e) => showError(e.message));
  } else if (kind === "verify-email") {
    verifyEmail(token).catch((e) => showError(e.message));
  } else {
    state.resetToken = token;
    show("#reset-view");
  }
}

async function signInWithCode(code, linked) {
  await signedIn(await client.completeSignIn(code));
  const provider = (await providers).find(({ name }) => name === linked);
  if (provider) showNotice(`${provider.display_name} is linked to your account.`);
}

async function verifyEmail(token) {
  // The token is the credential: no sign-in needed, whoever opens the link.
  const user = await client.request("POST", "/auth/email/verify", { json: { token }, auth: false });
  if (state.me && state.me.id === user.id) state.me = user;
  renderUnverified();
  showNotice(`Your email address ${user.email} is verified.`);
}

async function showBoards() {
  closeLive();
  closeComments();
  state.board = null;
  const boards = [];
  for await (const board of client.boards.list({ limit: 100 })) boards.push(board);
  $("#boards").replaceChildren(...boards.map((board) => {
    const item = document.createElement("li");
    const open = document.createElement("button");
    open.textContent = `${board.name} (${board.role})`;
    open.addEventListener("click", () => openBoard(board.id).catch((e) => showError(e.message)));
    item.append(open);
    return item;
  }));
  show("#boards-view");
}

async function openBoard(boardId) {
  const board = await client.boards.get(boardId);
  state.board = board;
  $("#board-name").textContent = board.name;
  $("#role").textContent = `you are ${board.role}`;
  const canEdit = board.role !== "viewer";
  $("#readonly").hidden = canEdit;
  $("#task-form").hidden = !canEdit;
  $("#member-form").hidden = board.role !== "owner";
  $("#chat-form").hidden = !canEdit;
  await loadTasks();
  show("#board-view");
  openLive();
}

async function loadTasks() {
  const tasks = new Map();
  for await (const task of client.tasks.list(state.board.id, { limit: 100 })) tasks.set(task.id, task);
  state.tasks = tasks;
  render();
}

function render() {
  const canEdit = state.board && state.board.role !== "viewer";
  for (const column of document.querySelectorAll(".column")) {
    const status = column.dataset.status;
    const tasks = [...state.tasks.values()].filter((t) => t.status === status)
      .sort((a, b) => a.created_at.localeCompare(b.created_at));
    column.querySelector("ul").replaceChildren(...tasks.map((task) => taskCard(task, canEdit)));
  }
}

function taskCard(task, canEdit) {
  const card = document.createElement("li");
  card.className = "task";
  card.dataset.id = task.id;
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = task.title;
  card.append(title);
  const actions = document.createElement("div");
  actions.className = "actions";
  card.append(actions);
  const button = (label, handler) => {
    const b = document.createElement("button");
    b.textContent = label;
    b.addEventListener("click", () => handler().catch((e) => showError(e.message)));
    actions.append(b);
  };
  // Every member may read and write comments, viewers included.
  button("Comments", () => openComments(task));
  if (!canEdit) return card;
  const index = STATUSES.indexOf(task.status);
  if (index > 0) button("←", () => updateTask(task, { status: STATUSES[index - 1] }));
  if (index < 2) button("→", () => updateTask(task, { status: STATUSES[index + 1] }));
  button("Edit", async () => {
    const title = prompt("Title", task.title);
    if (title && title !== task.title) await updateTask(task, { title });
  });
  button("Delete", async () => {
    await client.tasks.delete(task.id, { ifMatch: task.version });
    state.tasks.delete(task.id);
    if (state.commentsTask && state.commentsTask.id === task.id) closeComments();
    render();
  });
  return card;
}

// Comments on one task at a time, newest first, kept current by the board's events.

async function openComments(task) {
  state.commentsTask = task;
  $("#comments-task").textContent = task.title;
  await loadComments();
  $("#comments").hidden = false;
}

async function loadComments() {
  const task = state.commentsTask;
  const comments = new Map();
  for await (const comment of client.comments.list(task.id, { limit: 100 })) comments.set(comment.id, comment);
  if (state.commentsTask !== task) return;  // another task was opened meanwhile
  state.comments = comments;
  renderComments();
}

function closeComments() {
  state.commentsTask = null;
  state.comments = new Map();
  $("#comments").hidden = true;
  $("#comment-list").replaceChildren();
}

function authorName(userId) {
  if (state.me && userId === state.me.id) return "you";
  const present = state.room && state.room.presence.members.get(userId);
  return present ? present.info.name : "another member";
}

function renderComments() {
  const comments = [...state.comments.values()]
    .sort((a, b) => b.created_at.localeCompare(a.created_at) || b.id.localeCompare(a.id));
  $("#comment-list").replaceChildren(...comments.map(commentItem));
}

function commentItem(comment) {
  const item = document.createElement("li");
  item.className = "comment";
  item.dataset.id = comment.id;
  const meta = document.createElement("div");
  meta.className = "meta";
  const edited = comment.version > 1 ? " · edited" : "";
  meta.textContent = `${authorName(comment.author_id)} · ${new Date(comment.created_at).toLocaleString()}${edited}`;
  const body = document.createElement("div");
  body.className = "body";
  body.textContent = comment.body;
  item.append(meta, body);
  const mine = comment.author_id === state.me.id;
  if (mine) {
    item.append(button("Edit", async () => {
      const text = prompt("Comment", comment.body);
      if (!text || text === comment.body) return;
      const updated = await client.comments.update(comment.id, text, { ifMatch: comment.version });
      state.comments.set(updated.id, updated);
      renderComments();
    }));
  }
  if (mine || state.board.role === "owner") {
    item.append(button("Delete", async () => {
      await client.comments.delete(comment.id, { ifMatch: comment.version });
      state.comments.delete(comment.id);
      renderComments();
    }));
  }
  return item;
}

async function updateTask(task, changes) {
  try {
    const updated = await client.tasks.update(task.id, changes, { ifMatch: task.version });
    state.tasks.set(updated.id, updated);
    render();
  } catch (error) {
    if (error.status !== 412) throw error;
    showError("Someone changed this task meanwhile: the board was reloaded, nothing was overwritten.");
    await loadTasks();
  }
}

// Live: the board's events over SSE (resumed by the client, nothing missed), presence and chat
// over a WebSocket.

const LIVE_TEXT = { connecting: ["wait", "connecting"], live: ["on", "live"],
                    reconnecting: ["wait", "reconnecting"], stopped: ["off", "offline"] };

function setLive(live) {
  const [mode, text] = LIVE_TEXT[live];
  const badge = $("#live");
  badge.className = `live ${mode}`;
  badge.textContent = text;
}

function closeLive() {
  if (state.events) state.events.close();
  if (state.room) state.room.close();
  state.events = state.room = null;
  renderHere(new Map());
  setLive("stopped");
  $("#live").hidden = true;
}

// What was written while the page was not listening: the tasks, and the open task's comments.
function reload() {
  loadTasks().catch((e) => showError(e.message));
  if (state.commentsTask) loadComments().catch((e) => showError(e.message));
}

function openLive() {
  const channel = `board:${state.board.id}`;
  let first = true;
  $("#live").hidden = false;
  state.events = client.live.subscribe([channel], {
    transport: "sse",
    onEvent,
    onReset: reload,
    onState: (live, info) => {
      setLive(live);
      if (live === "live" && first) {
        // Live from here on; reload what was written between the first load and now.
        first = false;
        reload();
      }
      if (live === "stopped" && info.code === 4403) {
        showError("You no longer have access to this board.");
        showBoards().catch((e) => showError(e.message));
      }
    },
  });
  state.room = client.live.subscribe([channel], {
    transport: "ws",
    presence: { info: { name: state.me.display_name }, onChange: renderHere },
    onMessage: (message) => {
      if (message.data && typeof message.data.chat === "string") {
        appendChat(state.room.presence.members.get(message.from)?.info.name || message.from.slice(0, 8),
                   message.data.chat);
      }
    },
  });
}

function onEvent(event) {
  const data = event.data;
  if (event.type.startsWith("comment.")) {
    onCommentEvent(event.type, data);
    return;
  }
  if (event.type === "task.created" || event.type === "task.updated") {
    const known = state.tasks.get(data.id);
    if (!known || known.version <= data.version) state.tasks.set(data.id, data);  // never go back
    if (state.commentsTask && state.commentsTask.id === data.id) {
      state.commentsTask = data;
      $("#comments-task").textContent = data.title;
    }
  } else if (event.type === "task.deleted") {
    state.tasks.delete(data.id);
    // Its comments went with it (docs/contract.md §6).
    if (state.commentsTask && state.commentsTask.id === data.id) closeComments();
  } else if (event.type === "board.deleted") {
    showError("This board was deleted.");
    showBoards().catch((e) => showError(e.message));
    return;
  }
  render();
}

function onCommentEvent(type, data) {
  if (!state.commentsTask || data.task_id !== state.commentsTask.id) return;
  if (type === "comment.deleted") {
    state.comments.delete(data.id);
  } else {
    const known = state.comments.get(data.id);
    if (!known || known.version <= data.version) state.comments.set(data.id, data);
  }
  renderComments();
}

function renderHere(members) {
  const names = state.me ? [`${state.me.display_name} (you)`] : [];
  for (const { name } of members.values()) names.push(name);
  $("#here").replaceChildren(...names.map((name) => {
    const item = document.createElement("li");
    item.textContent = name;
    return item;
  }));
  if (state.commentsTask) renderComments();  // authors who are here are shown by name
}

function appendChat(name, text) {
  const line = document.createElement("li");
  line.textContent = `${name}: ${text}`;
  $("#chat").append(line);
}

// Forms.

function onSubmit(selector, handler) {
  $(selector).addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    showNotice("");
    const form = event.target;
    try { await handler(new FormData(form), event.submitter); form.reset(); }
    catch (error) { showError(error.message); }
  });
}

onSubmit("#auth-form", async (data, submitter) => {
  const email = data.get("email"), password = data.get("password");
  if (submitter && submitter.value === "register") await client.register(email, password);
  await login(email, password);
});
onSubmit("#passkey-form", async (data) => {
  await addPasskey(data.get("name"));
});
onSubmit("#forgot-form", async (data) => {
  await client.request("POST", "/auth/password/forgot", {
    json: { email: data.get("email") }, auth: false,
  });
  $("#forgot").open = false;
  showNotice("If the address has an account, a link is on its way.");
});
onSubmit("#reset-form", async (data) => {
  await client.request("POST", "/auth/password/reset", {
    json: { token: state.resetToken, password: data.get("password") }, auth: false,
  });
  state.resetToken = null;
  // The reset ended every session of the account, this page's too if it had one.
  if (client.signedIn) await logout();
  else show("#auth-view");
  showNotice("Your password is changed: sign in with the new one.");
});
onSubmit("#board-form", async (data) => {
  const board = await client.boards.create(data.get("name"));
  await openBoard(board.id);
});
onSubmit("#task-form", async (data) => {
  const task = await client.tasks.create(state.board.id, { title: data.get("title") });
  state.tasks.set(task.id, task);
  render();
});
onSubmit("#member-form", async (data) => {
  const email = data.get("email").trim();
  let user;
  try {
    user = await client.lookupUser(email);
  } catch (error) {
    if (error.status === 404) throw new Error(`No account has the email ${email}.`);
    throw error;
  }
  const member = await client.members.set(state.board.id, user.id, data.get("role"));
  showNotice(`${user.display_name || email} is now ${member.role} on this board.`);
});
onSubmit("#comment-form", async (data) => {
  const comment = await client.comments.create(state.commentsTask.id, data.get("body"));
  state.comments.set(comment.id, comment);
  renderComments();
});
onSubmit("#chat-form", async (data) => {
  state.room.publish(`board:${state.board.id}`, { chat: data.get("text") });
  appendChat(state.me.display_name, data.get("text"));  // the server does not echo to the sender
});
$("#passkey-sign-in").addEventListener("click", () => {
  showError("");
  signInWithPasskey().catch((e) => showError(e.message));
});
$("#comments-close").addEventListener("click", closeComments);
$("#back").addEventListener("click", () => showBoards().catch((e) => showError(e.message)));
$("#logout").addEventListener("click", () => logout());
$("#verify-request").addEventListener("click", () => {
  showError("");
  showNotice("");
  client.request("POST", "/auth/email/verify-request")
    .then(() => showNotice(`A verification link is on its way to ${state.me.email}.`))
    .catch((e) => showError(e.message));
});
window.addEventListener("hashchange", followLink);
followLink();
renderProviders();
