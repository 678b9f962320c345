// The demo page: the public API through the gateway, nothing else. Tokens live in memory only.
const $ = (selector) => document.querySelector(selector);
const state = { tokens: null, me: null, board: null, tasks: new Map(), lastEventId: null,
                source: null, socket: null, refreshTimer: null, presenceTimer: null, here: new Map() };
const STATUSES = ["todo", "doing", "done"];

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

function describe(body, status) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
  }
  if (body && body.error_description) return body.error_description;
  return `Request failed (${status})`;
}

class ApiError extends Error {
  constructor(status, body) { super(describe(body, status)); this.status = status; this.body = body; }
}

async function api(path, { method = "GET", json, form, headers = {}, retry = true } = {}) {
  const init = { method, headers: { ...headers } };
  if (state.tokens) init.headers.Authorization = `Bearer ${state.tokens.access_token}`;
  if (json !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(json); }
  if (form) init.body = new URLSearchParams(form);
  const response = await fetch(path, init);
  if (response.status === 401 && retry && state.tokens) {
    await refresh();
    return api(path, { method, json, form, headers, retry: false });
  }
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, body);
  return { body, etag: response.headers.get("ETag") };
}

function setTokens(tokens) {
  state.tokens = tokens;
  clearTimeout(state.refreshTimer);
  // Refresh a minute before the access token expires.
  state.refreshTimer = setTimeout(() => refresh().catch(() => logout()),
                                  Math.max(5, tokens.expires_in - 60) * 1000);
}

async function refresh() {
  const { body } = await api("/auth/token", { method: "POST", retry: false,
    form: { grant_type: "refresh_token", refresh_token: state.tokens.refresh_token } });
  setTokens(body);
}

async function login(email, password) {
  const { body } = await api("/auth/token", { method: "POST",
    form: { grant_type: "password", username: email, password } });
  setTokens(body);
  state.me = (await api("/auth/users/me")).body;
  $("#whoami").textContent = `${state.me.display_name} · ${state.me.id}`;
  $("#logout").hidden = false;
  await showBoards();
}

async function logout() {
  closeLive();
  if (state.tokens) {
    await api("/auth/logout", { method: "POST", retry: false,
      json: { refresh_token: state.tokens.refresh_token } }).catch(() => {});
  }
  clearTimeout(state.refreshTimer);
  Object.assign(state, { tokens: null, me: null, board: null });
  $("#whoami").textContent = "";
  $("#logout").hidden = true;
  show("#auth-view");
}

function show(view) {
  for (const id of ["#auth-view", "#boards-view", "#board-view"]) $(id).hidden = id !== view;
}

