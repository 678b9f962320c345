// Types of the stack's JavaScript client (hand-written; index.js is the implementation).

/** An error answer of the stack: `{error, detail}` (docs/contract.md §3) or a token endpoint's RFC 6749 body. */
export class StackError extends Error {
  /** HTTP status; 0 when no answer came (network error, not connected). */
  readonly status: number;
  /** The machine code: `board_not_found`, `precondition_failed`, `invalid_grant`, ... */
  readonly error: string;
  /** A message, or the list of validation errors naming the fields (422). */
  readonly detail: string | ValidationIssue[] | null;
  /** Seconds to wait, from `Retry-After` (429, 503). */
  readonly retryAfter: number | null;
  readonly body: unknown;
}

export interface ValidationIssue {
  loc: (string | number)[];
  msg: string;
  type: string;
}

export interface User {
  id: string;
  email: string;
  display_name: string;
  created_at: string;
}

/** An OpenID provider configured on the stack. */
export interface Provider {
  name: string;
  display_name: string;
}

/** A provider's account linked to the signed-in user's. */
export interface LinkedProvider {
  provider: string;
  display_name: string;
  email: string | null;
  linked_at: string;
}

export interface Passkey {
  id: string;
  name: string;
  created_at: string;
  last_used_at: string | null;
}

export type Role = "owner" | "editor" | "viewer";
export type TaskStatus = "todo" | "doing" | "done";

export interface Board {
  id: string;
  name: string;
  created_at: string;
  updated_at: string;
  version: number;
  role: Role;
}

export interface Member {
  user_id: string;
  role: Role;
  added_at: string;
}

export interface Task {
  id: string;
  board_id: string;
  title: string;
  description: string | null;
  status: TaskStatus;
  assignee_id: string | null;
  created_by: string;
  created_at: string;
  updated_at: string;
  version: number;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

/** A response body; `etag` (not enumerable) when the answer had an `ETag`. */
export type WithETag<T> = T & { readonly etag?: string };

/** A version number, or an ETag as the server sent it (`"3"`). */
export type IfMatch = number | string;

export interface TaskFields {
  title?: string;
  description?: string | null;
  status?: TaskStatus;
  assigneeId?: string | null;
}

export interface StackClientOptions {
  /** The gateway, e.g. `http://127.0.0.1:8080`; in a browser, empty for the page's own origin. */
  baseUrl?: string;
  fetch?: typeof fetch;
  /** A WebSocket class: the browser's by default; in Node.js 20 pass one (the `ws` package). */
  WebSocket?: unknown;
}

export interface RequestOptions {
  json?: unknown;
  form?: Record<string, string>;
  headers?: Record<string, string>;
  /** Send the access token (default true when signed in). */
  auth?: boolean;
}

export interface StackClientEvents {
  /** A new access token (login or refresh). */
  tokens: { expiresAt: number };
  /** The session ended: a refresh was refused (logout elsewhere, password change, reuse). */
  signedOut: { reason: string };
}

export class StackClient {
  constructor(options?: StackClientOptions);
  readonly baseUrl: string;
  readonly signedIn: boolean;
  readonly accessTokenExpiresAt: number | null;
  readonly boards: Boards;
  readonly members: Members;
  readonly tasks: Tasks;
  readonly comments: Comments;
  readonly live: Live;

  on<K extends keyof StackClientEvents>(name: K, listener: (value: StackClientEvents[K]) => void): () => void;

