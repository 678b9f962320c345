// The stack's JavaScript client: one ES module, no dependencies, for browsers and Node.js 20.
// Contracts: docs/contract.md §3 (errors), §4 (auth), §5 (api), §6 (events), §7 (realtime).

const TOKEN_REFRESH_MARGIN_MAX_MS = 60_000;

/** An error answer of the stack (docs/contract.md §3), or a token endpoint error (RFC 6749). */
export class StackError extends Error {
  constructor(status, body, headers) {
    const error = (body && body.error) || (status ? `http_${status}` : "network_error");
    const detail = body ? (body.detail ?? body.error_description ?? null) : null;
    super(describeDetail(detail) || `request failed (${status})`);
    this.name = "StackError";
    this.status = status;
    this.error = error;
    this.detail = detail;
    const retryAfter = headers ? headers.get("Retry-After") : null;
    this.retryAfter = retryAfter !== null && /^\d+$/.test(retryAfter) ? Number(retryAfter) : null;
    this.body = body;
  }
}

function notSignedIn() {
  return new StackError(401, { error: "not_signed_in", detail: "Log in first" });
}

function describeDetail(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
  }
  return "";
}

/** `"3"` for 3, `"3"` for `"3"`, and an ETag as it is. */
function ifMatchHeader(value) {
  if (typeof value === "number") return `"${value}"`;
  return value.startsWith('"') || value.startsWith("W/") ? value : `"${value}"`;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** Calls an application callback; what it throws is reported, never allowed to break a connection. */
function notify(callback, ...args) {
  if (!callback) return;
  try {
    callback(...args);
  } catch (error) {
    queueMicrotask(() => { throw error; });
  }
}

/** A small event emitter: `on(name, listener)` returns a function that removes it. */
class Emitter {
  #listeners = new Map();

  on(name, listener) {
    if (!this.#listeners.has(name)) this.#listeners.set(name, new Set());
    this.#listeners.get(name).add(listener);
    return () => this.#listeners.get(name).delete(listener);
  }

  emit(name, value) {
    for (const listener of [...(this.#listeners.get(name) || [])]) notify(listener, value);
  }
}

export class StackClient extends Emitter {
  #tokens = null;
  #refreshing = null;
  #refreshTimer = null;

  /**
   * @param {{baseUrl?: string, fetch?: typeof fetch, WebSocket?: any}} options
   */
  constructor({ baseUrl = "", fetch: fetchImpl, WebSocket: webSocketImpl } = {}) {
    super();
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.fetch = fetchImpl || globalThis.fetch.bind(globalThis);
    this.WebSocket = webSocketImpl || globalThis.WebSocket;
    this.boards = new Boards(this);
    this.members = new Members(this);
    this.tasks = new Tasks(this);
    this.comments = new Comments(this);
    this.live = new Live(this);
  }

  // Session.

  get signedIn() {
    return this.#tokens !== null;
  }

  /** When the current access token expires (ms since the epoch), or null. */
  get accessTokenExpiresAt() {
    return this.#tokens ? this.#tokens.expiresAt : null;
  }

  async register(email, password, displayName) {
    const json = { email, password };
    if (displayName !== undefined) json.display_name = displayName;
    return this.request("POST", "/auth/register", { json, auth: false });
  }

  async login(email, password) {
    const body = await this.request("POST", "/auth/token", {
      form: { grant_type: "password", username: email, password }, auth: false,
    });
    this.#setTokens(body);
    return this.me();
  }

  // Sign-in through OpenID providers (docs/sign-in.md). In a browser: send the page to the URL
  // that startProviderSignIn or linkProvider returns; the provider sends it back to
  // PUBLIC_URL/#sign-in=CODE, and completeSignIn(CODE) signs this client in.

  /** The configured providers: `[{name, display_name}]`. */
  providers() {
    return this.request("GET", "/auth/oidc/providers", { auth: false });
  }

  /** Where to send the browser to sign in with `provider`. */
  async startProviderSignIn(provider) {
    const path = `/auth/oidc/${encodeURIComponent(provider)}/start`;
    return (await this.request("POST", path, { auth: false })).authorization_url;
  }

  /** Where to send the browser to link `provider` to the signed-in account. */
  async linkProvider(provider) {
    const path = `/auth/oidc/${encodeURIComponent(provider)}/link`;
    return (await this.request("POST", path)).authorization_url;
  }

  /** Exchanges the one-time code from `#sign-in=CODE` for tokens; returns the user. */
  async completeSignIn(code) {
    const body = await this.request("POST", "/auth/token", {
      form: { grant_type: "sign_in_code", code }, auth: false,
    });
    this.#setTokens(body);
    return this.me();
  }

  linkedProviders() {
    return this.request("GET", "/auth/users/me/providers");
  }

  unlinkProvider(provider) {
    return this.request("DELETE", `/auth/users/me/providers/${encodeURIComponent(provider)}`);
  }

  // Passkeys (WebAuthn). The options are JSON for PublicKeyCredential.parseCreationOptionsFromJSON
  // and parseRequestOptionsFromJSON; the credentials go back as their toJSON().

  passkeyRegistrationOptions() {
    return this.request("POST", "/auth/passkeys/register/options");
  }

  registerPasskey(name, credential) {
    return this.request("POST", "/auth/passkeys", { json: { name, credential } });
  }

  passkeySignInOptions() {
    return this.request("POST", "/auth/passkeys/sign-in/options", { auth: false });
  }

  /** Signs in with a passkey assertion; returns the user. */
  async signInWithPasskey(credential) {
    const body = await this.request("POST", "/auth/passkeys/sign-in", {
      json: { credential }, auth: false,
    });
    this.#setTokens(body);
    return this.me();
  }

  passkeys() {
    return this.request("GET", "/auth/users/me/passkeys");
  }

  deletePasskey(passkeyId) {
    return this.request("DELETE", `/auth/users/me/passkeys/${encodeURIComponent(passkeyId)}`);
  }

  async logout() {
    const tokens = this.#tokens;
    this.#clearTokens();
    if (tokens) {
      await this.request("POST", "/auth/logout", {
        json: { refresh_token: tokens.refresh }, auth: false,
      });
    }
  }

  me() {
    return this.request("GET", "/auth/users/me");
  }

  /** The active account with exactly this email (ignoring case): `{id, display_name}`; 404 otherwise. */
  lookupUser(email) {
    return this.request("GET", "/auth/users/lookup" + query({ email }));
  }

  updateMe(changes) {
    const json = {};
    if (changes.displayName !== undefined) json.display_name = changes.displayName;
    if (changes.password !== undefined) json.password = changes.password;
    if (changes.currentPassword !== undefined) json.current_password = changes.currentPassword;
    return this.request("PATCH", "/auth/users/me", { json });
  }

  #setTokens(body) {
    const lifetime = body.expires_in * 1000;
    this.#tokens = {
      access: body.access_token, refresh: body.refresh_token,
      expiresAt: Date.now() + lifetime, lifetime,
    };
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = setTimeout(() => this.#scheduledRefresh(), lifetime - this.#margin());
    // Node.js: a pending refresh must not keep a script alive once its work is done.
    if (this.#refreshTimer && this.#refreshTimer.unref) this.#refreshTimer.unref();
    this.emit("tokens", { expiresAt: this.#tokens.expiresAt });
  }

  #clearTokens() {
    clearTimeout(this.#refreshTimer);
    this.#tokens = null;
  }

  /** Refresh this long before expiry: a minute, or half the lifetime of short-lived tokens. */
  #margin() {
    return Math.min(TOKEN_REFRESH_MARGIN_MAX_MS, this.#tokens.lifetime / 2);
  }

  async #scheduledRefresh() {
    try {
      await this.refresh();
    } catch (error) {
      if (!this.#tokens) return;  // signed out meanwhile
      // Network trouble, 429 or 503: keep the session and try again shortly.
      const retryMs = error instanceof StackError && error.retryAfter ? error.retryAfter * 1000 : 2000;
      this.#refreshTimer = setTimeout(() => this.#scheduledRefresh(), retryMs);
      if (this.#refreshTimer.unref) this.#refreshTimer.unref();
    }
  }

  /**
   * A new token pair. Concurrent callers share one request: a refresh token is spent on use,
   * and presenting it twice would end the session.
   */
  refresh() {
    if (!this.#tokens) return Promise.reject(notSignedIn());
    if (!this.#refreshing) {
      const tokens = this.#tokens;
      this.#refreshing = this.request("POST", "/auth/token", {
        form: { grant_type: "refresh_token", refresh_token: tokens.refresh }, auth: false,
      }).then((body) => {
        if (this.#tokens === tokens) this.#setTokens(body);
      }, (error) => {
        if (error instanceof StackError && error.status === 400 && this.#tokens === tokens) {
          // invalid_grant: the session has ended (logout, password change, reuse detected).
          this.#clearTokens();
          this.emit("signedOut", { reason: error.detail || error.error });
        }
        throw error;
      }).finally(() => { this.#refreshing = null; });
    }
    return this.#refreshing;
  }

  /** An access token valid for at least the refresh margin (refreshed first if need be). */
  async accessToken({ newerThan } = {}) {
    if (!this.#tokens) throw notSignedIn();
    const stale = this.#tokens.expiresAt - Date.now() < this.#margin();
    if (stale || (newerThan !== undefined && this.#tokens.expiresAt <= newerThan)) await this.refresh();
    if (!this.#tokens) throw notSignedIn();  // signed out while refreshing
    return { token: this.#tokens.access, expiresAt: this.#tokens.expiresAt };
  }

  // Requests.

  /**
   * Calls the stack and returns the parsed JSON body (null when there is none). An `ETag`
   * answer is on the result as a non-enumerable `etag`. Errors throw `StackError`.
   */
  async request(method, path, { json, form, headers = {}, auth = true } = {}) {
    const send = async () => {
      const init = { method, headers: { ...headers } };
      let token = null;
      if (auth && this.#tokens) {
        token = (await this.accessToken()).token;
        init.headers.Authorization = `Bearer ${token}`;
      }
      if (json !== undefined) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(json);
      } else if (form !== undefined) {
        init.body = new URLSearchParams(form);
      }
      let response;
      try {
        response = await this.fetch(this.baseUrl + path, init);
      } catch (cause) {
        const error = new StackError(0, { error: "network_error", detail: String(cause && cause.message || cause) });
        error.cause = cause;
        throw error;
      }
      return { response, token };
    };
    let { response, token } = await send();
    if (response.status === 401 && token !== null && this.#tokens) {
      // The token may have been revoked or expired in flight: one refresh, one retry.
      if (this.#tokens.access === token) await this.refresh();
      ({ response } = await send());
    }
    const text = await response.text();
    let body = null;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = { error: `http_${response.status}`, detail: text.slice(0, 200) };
      }
    }
    if (!response.ok) throw new StackError(response.status, body, response.headers);
    const etag = response.headers.get("ETag");
    if (etag && body && typeof body === "object") {
      Object.defineProperty(body, "etag", { value: etag, enumerable: false });
    }
    return body;
  }

  /** Every item of a paged collection, following `next_cursor`. */
  async *paginate(path, params = {}) {
    let cursor = null;
    do {
      const page = await this.request("GET", path + query({ ...params, cursor }));
      yield* page.items;
      cursor = page.next_cursor;
    } while (cursor);
  }

  /** Where WebSockets go: the base URL with ws(s), or the page's own origin. */
  webSocketUrl(path) {
    const base = this.baseUrl || (globalThis.location ? globalThis.location.origin : "");
    return base.replace(/^http/, "ws") + path;
  }
}

class Boards {
  constructor(client) { this.client = client; }
  create(name) { return this.client.request("POST", "/api/boards", { json: { name } }); }
  list({ limit } = {}) { return this.client.paginate("/api/boards", { limit }); }
  page({ limit, cursor } = {}) { return this.client.request("GET", "/api/boards" + query({ limit, cursor })); }
  get(boardId) { return this.client.request("GET", `/api/boards/${boardId}`); }
  update(boardId, changes, { ifMatch } = {}) {
    return this.client.request("PATCH", `/api/boards/${boardId}`, {
      json: changes, headers: ifMatch === undefined ? {} : { "If-Match": ifMatchHeader(ifMatch) },
    });
  }
  delete(boardId, { ifMatch } = {}) {
    return this.client.request("DELETE", `/api/boards/${boardId}`, {
      headers: ifMatch === undefined ? {} : { "If-Match": ifMatchHeader(ifMatch) },
    });
  }
}

class Members {
  constructor(client) { this.client = client; }
  list(boardId) { return this.client.request("GET", `/api/boards/${boardId}/members`); }
  set(boardId, userId, role) {
    return this.client.request("PUT", `/api/boards/${boardId}/members/${userId}`, { json: { role } });
  }
  remove(boardId, userId) {
    return this.client.request("DELETE", `/api/boards/${boardId}/members/${userId}`);
  }
}

function taskBody(fields) {
  const body = {};
  for (const [name, value] of Object.entries(fields)) {
    body[name === "assigneeId" ? "assignee_id" : name] = value;
  }
  return body;
}

class Tasks {
  constructor(client) { this.client = client; }
  create(boardId, fields) {
    return this.client.request("POST", `/api/boards/${boardId}/tasks`, { json: taskBody(fields) });
  }
  list(boardId, { status, assigneeId, limit } = {}) {
    return this.client.paginate(`/api/boards/${boardId}/tasks`, { status, assignee_id: assigneeId, limit });
  }
  page(boardId, { status, assigneeId, limit, cursor } = {}) {
    return this.client.request("GET", `/api/boards/${boardId}/tasks`
      + query({ status, assignee_id: assigneeId, limit, cursor }));
  }
  get(taskId) { return this.client.request("GET", `/api/tasks/${taskId}`); }
  update(taskId, changes, { ifMatch } = {}) {
    return this.client.request("PATCH", `/api/tasks/${taskId}`, {
      json: taskBody(changes), headers: ifMatch === undefined ? {} : { "If-Match": ifMatchHeader(ifMatch) },
    });
  }
  delete(taskId, { ifMatch } = {}) {
    return this.client.request("DELETE", `/api/tasks/${taskId}`, {
      headers: ifMatch === undefined ? {} : { "If-Match": ifMatchHeader(ifMatch) },
    });
  }
}

class Comments {
  constructor(client) { this.client = client; }
  create(taskId, body) {
    return this.client.request("POST", `/api/tasks/${taskId}/comments`, { json: { body } });
  }
  list(taskId, { limit } = {}) { return this.client.paginate(`/api/tasks/${taskId}/comments`, { limit }); }
  page(taskId, { limit, cursor } = {}) {
    return this.client.request("GET", `/api/tasks/${taskId}/comments` + query({ limit, cursor }));
  }
  get(commentId) { return this.client.request("GET", `/api/comments/${commentId}`); }
  update(commentId, body, { ifMatch } = {}) {
    return this.client.request("PATCH", `/api/comments/${commentId}`, {
      json: { body }, headers: ifMatch === undefined ? {} : { "If-Match": ifMatchHeader(ifMatch) },
    });
  }
  delete(commentId, { ifMatch } = {}) {
    return this.client.request("DELETE", `/api/comments/${commentId}`, {
      headers: ifMatch === undefined ? {} : { "If-Match": ifMatchHeader(ifMatch) },
    });
  }
}

// Live subscriptions (docs/contract.md §7).

// What a close code asks of the client. SSE reports the same codes in its `disconnect` event;
// HTTP refusals of the stream map onto them (401 → 4401, 403 → 4403).
const STOP_CODES = new Set([1008, 1009, 4400, 4401, 4403]);
const REFRESH_CODES = new Set([4001]);
const RESUME_NOW_CODES = new Set([1012, 4002]);

const DEFAULT_BACKOFF = { initialMs: 500, maxMs: 20_000 };

class Live {
  constructor(client) {
    this.client = client;
    this.subscriptions = new Set();
  }

  /** A ticket for one connection (docs/contract.md §7): valid once, for 60 s, on any replica. */
  async ticket() {
    return (await this.client.request("POST", "/realtime/tickets")).ticket;
  }

  subscribe(channels, options = {}) {
    const subscription = new Subscription(this, [].concat(channels), options);
    this.subscriptions.add(subscription);
    subscription.start();
    return subscription;
  }

  /** An ephemeral message on a channel, over a live WebSocket subscription to it. */
  publish(channel, data) {
    for (const subscription of this.subscriptions) {
      if (subscription.transport === "ws" && subscription.channels.includes(channel)
          && subscription.state === "live") {
        subscription.publish(channel, data);
        return;
      }
    }
    throw new StackError(0, { error: "not_connected", detail: `no live WebSocket subscription to ${channel}` });
  }
}

/** One logical subscription: it outlives its connections, resuming each from the last event. */
class Subscription {
  #cursor = null;                 // SSE: the last event id delivered (ids are global)
  #channelCursors = new Map();    // WS: per channel, as each channel replays on its own
  #connection = null;
  #closed = false;
  #wake = null;
  #presence = null;
  #settleReady = null;
  connections = 0;

  constructor(live, channels, options) {
    this.live = live;
    this.client = live.client;
    this.channels = channels;
    this.transport = options.transport || "sse";
    if (this.transport !== "sse" && this.transport !== "ws") throw new TypeError("transport is sse or ws");
    if (this.transport === "ws" && !this.client.WebSocket) {
      throw new TypeError("no WebSocket implementation: pass one to StackClient (in Node.js 20, the ws package's)");
    }
    this.options = options;
    this.heartbeatMs = options.heartbeatMs || 15_000;
    this.backoff = { ...DEFAULT_BACKOFF, ...(options.backoff || {}) };
    this.state = "connecting";
    if (options.lastEventId !== undefined && options.lastEventId !== null) {
      const start = Number(options.lastEventId);
      this.#cursor = start;
      for (const channel of channels) this.#channelCursors.set(channel, start);
    }
    if (options.presence) this.#presence = new Presence(this, options.presence);
    /** Settles once: when the subscription first goes live, or when it stops before that. */
    this.ready = new Promise((resolve, reject) => { this.#settleReady = { resolve, reject }; });
    this.ready.catch(() => {});  // a subscription nobody awaits must not report a rejection
  }

  /**
   * Where to resume from. For WebSocket subscriptions to several channels this is the lowest
   * channel position (safe: nothing before it is missing; later events of busier channels may
   * come again to a new subscription started from it).
   */
  get lastEventId() {
    if (this.transport === "sse") return this.#cursor;
    const positions = this.channels.map((channel) => this.#channelCursors.get(channel));
    return positions.some((p) => p === undefined || p === null) ? null : Math.min(...positions);
  }

  close() {
    if (this.#closed) return;
    if (this.#presence) this.#presence.leave();
    this.#closed = true;
    this.live.subscriptions.delete(this);
    if (this.#connection) this.#connection.abort({ code: 1000, reason: "closed by the client" });
    if (this.#wake) this.#wake();
    this.#setState("stopped", { code: 1000, reason: "closed by the client" });
  }

  publish(channel, data) {
    if (this.transport !== "ws") throw new TypeError("publishing needs a WebSocket subscription");
    if (!this.#connection || !this.#connection.live) {
      throw new StackError(0, { error: "not_connected", detail: "the subscription is not live" });
    }
    this.#connection.send({ type: "publish", channel, data });
  }

  get presence() {
    return this.#presence;
  }

  #setState(state, info = {}) {
    if (this.state === "stopped") return;
    this.state = state;
    if (state === "live") this.#settleReady.resolve(this);
    if (state === "stopped") {
      const error = new StackError(0, { error: "subscription_stopped", detail: info.reason });
      error.code = info.code;
      this.#settleReady.reject(error);
    }
    notify(this.options.onState, state, info);
  }

  async start() {
    let attempt = 0;
    const offline = () => this.#connection && this.#connection.abort({ code: 0, reason: "offline" });
    const online = () => this.#wake && this.#wake();
    const browser = typeof globalThis.addEventListener === "function" && typeof navigator !== "undefined";
    if (browser) {
      globalThis.addEventListener("offline", offline);
      globalThis.addEventListener("online", online);
    }
    const stopSignedOut = this.client.on("signedOut", ({ reason }) => {
      this.#stop({ code: 4401, reason: `signed out: ${reason}` });
    });
    try {
      while (!this.#closed) {
        // Connecting until the first connection is up or fails; reconnecting from then on.
        this.#setState(this.state === "connecting" ? "connecting" : "reconnecting", { attempt });
        const ended = await this.#connectOnce();
        if (this.#closed) return;
        if (ended.wasLive) attempt = 0;
        if (STOP_CODES.has(ended.code)) {
          this.#stop({ code: ended.code, reason: ended.reason, error: ended.error });
          return;
        }
        let delay;
        if (REFRESH_CODES.has(ended.code)) {
          try {
            await this.client.accessToken({ newerThan: ended.tokenExpiresAt });
          } catch (error) {
            // Signed out: the next attempt stops with 4401 (unless signedOut has stopped us).
            if (!this.client.signedIn) continue;
          }
          delay = Math.random() * 250;
        } else if (RESUME_NOW_CODES.has(ended.code)) {
          // Everyone on a restarting replica reconnects at once: spread them out a little.
          delay = Math.random() * Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** attempt);
        } else {
          const ceiling = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** attempt);
          delay = ceiling / 2 + Math.random() * ceiling / 2;
          if (ended.retryAfter) delay = Math.max(delay, ended.retryAfter * 1000);
        }
        attempt += 1;
        this.#setState("reconnecting", { ...ended, attempt, delayMs: Math.round(delay) });
        const offlineNow = browser && navigator.onLine === false;
        await new Promise((resolve) => {
          this.#wake = resolve;
          if (!offlineNow) setTimeout(resolve, delay);
        });
        this.#wake = null;
      }
    } finally {
      stopSignedOut();
      if (browser) {
        globalThis.removeEventListener("offline", offline);
        globalThis.removeEventListener("online", online);
      }
    }
  }

  stopFromConnection(info) {
    this.#stop(info);
  }

  #stop(info) {
    if (this.#closed) return;
    this.#closed = true;
    this.live.subscriptions.delete(this);
    if (this.#connection) this.#connection.abort({ code: info.code, reason: info.reason });
    if (this.#wake) this.#wake();
    this.#setState("stopped", info);
  }

  /** One connection, from ticket to end: resolves `{code, reason, wasLive, ...}`, never throws. */
  async #connectOnce() {
    let ticket, tokenExpiresAt;
    try {
      ({ expiresAt: tokenExpiresAt } = await this.client.accessToken());
      ticket = await this.live.ticket();
    } catch (error) {
      if (error instanceof StackError && error.status === 401 && !this.client.signedIn) {
        return { code: 4401, reason: "signed out" };
      }
      return { code: 0, reason: `no ticket: ${error.message}`, error, retryAfter: error.retryAfter };
    }
    if (this.#closed) return { code: 1000, reason: "closed" };
    const Connection = this.transport === "sse" ? SseConnection : WsConnection;
    this.connections += 1;
    const connection = new Connection(this, ticket);
    this.#connection = connection;
    const ended = await connection.run();
    this.#connection = null;
    return { ...ended, wasLive: connection.wasLive, tokenExpiresAt };
  }

  // Called by connections.

  cursorFor(channel) {
    return this.transport === "sse" ? this.#cursor : this.#channelCursors.get(channel) ?? null;
  }

  wentLive() {
    this.#setState("live");
    if (this.#presence) this.#presence.announce();
  }

  /** Delivers an event unless it was already delivered (a replay overlapping what came live). */
  deliver(event) {
    if (this.transport === "sse") {
      if (this.#cursor !== null && event.id <= this.#cursor) return;
      this.#cursor = event.id;
    } else {
      const cursor = this.#channelCursors.get(event.channel);
      if (cursor !== undefined && cursor !== null && event.id <= cursor) return;
      this.#channelCursors.set(event.channel, event.id);
    }
    notify(this.options.onEvent, event);
  }

  /** SSE `ready`: the stream is live from `position`; nothing at or below it is missing. */
  positionReached(position) {
    if (this.#cursor === null || position > this.#cursor) this.#cursor = position;
  }

  /**
   * WebSocket `subscribed` for a channel with no position: the server follows it from
   * `position` on. (A channel with a position keeps it: its replay comes next.)
   */
  channelPositionReached(channel, position) {
    const cursor = this.#channelCursors.get(channel);
    if ((cursor === undefined || cursor === null) && Number.isInteger(position)) {
      this.#channelCursors.set(channel, position);
    }
  }

  reset(info) {
    // The old position means nothing now (it may even be ahead of the log): start afresh.
    if (this.transport === "sse") this.#cursor = null;
    else this.#channelCursors.set(info.channel, null);
    notify(this.options.onReset, info);
  }

  message(message) {
    if (this.#presence && this.#presence.handle(message)) return;
    notify(this.options.onMessage, message);
  }

  serverError(error) {
    notify(this.options.onError, error);
  }

  send(message) {
    if (this.#connection && this.#connection.live) this.#connection.send(message);
  }
}

/** Stall detection: no byte for twice the heartbeat interval ends the connection. */
class Watchdog {
  constructor(ms, onStall) {
    this.ms = ms;
    this.onStall = onStall;
    this.timer = null;
    this.kick();
  }
  kick() {
    clearTimeout(this.timer);
    this.timer = setTimeout(this.onStall, this.ms);
  }
  stop() { clearTimeout(this.timer); }
}

class SseConnection {
  constructor(subscription, ticket) {
    this.subscription = subscription;
    this.ticket = ticket;
    this.controller = new AbortController();
    this.live = false;
    this.wasLive = false;
    this.ending = null;
  }

  abort(ending) {
    this.ending = this.ending || ending;
    this.controller.abort();
  }

  async run() {
    const sub = this.subscription;
    const client = sub.client;
    const params = { channels: sub.channels.join(","), ticket: this.ticket };
    const headers = { Accept: "text/event-stream" };
    const cursor = sub.cursorFor(null);
    if (cursor !== null) headers["Last-Event-ID"] = String(cursor);
    const watchdog = new Watchdog(2 * sub.heartbeatMs, () => this.abort({ code: 0, reason: "stalled: no heartbeat" }));
    try {
      const response = await client.fetch(`${client.baseUrl}/realtime/sse${query(params)}`, {
        headers, signal: this.controller.signal, cache: "no-store",
      });
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        const error = new StackError(response.status, body, response.headers);
        const code = { 401: 4401, 403: 4403, 422: 4400 }[response.status] || 0;
        return { code, reason: error.message, error, retryAfter: error.retryAfter };
      }
      watchdog.kick();
      const reader = response.body.getReader();
      const parser = new SseParser((frame) => this.#frame(frame));
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        watchdog.kick();
        parser.push(decoder.decode(value, { stream: true }));
        if (this.ending) break;
      }
      if (this.ending) return this.ending;
      return { code: 0, reason: "the stream ended" };
    } catch (error) {
      if (this.ending) return this.ending;
      return { code: 0, reason: `connection lost: ${error.message}`, error };
    } finally {
      watchdog.stop();
      this.live = false;
      this.controller.abort();
    }
  }

  #frame({ event, data, id }) {
    const sub = this.subscription;
    if (event === "ready") {
      sub.positionReached(JSON.parse(data).last_event_id);
      this.live = this.wasLive = true;
      sub.wentLive();
    } else if (event === "reset") {
      sub.reset({ ...JSON.parse(data), channels: sub.channels });
    } else if (event === "disconnect") {
      const { code, reason } = JSON.parse(data);
      this.ending = { code, reason };
    } else if (id !== null && id !== "") {
      const body = JSON.parse(data);
      sub.deliver(body);
    }
  }
}

/** The text/event-stream format (the HTML standard's parsing rules, without `retry`). */
export class SseParser {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.buffer = "";
    this.reset();
  }
  reset() {
    this.event = "";
    this.data = [];
    this.id = null;
  }
  push(text) {
    this.buffer += text;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      // A lone \r at the end may be the first half of \r\n: wait for more.
      if (!match || (match[0] === "\r" && match.index === this.buffer.length - 1)) return;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      this.#line(line);
    }
  }
  #line(line) {
    if (line === "") {
      if (this.data.length || this.event) {
        this.onFrame({ event: this.event || "message", data: this.data.join("\n"), id: this.id });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id") this.id = value;
  }
}

class WsConnection {
  constructor(subscription, ticket) {
    this.subscription = subscription;
    this.ticket = ticket;
    this.live = false;
    this.wasLive = false;
    this.ending = null;
    this.finish = null;
    this.socket = null;
    this.pending = new Set(subscription.channels);
    this.lastSubscribed = null;
    this.unpositioned = new Set();
  }

  send(message) {
    this.socket.send(JSON.stringify(message));
  }

  abort(ending) {
    if (!this.finish) {
      this.ending = this.ending || ending;
      return;
    }
    try {
      // A stalled socket never completes the closing handshake: do not wait for it.
      if (ending.code !== 1000 && typeof this.socket.terminate === "function") this.socket.terminate();
      else this.socket.close(1000);
    } catch { /* already closing */ }
    this.finish(ending);
  }

  run() {
    const sub = this.subscription;
    const client = sub.client;
    const WebSocketImpl = client.WebSocket;
    return new Promise((resolve) => {
      let heartbeat = null;
      let watchdog = null;
      let stopTokens = null;
      let tokenExpiresAt = client.accessTokenExpiresAt;
      this.finish = (ending) => {
        if (!this.finish) return;
        this.finish = null;
        clearInterval(heartbeat);
        if (watchdog) watchdog.stop();
        if (stopTokens) stopTokens();
        this.live = false;
        // No-ops rather than null: the ws package throws on an error event nobody listens to.
        for (const name of ["onopen", "onmessage", "onclose", "onerror"]) this.socket[name] = () => {};
        resolve(ending);
      };
      if (this.ending) {
        this.finish(this.ending);
        return;
      }
      const socket = new WebSocketImpl(client.webSocketUrl(`/realtime/ws${query({ ticket: this.ticket })}`));
      this.socket = socket;
      watchdog = new Watchdog(2 * sub.heartbeatMs, () => this.abort({ code: 0, reason: "stalled: no pong" }));
      const reauthenticate = async () => {
        try {
          const { token, expiresAt } = await client.accessToken();
          if (expiresAt > tokenExpiresAt && this.finish) {
            tokenExpiresAt = expiresAt;
            this.send({ type: "auth", token });
          }
        } catch { /* the 4001 close or signedOut handles it */ }
      };
      socket.onopen = () => {
        watchdog.kick();
        heartbeat = setInterval(() => this.send({ type: "ping" }), sub.heartbeatMs);
        // A refreshed token goes to the server before the connection's one expires.
        stopTokens = client.on("tokens", reauthenticate);
        for (const channel of sub.channels) {
          const message = { type: "subscribe", channel };
          const cursor = sub.cursorFor(channel);
          if (cursor !== null) message.last_event_id = cursor;
          else if (sub.connections > 1) this.unpositioned.add(channel);
          this.send(message);
        }
      };
      socket.onmessage = (message) => {
        watchdog.kick();
        this.#message(JSON.parse(message.data), reauthenticate);
      };
      socket.onclose = (event) => {
        this.finish(this.ending || { code: event.code, reason: event.reason || "connection closed" });
      };
      socket.onerror = () => { /* onclose follows */ };
    });
  }

  #message(message, reauthenticate) {
    const sub = this.subscription;
    switch (message.type) {
      case "event":
        sub.deliver({
          id: message.id, channel: message.channel, type: message.event, data: message.data,
          actor_id: message.actor_id, created_at: message.created_at,
        });
        break;
      case "subscribed":
        this.pending.delete(message.channel);
        this.lastSubscribed = message.channel;
        if (this.unpositioned.has(message.channel)) {
          // Subscribed again with no position (no event had come before the connection
          // dropped): whatever was written meanwhile cannot be replayed. Say so.
          sub.reset({ channel: message.channel, detail: "resumed without a position" });
        }
        sub.channelPositionReached(message.channel, message.last_event_id);
        if (this.pending.size === 0 && !this.live) {
          this.live = this.wasLive = true;
          sub.wentLive();
        }
        break;
      case "message":
        sub.message({ channel: message.channel, from: message.from, data: message.data });
        break;
      case "unsubscribed":
        // Access ended (removed from the board, board deleted): as SSE does, stop and say so.
        if (message.reason === "forbidden") {
          sub.stopFromConnection({ code: 4403, reason: `access to ${message.channel} ended` });
        }
        break;
      case "token_expiring":
        reauthenticate();
        break;
      case "error":
        if (message.code === "reset") sub.reset({ channel: this.lastSubscribed, detail: message.detail });
        else sub.serverError({ code: message.code, detail: message.detail });
        break;
      default:
        break;
    }
  }
}

/**
 * Who else is on a channel: each member announces itself (an ephemeral message) when it goes
 * live and every `intervalMs`; one not heard from for three intervals has left.
 */
class Presence {
  constructor(subscription, { channel, info, intervalMs = 10_000, onChange }) {
    this.subscription = subscription;
    this.channel = channel || subscription.channels[0];
    this.info = info;
    this.intervalMs = intervalMs;
    this.onChange = onChange;
    this.members = new Map();
    this.timer = null;
  }

  announce() {
    this.subscription.send({ type: "publish", channel: this.channel, data: { presence: this.info } });
    if (this.timer === null) {
      this.timer = setInterval(() => {
        this.subscription.send({ type: "publish", channel: this.channel, data: { presence: this.info } });
        this.#prune();
      }, this.intervalMs);
    }
  }

  leave() {
    clearInterval(this.timer);
    this.subscription.send({ type: "publish", channel: this.channel, data: { presence: null } });
  }

  /** True when the message was a presence announcement (and so is not the application's). */
  handle(message) {
    const data = message.data;
    if (message.channel !== this.channel || !data || typeof data !== "object" || !("presence" in data)) {
      return false;
    }
    if (data.presence === null) {
      if (this.members.delete(message.from)) this.#changed();
      return true;
    }
    const isNew = !this.members.has(message.from);
    this.members.set(message.from, { info: data.presence, seenAt: Date.now() });
    if (isNew) {
      // Answer a newcomer at once rather than at the next interval.
      this.subscription.send({ type: "publish", channel: this.channel, data: { presence: this.info } });
      this.#changed();
    }
    return true;
  }

  #prune() {
    const before = this.members.size;
    for (const [user, member] of this.members) {
      if (Date.now() - member.seenAt > 3 * this.intervalMs) this.members.delete(user);
    }
    if (this.members.size !== before) this.#changed();
  }

  #changed() {
    notify(this.onChange, new Map([...this.members].map(([user, m]) => [user, m.info])));
  }
}