async function showBoards() {
  closeLive();
  state.board = null;
  const { body } = await api("/api/boards?limit=100");
  const list = $("#boards");
  list.replaceChildren(...body.items.map((board) => {
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
  const { body: board } = await api(`/api/boards/${boardId}`);
  state.board = board;
  $("#board-name").textContent = board.name;
  $("#role").textContent = `you are ${board.role}`;
  const canEdit = board.role !== "viewer";
  $("#readonly").hidden = canEdit;
  $("#task-form").hidden = !canEdit;
  $("#member-form").hidden = board.role !== "owner";
  await loadTasks();
  show("#board-view");
  await openLive();
}

async function loadTasks() {
  state.tasks.clear();
  let cursor = null;
  do {
    const query = cursor ? `?limit=100&cursor=${encodeURIComponent(cursor)}` : "?limit=100";
    const { body } = await api(`/api/boards/${state.board.id}/tasks${query}`);
    for (const task of body.items) state.tasks.set(task.id, task);
    cursor = body.next_cursor;
  } while (cursor);
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
  if (!canEdit) return card;
  const actions = document.createElement("div");
  actions.className = "actions";
  const index = STATUSES.indexOf(task.status);
  const button = (label, handler) => {
    const b = document.createElement("button");
    b.textContent = label;
    b.addEventListener("click", () => handler().catch((e) => showError(e.message)));
    actions.append(b);
  };
  if (index > 0) button("←", () => updateTask(task, { status: STATUSES[index - 1] }));
  if (index < 2) button("→", () => updateTask(task, { status: STATUSES[index + 1] }));
  button("Edit", async () => {
    const title = prompt("Title", task.title);
    if (title && title !== task.title) await updateTask(task, { title });
  });
  button("Delete", async () => {
    await api(`/api/tasks/${task.id}`, { method: "DELETE", headers: { "If-Match": `"${task.version}"` } });
    state.tasks.delete(task.id);
    render();
  });
  card.append(actions);
  return card;
}

async function updateTask(task, changes) {
  try {
    const { body } = await api(`/api/tasks/${task.id}`, { method: "PATCH", json: changes,
      headers: { "If-Match": `"${task.version}"` } });
    state.tasks.set(body.id, body);
    render();
  } catch (error) {
    if (error.status !== 412) throw error;
    showError("Someone changed this task meanwhile: the board was reloaded, nothing was overwritten.");
    await loadTasks();
  }
}

// Live updates: SSE for the log (resumed with last_event_id), WebSocket for presence and chat.

function setLive(mode, text) {
  const badge = $("#live");
  badge.className = `live ${mode}`;
  badge.textContent = text;
}

function closeLive() {
  if (state.source) state.source.close();
  if (state.socket) state.socket.close(1000);
  clearInterval(state.presenceTimer);
  Object.assign(state, { source: null, socket: null, lastEventId: null });
  state.here.clear();
  setLive("off", "offline");
}

async function ticket() {
  return (await api("/realtime/tickets", { method: "POST" })).body.ticket;
}

async function openLive() {
  await connectEvents();
  await connectSocket();
}

async function connectEvents() {
  if (!state.board || !navigator.onLine) return;
  const params = new URLSearchParams({ channels: `board:${state.board.id}`, ticket: await ticket() });
  if (state.lastEventId) params.set("last_event_id", state.lastEventId);
  const source = new EventSource(`/realtime/sse?${params}`);
  state.source = source;
  source.addEventListener("ready", (message) => {
    setLive("on", "live");
    if (!state.lastEventId) {
      // First connection: from here on nothing is missed; reload what came before it.
      state.lastEventId = String(JSON.parse(message.data).last_event_id);
      loadTasks().catch((e) => showError(e.message));
    }
  });
  for (const type of ["task.created", "task.updated", "task.deleted", "board.updated",
                      "board.deleted", "member.added", "member.updated", "member.removed"]) {
    source.addEventListener(type, (message) => onEvent(JSON.parse(message.data), message.lastEventId));
  }
  source.addEventListener("reset", () => loadTasks());
  // The ticket is spent: EventSource's own retry would be refused, so reconnect with a new one.
  const reconnect = () => {
    source.close();
    if (state.source !== source) return;
    setLive("wait", "reconnecting");
    setTimeout(() => connectEvents().catch(() => setLive("wait", "reconnecting")), 1000);
  };
  source.addEventListener("disconnect", reconnect);
  source.onerror = reconnect;
}

function onEvent(event, id) {
  state.lastEventId = id || state.lastEventId;
  const data = event.data;
  if (event.type === "task.created" || event.type === "task.updated") {
    const known = state.tasks.get(data.id);
    if (!known || known.version <= data.version) state.tasks.set(data.id, data);  // never go back
  }
  else if (event.type === "task.deleted") state.tasks.delete(data.id);
  else if (event.type === "board.deleted") { showError("This board was deleted."); showBoards(); return; }
  else if (event.type === "member.removed" && state.me && data.user_id === state.me.id) {
    showError("You were removed from this board."); showBoards(); return;
  }
  render();
}

async function connectSocket() {
  const url = `${location.origin.replace(/^http/, "ws")}/realtime/ws?ticket=${await ticket()}`;
  const socket = new WebSocket(url);
  state.socket = socket;
  const channel = `board:${state.board.id}`;
  state.here.set(state.me.id, `${state.me.display_name} (you)`);
  renderHere();
  socket.addEventListener("open", () => {
    socket.send(JSON.stringify({ type: "subscribe", channel }));
    const announce = () => publish({ here: state.me.display_name });
    announce();
    state.presenceTimer = setInterval(announce, 10000);
  });
  socket.addEventListener("message", (message) => {
    const data = JSON.parse(message.data);
    if (data.type === "message" && data.data && data.data.here) {
      state.here.set(data.from, data.data.here);
      renderHere();
    } else if (data.type === "message" && data.data && data.data.chat) {
      const line = document.createElement("li");
      line.textContent = `${state.here.get(data.from) || data.from.slice(0, 8)}: ${data.data.chat}`;
      $("#chat").append(line);
    } else if (data.type === "error" && data.code === "forbidden") {
      $("#chat-form").hidden = true;
    }
  });
}

function renderHere() {
  $("#here").replaceChildren(...[...state.here.values()].map((name) => {
    const item = document.createElement("li"); item.textContent = name; return item; }));
}

function publish(data) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN && state.board) {
    state.socket.send(JSON.stringify({ type: "publish", channel: `board:${state.board.id}`, data }));
  }
}

window.addEventListener("offline", () => {
  if (state.source) { state.source.close(); state.source = null; }
  setLive("wait", "reconnecting");
});
window.addEventListener("online", () => { if (state.board) connectEvents().catch(() => {}); });

// Forms.

function onSubmit(selector, handler) {
  $(selector).addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    const form = event.target;
    try { await handler(new FormData(form), event.submitter); form.reset(); }
    catch (error) { showError(error.message); }
  });
}

onSubmit("#auth-form", async (data, submitter) => {
  const email = data.get("email"), password = data.get("password");
  if (submitter && submitter.value === "register") {
    await api("/auth/register", { method: "POST", json: { email, password } });
  }
  await login(email, password);
});
onSubmit("#board-form", async (data) => {
  const { body } = await api("/api/boards", { method: "POST", json: { name: data.get("name") } });
  await openBoard(body.id);
});
onSubmit("#task-form", async (data) => {
  const { body } = await api(`/api/boards/${state.board.id}/tasks`, { method: "POST",
    json: { title: data.get("title") } });
  state.tasks.set(body.id, body);
  render();
});
onSubmit("#member-form", async (data) => {
  await api(`/api/boards/${state.board.id}/members/${data.get("user_id").trim()}`,
            { method: "PUT", json: { role: data.get("role") } });
});
onSubmit("#chat-form", async (data) => {
  publish({ chat: data.get("text") });
  const line = document.createElement("li");  // the server does not echo to the sender
  line.textContent = `${state.me.display_name}: ${data.get("text")}`;
  $("#chat").append(line);
});
$("#back").addEventListener("click", () => showBoards().catch((e) => showError(e.message)));
$("#logout").addEventListener("click", () => logout());