  register(email: string, password: string, displayName?: string): Promise<User>;
  /** Logs in and returns the user; tokens stay in memory and are refreshed before they expire. */
  login(email: string, password: string): Promise<User>;
  logout(): Promise<void>;
  /** The OpenID providers one can sign in with (no sign-in needed). */
  providers(): Promise<Provider[]>;
  /** The provider's authorization URL: send the browser there to sign in. */
  startProviderSignIn(provider: string): Promise<string>;
  /** Like `startProviderSignIn`, to link the provider to the signed-in account. */
  linkProvider(provider: string): Promise<string>;
  /** Signs in with the one-time code the provider's redirect put in `#sign-in=CODE`. */
  completeSignIn(code: string): Promise<User>;
  linkedProviders(): Promise<LinkedProvider[]>;
  /** Refused (409 `last_sign_in_method`) when it is the account's only way to sign in. */
  unlinkProvider(provider: string): Promise<null>;
  /** Options for `PublicKeyCredential.parseCreationOptionsFromJSON` (signed in). */
  passkeyRegistrationOptions(): Promise<Record<string, unknown>>;
  /** Registers the created credential (its `toJSON()`) under `name`. */
  registerPasskey(name: string, credential: unknown): Promise<Passkey>;
  /** Options for `PublicKeyCredential.parseRequestOptionsFromJSON`. */
  passkeySignInOptions(): Promise<Record<string, unknown>>;
  /** Signs in with the assertion (its `toJSON()`); returns the user. */
  signInWithPasskey(credential: unknown): Promise<User>;
  passkeys(): Promise<Passkey[]>;
  /** Refused (409 `last_sign_in_method`) when it is the account's only way to sign in. */
  deletePasskey(passkeyId: string): Promise<null>;
  me(): Promise<User>;
  /** The active account with exactly this email (ignoring case); a 404 StackError otherwise. */
  lookupUser(email: string): Promise<{ id: string; display_name: string }>;
  updateMe(changes: { displayName?: string; password?: string; currentPassword?: string }): Promise<User>;
  /** A new token pair now (concurrent calls share one request). */
  refresh(): Promise<void>;
  /** The current access token, refreshed first when close to expiry or not newer than `newerThan`. */
  accessToken(options?: { newerThan?: number }): Promise<{ token: string; expiresAt: number }>;

