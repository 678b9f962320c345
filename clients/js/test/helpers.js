// What the tests share: the stack's address, users, a TCP proxy in front of the gateway, and
// the control endpoint pytest runs (restart a realtime replica, read the event log).
import net from "node:net";
import { after } from "node:test";
import { randomUUID } from "node:crypto";
import WebSocket from "ws";
import { StackClient, StackError } from "../index.js";

export const STACK_URL = process.env.STACK_URL;
export const CONTROL_URL = process.env.STACK_CONTROL_URL;
if (!STACK_URL || !CONTROL_URL) {
  throw new Error("STACK_URL and STACK_CONTROL_URL are set by tests/clients/test_js_client.py");
}
export const PASSWORD = "client password 1";
// Matches HEARTBEAT_SECONDS of the test stack (tests/clients/conftest.py).
export const HEARTBEAT_MS = 1000;

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const clients = [];
const proxies = [];
// Whatever a failed test left running must not keep node (and its reconnect loops) alive.
after(async () => {
  for (const client of clients) for (const subscription of client.live.subscriptions) subscription.close();
  await Promise.all(proxies.map((proxy) => proxy.close().catch(() => {})));
});

export function newClient(baseUrl = STACK_URL, options = {}) {
  const client = new StackClient({ baseUrl, WebSocket, ...options });
  clients.push(client);
  return client;
}

/** The gateway limits /auth/token and /auth/register per address: wait when told to. */
export async function patiently(call) {
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof StackError) || error.status !== 429) throw error;
      await sleep((error.retryAfter || 1) * 1000);
    }
  }
}

/** A new user, logged in on a new client. */
export async function signUp(baseUrl = STACK_URL, options = {}) {
  const client = newClient(baseUrl, options);
  const email = `js-${randomUUID().slice(0, 10)}@example.com`;
  await patiently(() => client.register(email, PASSWORD, "JS tester"));
  const me = await patiently(() => client.login(email, PASSWORD));
  return { client, email, me };
}

export async function waitFor(condition, { timeoutMs = 10_000, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === "function" ? what() : what}`);
    await sleep(25);
  }
}

export async function restartRealtime(replica) {
  const response = await fetch(`${CONTROL_URL}/restart?service=realtime-${replica}`, { method: "POST" });
  if (!response.ok) throw new Error(`restart failed: ${response.status}`);
}

/** The committed events of a channel after `after`, from the database: the truth to compare with. */
export async function eventLog(channel, after) {
  const response = await fetch(`${CONTROL_URL}/events?channel=${channel}&after=${after}`);
  return response.json();
}

// Stall detection at two heartbeats of the stack's 1 s is what the stall tests check; the others
// allow more, so that a test process starved of CPU on a shared machine does not mistake its own
// slowness for a stalled connection.
export const TOLERANT_HEARTBEAT_MS = 5 * HEARTBEAT_MS;

/** Records what a subscription reports. */
export function recorder({ heartbeatMs = TOLERANT_HEARTBEAT_MS } = {}) {
  const record = { events: [], states: [], resets: [], messages: [], errors: [] };
  record.options = {
    onEvent: (event) => record.events.push(event),
    onState: (state, info) => record.states.push({ state, ...info }),
    onReset: (info) => record.resets.push(info),
    onMessage: (message) => record.messages.push(message),
    onError: (error) => record.errors.push(error),
    heartbeatMs,
    backoff: { initialMs: 100, maxMs: 1000 },
  };
  record.reconnects = () => record.states.filter((s) => s.state === "reconnecting" && s.delayMs !== undefined);
  return record;
}

/**
 * A TCP proxy in front of the gateway. `drop()` cuts the live streams (SSE and WebSocket
 * connections) as a gateway restart would; `stall()` stops forwarding on them without closing
 * anything, as a dead NAT entry or a hung middlebox does. New connections are never affected.
 */
const REQUEST_LINE = /^[A-Z]+ \/\S* HTTP\/1\.[01]\r\n/;

export class Proxy {
  constructor(target = STACK_URL) {
    this.target = new URL(target);
    this.pairs = new Set();
  }

  async start() {
    this.server = net.createServer((client) => {
      const upstream = net.connect(Number(this.target.port), this.target.hostname);
      const pair = { client, upstream, stream: false, stalled: false };
      this.pairs.add(pair);
      client.on("data", (chunk) => {
        // Per request: a kept-alive connection whose stream ended may carry an ordinary request
        // next (a token refresh), which no drop may cut, as a gateway restart would not either.
        const head = chunk.toString("latin1", 0, 200);
        if (REQUEST_LINE.test(head)) pair.stream = /^GET \/realtime\/(sse|ws)/.test(head);
        if (!pair.stalled) upstream.write(chunk);
      });
      upstream.on("data", (chunk) => { if (!pair.stalled) client.write(chunk); });
      const end = () => {
        client.destroy();
        upstream.destroy();
        this.pairs.delete(pair);
      };
      client.on("close", end);
      upstream.on("close", end);
      client.on("error", end);
      upstream.on("error", end);
    });
    await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    proxies.push(this);
    return this;
  }

  streams() {
    return [...this.pairs].filter((pair) => pair.stream && !pair.stalled);
  }

  drop() {
    const streams = this.streams();
    for (const pair of streams) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    return streams.length;
  }

  stall() {
    const streams = this.streams();
    for (const pair of streams) pair.stalled = true;
    return streams.length;
  }

  async close() {
    if (!this.server.listening) return;
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** Asserts ids strictly increase and match the log exactly. */
export function idsOf(events) {
  return events.map((event) => event.id);
}