  request<T = unknown>(method: string, path: string, options?: RequestOptions): Promise<WithETag<T>>;
  paginate<T = unknown>(path: string, params?: Record<string, string | number | undefined>): AsyncIterableIterator<T>;
}

export interface Boards {
  create(name: string): Promise<WithETag<Board>>;
  /** Every board the user is a member of, page after page. */
  list(options?: { limit?: number }): AsyncIterableIterator<Board>;
  page(options?: { limit?: number; cursor?: string }): Promise<Page<Board>>;
  get(boardId: string): Promise<WithETag<Board>>;
  update(boardId: string, changes: { name?: string }, options?: { ifMatch?: IfMatch }): Promise<WithETag<Board>>;
  delete(boardId: string, options?: { ifMatch?: IfMatch }): Promise<null>;
}

export interface Members {
  list(boardId: string): Promise<Member[]>;
  set(boardId: string, userId: string, role: Role): Promise<Member>;
  remove(boardId: string, userId: string): Promise<null>;
}

export interface Comment {
  id: string;
  task_id: string;
  board_id: string;
  author_id: string;
  body: string;
  created_at: string;
  updated_at: string;
  version: number;
}

/** Any member may comment; the author edits; the author or a board owner deletes. */
export interface Comments {
  create(taskId: string, body: string): Promise<WithETag<Comment>>;
  /** Newest first. */
  list(taskId: string, options?: { limit?: number }): AsyncIterableIterator<Comment>;
  page(taskId: string, options?: { limit?: number; cursor?: string }): Promise<Page<Comment>>;
  get(commentId: string): Promise<WithETag<Comment>>;
  update(commentId: string, body: string, options?: { ifMatch?: IfMatch }): Promise<WithETag<Comment>>;
  delete(commentId: string, options?: { ifMatch?: IfMatch }): Promise<null>;
}

export interface TaskFilter {
  status?: TaskStatus;
  assigneeId?: string;
  limit?: number;
}

export interface Tasks {
  create(boardId: string, fields: TaskFields & { title: string }): Promise<WithETag<Task>>;
  list(boardId: string, filter?: TaskFilter): AsyncIterableIterator<Task>;
  page(boardId: string, filter?: TaskFilter & { cursor?: string }): Promise<Page<Task>>;
  get(taskId: string): Promise<WithETag<Task>>;
  update(taskId: string, changes: TaskFields, options?: { ifMatch?: IfMatch }): Promise<WithETag<Task>>;
  delete(taskId: string, options?: { ifMatch?: IfMatch }): Promise<null>;
}

/** An event of the log (docs/contract.md §6), the same on both transports. */
export interface StackEvent<D = Record<string, unknown>> {
  id: number;
  channel: string;
  type: string;
  data: D;
  actor_id: string;
  created_at: string;
}

export type LiveState = "connecting" | "live" | "reconnecting" | "stopped";

export interface LiveStateInfo {
  /** The close code that ended the last connection (docs/contract.md §7); 0 for a network failure or stall. */
  code?: number;
  reason?: string;
  error?: unknown;
  attempt?: number;
  /** Set on `reconnecting`: how long until the next attempt. */
  delayMs?: number;
}

export interface EphemeralMessage {
  channel: string;
  from: string;
  data: unknown;
}

export interface PresenceOptions<I = unknown> {
  /** What others see of this member. */
  info: I;
  /** Defaults to the subscription's first channel. */
  channel?: string;
  /** Announce this often (default 10 s); a member silent for three intervals has left. */
  intervalMs?: number;
  onChange?: (members: Map<string, I>) => void;
}

export interface SubscribeOptions {
  transport?: "sse" | "ws";
  /** Resume after this event id. Without it the subscription starts from now. */
  lastEventId?: number | string | null;
  /** Each event once, in id order (per channel on WebSocket, across channels on SSE). */
  onEvent?: (event: StackEvent) => void;
  /** The position could not be resumed (older than retention, or unknown): refetch state. */
  onReset?: (info: { channel?: string; channels?: string[]; detail?: string; reason?: string }) => void;
  onState?: (state: LiveState, info: LiveStateInfo) => void;
  /** Ephemeral messages (WebSocket only). */
  onMessage?: (message: EphemeralMessage) => void;
  /** `error` messages of the WebSocket protocol, e.g. `forbidden` on publish. */
  onError?: (error: { code: string; detail: string }) => void;
  /** The server's heartbeat interval (SSE) or the ping interval (WebSocket); default 15 s. A
   * connection silent for twice this long is replaced. */
  heartbeatMs?: number;
  backoff?: { initialMs?: number; maxMs?: number };
  /** Presence over this (WebSocket) subscription. */
  presence?: PresenceOptions;
}

export interface Presence<I = unknown> {
  readonly channel: string;
  readonly members: Map<string, { info: I; seenAt: number }>;
}

export interface Subscription {
  readonly channels: string[];
  readonly transport: "sse" | "ws";
  readonly state: LiveState;
  /** Where a new subscription would resume from without missing anything. */
  readonly lastEventId: number | null;
  readonly presence: Presence | null;
  /** Resolves when the subscription first goes live (nothing written after that is missed);
   * rejects with a StackError (`code`: the close code) if it stops before. */
  readonly ready: Promise<Subscription>;
  /** An ephemeral message (WebSocket, live only; owners and editors; at most 4 KiB). */
  publish(channel: string, data: unknown): void;
  close(): void;
}

export interface Live {
  /** A one-time ticket for a realtime connection. */
  ticket(): Promise<string>;
  subscribe(channels: string | string[], options?: SubscribeOptions): Subscription;
  /** Publishes over a live WebSocket subscription to the channel; throws when there is none. */
  publish(channel: string, data: unknown): void;
}

/** The text/event-stream parser the SSE transport uses. */
export class SseParser {
  constructor(onFrame: (frame: { event: string; data: string; id: string | null }) => void);
  push(text: string): void;
}
