/**
 * fleetcast's browser SDK: subscribe to channels over one WebSocket or over Server-Sent Events, resume from the
 * last event id on every reconnect, refresh tokens before they expire, publish over the WebSocket.
 *
 * One dependency-free ES module. The wire protocol it speaks is `docs/protocol.md` of the fleetcast repository.
 *
 * ```js
 * import { Fleetcast } from "/v1/client.js";
 * const fc = new Fleetcast("https://rt.example.com", { transport: "ws", token: () => fetchToken() });
 * const sub = fc.subscribe("chat:room-42", { onEvent(e) {}, onGap(g) {}, since: savedId });
 * await fc.publish("chat:room-42", { text: "hi" });
 * sub.lastId; sub.unsubscribe(); fc.close(); fc.on("state", (s) => {});
 * fc.subscribe("chat:room-42", { onPresence(p) {} }); await fc.presence("chat:room-42"); // channels with presence
 * ```
 */

export const VERSION = "0.1.0";

export type Transport = "ws" | "sse";
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";
/** A token, or a function that fetches a fresh one (called on every (re)connect and before each expiry). */
export type TokenSource = string | (() => string | Promise<string>);

export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export interface FleetcastEvent {
  channel: string;
  id: string;
  type: string;
  data: unknown;
}

/** History after `requested` was trimmed: delivery continues from `earliest` (the oldest retained event). */
export interface GapInfo {
  channel: string;
  requested: string;
  earliest: string | null;
}

/** A client joined or left a channel with presence joins and leaves (`docs/protocol.md`, "Presence"). */
export interface PresenceChange {
  kind: "join" | "leave";
  channel: string;
  client: string;
  sub: string | null;
  info: unknown;
}

export interface PresentClient {
  client: string;
  sub: string | null;
  info: unknown;
  since: number;
}

export interface StateChange {
  state: ConnectionState;
  /** Why the connection ended (the close reason, or the server's `reconnect` reason). */
  reason?: string;
  /** The close code (WebSocket), or the close code an SSE answer maps to (401 -> 4001, 403 -> 4003...). */
  code?: number;
  /** When state is "reconnecting": the delay before the next attempt. */
  retryInMs?: number;
  /** The channel, when only one SSE stream changed. */
  channel?: string;
}

export interface SubscribeOptions {
  onEvent?: (event: FleetcastEvent) => void;
  onGap?: (gap: GapInfo) => void;
  /** The subscription ended for good: refused (forbidden, invalid channel) or no longer granted by the token. */
  onError?: (error: FleetcastError) => void;
  /** Resume after this id. Default: the id saved in `storage`, else only new events. */
  since?: string | null;
  /** Joins and leaves of the channel (where its policy announces them). Apply them as set operations. */
  onPresence?: (change: PresenceChange) => void;
}

export interface Subscription {
  readonly channel: string;
  /** The id of the last event delivered (or the `since` it started from). */
  readonly lastId: string | null;
  unsubscribe(): void;
}

export interface PublishOptions {
  type?: string;
}

/** The minimal WebSocket this SDK uses (the browser's, or any object with the same members). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketFactory = (url: string, protocol: string) => WebSocketLike;

/** The clock the SDK schedules with: replace it in tests. */
export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  random(): number;
}

/** Where the SDK gets its I/O; every member defaults to the browser's global. For tests and other runtimes. */
export interface Environment {
  webSocket?: WebSocketFactory;
  fetch?: typeof fetch;
  clock?: Partial<Clock>;
}

export interface FleetcastOptions {
  /** "ws" (default): one WebSocket for every channel. "sse": one event stream per channel; publish over HTTP. */
  transport?: Transport;
  token?: TokenSource;
  /** Persist each channel's last id here (for example `sessionStorage`), so a reload resumes. */
  storage?: StorageLike;
  /** Prefix of the storage keys (default "fleetcast:lastId:"). */
  storagePrefix?: string;
  /** This page's presence id, sent on every (re)connect so a reconnect keeps its entry (default: a random id). */
  clientId?: string;
  env?: Environment;
}

export class FleetcastError extends Error {
  /** A close code (4001, 4003...) or an error code of the protocol ("forbidden", "invalid_channel"...). */
  readonly code: number | string;
  readonly status: number | undefined;

  constructor(message: string, code: number | string, status?: number) {
    super(message);
    this.name = "FleetcastError";
    this.code = code;
    this.status = status;
  }
}

export const WS_PROTOCOL = "fleetcast.v1";
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_CAP_MS = 10_000;
const PUBLISH_TIMEOUT_MS = 10_000;
const MAX_WAITING_PUBLISHES = 1000;
const REFRESH_LEAD_MAX_MS = 60_000;
/** Close codes after which reconnecting cannot help (docs/protocol.md, "Disconnects"); 4001 is handled apart. */
const TERMINAL_CODES = new Set([1000, 1009, 4003, 4004, 4400]);
/** HTTP answers of the SSE endpoint mapped onto the same close codes. */
const SSE_STATUS_CODES: Record<number, number> = { 400: 4400, 401: 4001, 403: 4003, 404: 4004 };

// ---------------------------------------------------------------------------------------------------------------
// Pure helpers (exported for the unit tests).

/** Full-jitter backoff: a uniform delay in [0, min(cap, base * 2^attempt)). */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** Order of two event ids (`<ms>-<seq>`): negative, zero or positive. */
export function compareIds(a: string, b: string): number {
  const [aMs, aSeq] = splitId(a);
  const [bMs, bSeq] = splitId(b);
  return aMs !== bMs ? aMs - bMs : aSeq - bSeq;
}

function splitId(id: string): [number, number] {
  const dash = id.indexOf("-");
  if (dash < 0) return [Number(id), 0];
  return [Number(id.slice(0, dash)), Number(id.slice(dash + 1))];
}

/**
 * When to refresh a token that expires at `expiresAtSeconds` (the `authed` answer's `expires_at`): a quarter of
 * its remaining life early, at most a minute early, never in the past.
 */
export function refreshDelay(expiresAtSeconds: number, nowMs: number): number {
  const remaining = expiresAtSeconds * 1000 - nowMs;
  const lead = Math.min(REFRESH_LEAD_MAX_MS, remaining / 4);
  return Math.max(0, Math.floor(remaining - lead));
}

/** `http(s)://host[/prefix]` -> `ws(s)://host[/prefix]/v1/ws`, with the page's presence id when given. */
export function webSocketUrl(base: string, clientId?: string): string {
  const url = base.replace(/^http/, "ws") + "/v1/ws";
  return clientId === undefined ? url : `${url}?client=${encodeURIComponent(clientId)}`;
}

/** A random presence id: 16 characters of A-Z, a-z, 0-9. */
export function randomClientId(random: () => number = Math.random): string {
  const digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  let id = "";
  for (let i = 0; i < 16; i++) id += digits[Math.floor(random() * digits.length)];
  return id;
}

export type SseMessage = { kind: "event"; id: string | null; event: string; data: string } | { kind: "retry"; ms: number };

/**
 * An incremental `text/event-stream` parser (the HTML standard's rules): feed it text as it arrives, get whole
 * messages back. Comments (`: ping`) are dropped; `id` sticks until changed, as in `EventSource`.
 */
export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private event = "";
  private lastId: string | null = null;
  private sawData = false;

  feed(chunk: string): SseMessage[] {
    const out: SseMessage[] = [];
    this.buffer += chunk;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (match === null) break;
      // A lone "\r" at the end may be the first half of "\r\n": wait for the next chunk.
      if (match[0] === "\r" && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      this.line(line, out);
    }
    return out;
  }

  private line(line: string, out: SseMessage[]): void {
    if (line === "") {
      if (this.sawData) out.push({ kind: "event", id: this.lastId, event: this.event || "message", data: this.data.join("\n") });
      this.data = [];
      this.event = "";
      this.sawData = false;
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") {
      this.data.push(value);
      this.sawData = true;
    } else if (field === "event") {
      this.event = value;
    } else if (field === "id") {
      if (!value.includes("\0")) this.lastId = value;
    } else if (field === "retry") {
      if (/^\d+$/.test(value)) out.push({ kind: "retry", ms: Number(value) });
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------

class Sub implements Subscription {
  readonly channel: string;
  readonly options: SubscribeOptions;
  lastId: string | null;
  active = true;
  private readonly owner: Fleetcast;

  constructor(owner: Fleetcast, channel: string, options: SubscribeOptions, lastId: string | null) {
    this.owner = owner;
    this.channel = channel;
    this.options = options;
    this.lastId = lastId;
  }

  unsubscribe(): void {
    this.owner._unsubscribe(this);
  }
}

type Pending =
  | { kind: "publish"; resolve: (value: { id: string }) => void; reject: (error: Error) => void; timer: unknown; sent: boolean }
  | { kind: "subscribe"; sub: Sub }
  | { kind: "auth" };

type Listener = (change: StateChange) => void;

export class Fleetcast {
  readonly url: string;
  readonly transport: Transport;
  /** Sent as `?client=` on every connection: with the token's `sub`, this page's presence identity. */
  readonly clientId: string;
  private readonly token: TokenSource | undefined;
  private readonly storage: StorageLike | undefined;
  private readonly storagePrefix: string;
  private readonly clock: Clock;
  private readonly makeWebSocket: WebSocketFactory;
  private readonly fetch: typeof fetch;
  private readonly subs = new Map<string, Sub>();
  private readonly listeners = new Set<Listener>();
  private stateNow: ConnectionState = "closed";
  private closed = false;
  private ws: WsConnection | null = null;
  private readonly streams = new Map<string, SseStream>();

  constructor(url: string, options: FleetcastOptions = {}) {
    const base = url || (globalThis as { location?: { origin: string } }).location?.origin || "";
    this.url = base.replace(/\/+$/, "");
    this.transport = options.transport ?? "ws";
    if (this.transport !== "ws" && this.transport !== "sse") {
      throw new TypeError(`transport must be "ws" or "sse", not ${JSON.stringify(options.transport)}`);
    }
    this.token = options.token;
    this.storage = options.storage;
    this.storagePrefix = options.storagePrefix ?? "fleetcast:lastId:";
    this.clientId = options.clientId ?? randomClientId(options.env?.clock?.random ?? Math.random);
    if (!/^[A-Za-z0-9_.-]{8,64}$/.test(this.clientId)) {
      throw new TypeError("clientId must be 8 to 64 characters of A-Z, a-z, 0-9, '_', '.', '-'");
    }
    const env = options.env ?? {};
    this.clock = {
      now: () => Date.now(),
      setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
      clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof globalThis.setTimeout>),
      random: Math.random,
      ...env.clock,
    };
    this.makeWebSocket =
      env.webSocket ?? ((wsUrl, protocol) => new globalThis.WebSocket(wsUrl, protocol) as unknown as WebSocketLike);
    this.fetch = env.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  /** The connection's state now ("closed" before the first subscribe). */
  get state(): ConnectionState {
    return this.stateNow;
  }

  /** Listen to state changes; returns a function that stops listening. */
  on(what: "state", listener: Listener): () => void {
    if (what !== "state") throw new TypeError(`unknown event ${JSON.stringify(what)}: only "state"`);
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  subscribe(channel: string, options: SubscribeOptions = {}): Subscription {
    if (this.closed) throw new FleetcastError("this Fleetcast is closed", "closed");
    if (this.subs.has(channel)) throw new FleetcastError(`already subscribed to ${channel}`, "duplicate");
    const since = options.since !== undefined && options.since !== null ? options.since : this.loadLastId(channel);
    const sub = new Sub(this, channel, options, since);
    this.subs.set(channel, sub);
    if (this.transport === "ws") {
      if (this.ws === null) this.ws = new WsConnection(this);
      this.ws.subscribe(sub);
    } else {
      const stream = new SseStream(this, sub);
      this.streams.set(channel, stream);
      stream.start();
    }
    return sub;
  }

  /** Publish over the WebSocket (transport "ws"), or over HTTP (transport "sse"). Resolves with the event id. */
  publish(channel: string, data: unknown, options: PublishOptions = {}): Promise<{ id: string }> {
    if (this.closed) return Promise.reject(new FleetcastError("this Fleetcast is closed", "closed"));
    if (this.transport === "ws") {
      if (this.ws === null) this.ws = new WsConnection(this);
      return this.ws.publish(channel, data, options.type);
    }
    return this.publishOverHttp(channel, data, options.type);
  }

  /** One page of the clients present in `channel`, across every pod; pass `cursor` back for the next (0: done). */
  async presence(channel: string, page: { cursor?: number; limit?: number } = {}): Promise<{ clients: PresentClient[]; cursor: number }> {
    const query = `?cursor=${page.cursor ?? 0}&limit=${page.limit ?? 100}`;
    const answer = (await this.getJson(`/v1/channels/${encodeURIComponent(channel)}/presence${query}`)) as {
      clients: PresentClient[];
      cursor: number;
    };
    return { clients: answer.clients, cursor: answer.cursor };
  }

  /** How many clients are present in `channel`, and how many distinct users (`sub`) they are. */
  async presenceStats(channel: string): Promise<{ clients: number; users: number }> {
    const answer = (await this.getJson(`/v1/channels/${encodeURIComponent(channel)}/presence/stats`)) as {
      clients: number;
      users: number;
    };
    return { clients: answer.clients, users: answer.users };
  }

  /** Stop everything: the WebSocket or every event stream, and every timer. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ws?.stop(new FleetcastError("closed by the page", 1000));
    this.ws = null;
    for (const stream of this.streams.values()) stream.stop();
    this.streams.clear();
    for (const sub of this.subs.values()) sub.active = false;
    this.subs.clear();
    this.setState({ state: "closed", reason: "closed by the page", code: 1000 });
  }

  // --- internals shared by the two transports -----------------------------------------------------------------

  /** @internal */
  _unsubscribe(sub: Sub): void {
    if (!sub.active) return;
    sub.active = false;
    if (this.subs.get(sub.channel) === sub) this.subs.delete(sub.channel);
    if (this.transport === "ws") {
      this.ws?.unsubscribe(sub);
    } else {
      this.streams.get(sub.channel)?.stop();
      this.streams.delete(sub.channel);
      this.sseStateChanged();
    }
  }

  /** @internal */
  _subs(): Iterable<Sub> {
    return this.subs.values();
  }

  /** @internal */
  _sub(channel: string): Sub | undefined {
    return this.subs.get(channel);
  }

  /** @internal */
  _env(): { clock: Clock; makeWebSocket: WebSocketFactory; fetch: typeof fetch } {
    return { clock: this.clock, makeWebSocket: this.makeWebSocket, fetch: this.fetch };
  }

  /** @internal: a token from the page, or null without one. */
  async _token(): Promise<string | null> {
    if (this.token === undefined) return null;
    return typeof this.token === "function" ? await this.token() : this.token;
  }

  /** @internal */
  _fixedToken(): string | null {
    return typeof this.token === "string" ? this.token : null;
  }

  /** @internal */
  _refreshable(): boolean {
    return typeof this.token === "function";
  }

  /** @internal: deliver an event once: ids at or before the last one delivered are dropped. */
  _deliver(sub: Sub, event: FleetcastEvent): void {
    if (!sub.active) return;
    if (sub.lastId !== null && compareIds(event.id, sub.lastId) <= 0) return;
    sub.lastId = event.id;
    if (this.storage !== undefined) {
      try {
        this.storage.setItem(this.storagePrefix + sub.channel, event.id);
      } catch {
        // A full or forbidden storage only costs the resume after a reload.
      }
    }
    sub.options.onEvent?.(event);
  }

  /** @internal */
  _gap(sub: Sub, gap: GapInfo): void {
    if (sub.active) sub.options.onGap?.(gap);
  }

  /** @internal: the subscription ended for good. */
  _fail(sub: Sub, error: FleetcastError): void {
    if (!sub.active) return;
    sub.active = false;
    if (this.subs.get(sub.channel) === sub) this.subs.delete(sub.channel);
    this.streams.delete(sub.channel);
    sub.options.onError?.(error);
  }

  /** @internal */
  setState(change: StateChange): void {
    const same = change.state === this.stateNow && change.state === "open";
    this.stateNow = change.state;
    if (same) return;
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch (error) {
        globalThis.setTimeout(() => {
          throw error;
        }, 0);
      }
    }
  }

  /** @internal: with SSE the client's state is the worst of its streams' states. */
  sseStateChanged(detail: Partial<StateChange> = {}): void {
    const states = [...this.streams.values()].map((stream) => stream.state);
    let state: ConnectionState = "closed";
    if (states.includes("reconnecting")) state = "reconnecting";
    else if (states.includes("connecting")) state = "connecting";
    else if (states.includes("open")) state = "open";
    if (state !== this.stateNow || state !== "open") this.setState({ ...detail, state });
  }

  private loadLastId(channel: string): string | null {
    if (this.storage === undefined) return null;
    try {
      return this.storage.getItem(this.storagePrefix + channel);
    } catch {
      return null;
    }
  }

  private async getJson(path: string): Promise<unknown> {
    const headers: Record<string, string> = {};
    const token = await this._token();
    if (token !== null) headers.Authorization = `Bearer ${token}`;
    const response = await this.fetch(`${this.url}${path}`, { headers, credentials: "include" });
    const answer = (await response.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null;
    if (!response.ok || answer === null) {
      const message = answer?.error?.message ?? `GET ${path} failed with HTTP ${response.status}`;
      throw new FleetcastError(message, answer?.error?.code ?? response.status, response.status);
    }
    return answer;
  }

  _presence(sub: Sub, body: Record<string, unknown>, kind: "join" | "leave"): void {
    if (!sub.active || sub.options.onPresence === undefined) return;
    try {
      sub.options.onPresence({
        kind,
        channel: sub.channel,
        client: String(body.client),
        sub: typeof body.sub === "string" ? body.sub : null,
        info: body.info ?? null,
      });
    } catch (error) {
      console.error("fleetcast: onPresence threw", error);
    }
  }

  private async publishOverHttp(channel: string, data: unknown, type: string | undefined): Promise<{ id: string }> {
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    const token = await this._token();
    if (token !== null) headers.Authorization = `Bearer ${token}`;
    const body = JSON.stringify(type === undefined ? { data } : { data, type });
    const response = await this.fetch(`${this.url}/v1/channels/${encodeURIComponent(channel)}/events`, {
      method: "POST",
      headers,
      body,
      credentials: "include",
    });
    const answer = (await response.json().catch(() => null)) as
      | { id?: string; error?: { code?: string; message?: string } }
      | null;
    if (!response.ok || typeof answer?.id !== "string") {
      const message = answer?.error?.message ?? `publish failed with HTTP ${response.status}`;
      throw new FleetcastError(message, answer?.error?.code ?? response.status, response.status);
    }
    return { id: answer.id };
  }
}

// ---------------------------------------------------------------------------------------------------------------

/** One WebSocket for every channel of a Fleetcast: auth first, then subscribe with `since`, reconnect, refresh. */
class WsConnection {
  private readonly owner: Fleetcast;
  private readonly clock: Clock;
  private socket: WebSocketLike | null = null;
  private generation = 0;
  private ready = false;
  private attempt = 0;
  private afterMs: number | null = null;
  private serverReason: string | null = null;
  private refusedOnce = false;
  private stopped = false;
  private endReason = "closed by the page";
  private nextRef = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly waiting = new Map<number, () => void>();
  private reconnectTimer: unknown = null;
  private refreshTimer: unknown = null;

  constructor(owner: Fleetcast) {
    this.owner = owner;
    this.clock = owner._env().clock;
    this.connect(false);
  }

  subscribe(sub: Sub): void {
    if (this.ready) this.sendSubscribe(sub);
  }

  unsubscribe(sub: Sub): void {
    if (this.ready) this.send({ op: "unsubscribe", channel: sub.channel, ref: this.ref({ kind: "subscribe", sub }) });
  }

  publish(channel: string, data: unknown, type: string | undefined): Promise<{ id: string }> {
    if (this.stopped) {
      return Promise.reject(new FleetcastError(`the connection ended: ${this.endReason}`, "closed"));
    }
    if (this.waiting.size >= MAX_WAITING_PUBLISHES) {
      return Promise.reject(new FleetcastError("too many publishes wait for the connection", "backlog"));
    }
    return new Promise((resolve, reject) => {
      const entry: Pending = { kind: "publish", resolve, reject, timer: null, sent: false };
      const ref = this.ref(entry);
      entry.timer = this.clock.setTimeout(() => {
        this.pending.delete(ref);
        this.waiting.delete(ref);
        reject(new FleetcastError("no answer to the publish in time", "timeout"));
      }, PUBLISH_TIMEOUT_MS);
      const message = type === undefined ? { op: "publish", channel, data, ref } : { op: "publish", channel, data, type, ref };
      const send = (): void => {
        entry.sent = true;
        this.send(message);
      };
      if (this.ready) send();
      else this.waiting.set(ref, send);
    });
  }

  stop(error: FleetcastError): void {
    this.stopped = true;
    this.clearTimers();
    const socket = this.socket;
    this.socket = null;
    this.ready = false;
    this.generation++;
    if (socket !== null) {
      try {
        socket.close(1000, "closed by the page");
      } catch {
        // already closing
      }
    }
    this.rejectPublishes(error, true);
  }

  private connect(again: boolean): void {
    if (this.stopped) return;
    const generation = ++this.generation;
    this.ready = false;
    this.owner.setState({ state: again ? "reconnecting" : "connecting" });
    let socket: WebSocketLike;
    try {
      socket = this.owner._env().makeWebSocket(webSocketUrl(this.owner.url, this.owner.clientId), WS_PROTOCOL);
    } catch (error) {
      this.terminate(4400, `cannot open a WebSocket: ${String(error)}`);
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      if (generation === this.generation) void this.opened(generation);
    };
    socket.onmessage = (message) => {
      if (generation === this.generation) this.received(message.data);
    };
    socket.onclose = (event) => {
      if (generation === this.generation) this.closedBy(event.code, event.reason);
    };
    socket.onerror = () => undefined; // a close event follows with the code
  }

  private async opened(generation: number): Promise<void> {
    let token: string | null;
    try {
      // Without a token function nothing needs to wait: the subscribes go out in the same turn as the open.
      token = this.owner._refreshable() ? await this.owner._token() : this.owner._fixedToken();
    } catch (error) {
      if (generation !== this.generation) return;
      this.socket?.close(4000, "no token");
      this.closedBy(1011, `the token function failed: ${String(error)}`);
      return;
    }
    if (generation !== this.generation) return;
    if (token === null) this.becomeReady();
    else this.send({ op: "auth", token, ref: this.ref({ kind: "auth" }) });
  }

  private becomeReady(): void {
    this.ready = true;
    this.attempt = 0;
    this.owner.setState({ state: "open" });
    for (const sub of this.owner._subs()) this.sendSubscribe(sub);
    const waiting = [...this.waiting.values()];
    this.waiting.clear();
    for (const send of waiting) send();
  }

  private sendSubscribe(sub: Sub): void {
    const message: Record<string, unknown> = { op: "subscribe", channel: sub.channel, ref: this.ref({ kind: "subscribe", sub }) };
    if (sub.lastId !== null) message.since = sub.lastId;
    this.send(message);
  }

  private received(raw: unknown): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(String(raw)) as Record<string, unknown>;
    } catch {
      return;
    }
    const ref = typeof message.ref === "number" ? message.ref : null;
    switch (message.op) {
      case "event": {
        const sub = this.owner._sub(String(message.channel));
        if (sub !== undefined) {
          this.owner._deliver(sub, {
            channel: sub.channel,
            id: String(message.id),
            type: String(message.type ?? "message"),
            data: message.data,
          });
        }
        break;
      }
      case "gap": {
        const sub = this.owner._sub(String(message.channel));
        if (sub !== undefined) {
          this.owner._gap(sub, {
            channel: sub.channel,
            requested: String(message.requested),
            earliest: message.earliest === null ? null : String(message.earliest),
          });
        }
        break;
      }
      case "join":
      case "leave": {
        const sub = this.owner._sub(String(message.channel));
        if (sub !== undefined) this.owner._presence(sub, message, message.op);
        break;
      }
      case "authed": {
        if (ref !== null) this.pending.delete(ref);
        this.refusedOnce = false;
        this.scheduleRefresh(typeof message.expires_at === "number" ? message.expires_at : null);
        if (!this.ready) this.becomeReady();
        break;
      }
      case "subscribed":
      case "pong":
        if (ref !== null) this.pending.delete(ref);
        break;
      case "unsubscribed": {
        if (ref !== null) {
          this.pending.delete(ref);
        } else {
          // The server ended it (a refreshed token no longer grants the channel).
          const sub = this.owner._sub(String(message.channel));
          const reason = typeof message.reason === "string" ? message.reason : "unsubscribed by the server";
          if (sub !== undefined) this.owner._fail(sub, new FleetcastError(reason, "unsubscribed"));
        }
        break;
      }
      case "published": {
        const entry = ref === null ? undefined : this.pending.get(ref);
        if (entry?.kind === "publish") {
          this.pending.delete(ref as number);
          this.clock.clearTimeout(entry.timer);
          entry.resolve({ id: String(message.id) });
        }
        break;
      }
      case "error": {
        const entry = ref === null ? undefined : this.pending.get(ref);
        const error = new FleetcastError(String(message.message ?? message.code), String(message.code));
        if (entry === undefined) break;
        this.pending.delete(ref as number);
        if (entry.kind === "publish") {
          this.clock.clearTimeout(entry.timer);
          entry.reject(error);
        } else if (entry.kind === "subscribe" && entry.sub.active && message.code !== "rate_limited") {
          this.owner._fail(entry.sub, error);
        }
        break;
      }
      case "reconnect":
        this.afterMs = typeof message.after_ms === "number" ? message.after_ms : null;
        this.serverReason = typeof message.reason === "string" ? message.reason : null;
        break;
      default:
        break;
    }
  }

  private closedBy(code: number, reason: string): void {
    if (this.stopped) return;
    this.socket = null;
    this.ready = false;
    this.generation++;
    this.clearTimers();
    this.rejectPublishes(new FleetcastError(`connection closed (${code}) before the publish was answered`, code), false);
    const why = this.serverReason ?? reason;
    this.serverReason = null;
    if (code === 4001) {
      // Unauthorized or expired: one more try with a fresh token from the page's function, then stop.
      if (!this.owner._refreshable() || this.refusedOnce) {
        this.terminate(code, why || "unauthorized");
        return;
      }
      this.refusedOnce = true;
    } else if (TERMINAL_CODES.has(code)) {
      this.terminate(code, why);
      return;
    }
    const delay = this.afterMs ?? backoffDelay(this.attempt++, this.clock.random);
    this.afterMs = null;
    this.owner.setState({ state: "reconnecting", code, reason: why, retryInMs: delay });
    this.reconnectTimer = this.clock.setTimeout(() => {
      this.reconnectTimer = null;
      this.connect(true);
    }, delay);
  }

  private terminate(code: number, reason: string): void {
    this.stopped = true;
    this.endReason = `${reason || "closed"} (${code})`;
    this.clearTimers();
    const error = new FleetcastError(reason || `closed with ${code}`, code);
    this.rejectPublishes(error, true);
    this.owner.setState({ state: "closed", code, reason });
  }

  private scheduleRefresh(expiresAt: number | null): void {
    if (this.refreshTimer !== null) this.clock.clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    if (expiresAt === null || !this.owner._refreshable()) return;
    const generation = this.generation;
    this.refreshTimer = this.clock.setTimeout(() => {
      this.refreshTimer = null;
      void this.refresh(generation, 0);
    }, refreshDelay(expiresAt, this.clock.now()));
  }

  private async refresh(generation: number, failures: number): Promise<void> {
    let token: string | null;
    try {
      token = await this.owner._token();
    } catch {
      token = null;
    }
    if (generation !== this.generation || this.stopped) return;
    if (token === null) {
      // Try again shortly; if the token expires first, the server closes 4001 and the reconnect asks again.
      this.refreshTimer = this.clock.setTimeout(() => {
        this.refreshTimer = null;
        void this.refresh(generation, failures + 1);
      }, backoffDelay(failures, this.clock.random) + 100);
      return;
    }
    this.send({ op: "auth", token, ref: this.ref({ kind: "auth" }) });
  }

  private ref(entry: Pending): number {
    const ref = this.nextRef++;
    if (entry.kind !== "publish") {
      // Answers to subscribe/auth matter only to report errors: keep a bounded number.
      if (this.pending.size > 10_000) this.pending.clear();
    }
    this.pending.set(ref, entry);
    return ref;
  }

  private send(message: Record<string, unknown>): void {
    try {
      this.socket?.send(JSON.stringify(message));
    } catch {
      // the close event follows
    }
  }

  private rejectPublishes(error: FleetcastError, all: boolean): void {
    for (const [ref, entry] of [...this.pending]) {
      if (entry.kind !== "publish") {
        this.pending.delete(ref);
        continue;
      }
      if (!all && !entry.sent) continue; // still waiting for a connection: it goes out on the next one
      this.pending.delete(ref);
      this.waiting.delete(ref);
      this.clock.clearTimeout(entry.timer);
      entry.reject(error);
    }
  }

  private clearTimers(): void {
    if (this.reconnectTimer !== null) this.clock.clearTimeout(this.reconnectTimer);
    if (this.refreshTimer !== null) this.clock.clearTimeout(this.refreshTimer);
    this.reconnectTimer = null;
    this.refreshTimer = null;
  }
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * One channel's event stream, read with `fetch` rather than `EventSource`: it sees every event type (an
 * `EventSource` dispatches only the types a page listened for in advance), sends the token in a header rather
 * than the URL, and decides each reconnect itself, with `?lastEventId=` and a fresh token every time.
 */
class SseStream {
  state: ConnectionState = "connecting";
  private readonly owner: Fleetcast;
  private readonly sub: Sub;
  private readonly clock: Clock;
  private abort: AbortController | null = null;
  private timer: unknown = null;
  private attempt = 0;
  private retryMs: number | null = null;
  private refusedOnce = false;
  private stopped = false;

  constructor(owner: Fleetcast, sub: Sub) {
    this.owner = owner;
    this.sub = sub;
    this.clock = owner._env().clock;
  }

  start(): void {
    void this.run(false);
  }

  stop(): void {
    this.stopped = true;
    this.state = "closed";
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    this.abort?.abort();
    this.abort = null;
  }

  private setState(state: ConnectionState, detail: Partial<StateChange> = {}): void {
    this.state = state;
    this.owner.sseStateChanged({ ...detail, channel: this.sub.channel });
  }

  private async run(again: boolean): Promise<void> {
    if (this.stopped) return;
    this.setState(again ? "reconnecting" : "connecting");
    let afterMs: number | null = null;
    let reason = "";
    let code = 1006;
    let opened = false;
    const abort = new AbortController();
    this.abort = abort;
    try {
      const token = await this.owner._token();
      const since = this.sub.lastId === null ? "" : `&lastEventId=${encodeURIComponent(this.sub.lastId)}`;
      const query = `?client=${encodeURIComponent(this.owner.clientId)}${since}`;
      const url = `${this.owner.url}/v1/channels/${encodeURIComponent(this.sub.channel)}/events${query}`;
      // The token travels in a header, never in the URL (which proxies in front of the gateway may log).
      const headers: Record<string, string> = { Accept: "text/event-stream" };
      if (token !== null) headers.Authorization = `Bearer ${token}`;
      const response = await this.owner._env().fetch(url, {
        headers,
        credentials: "include",
        cache: "no-store",
        signal: abort.signal,
      });
      if (response.status !== 200 || response.body === null) {
        const answer = (await response.json().catch(() => null)) as { error?: { message?: string } } | null;
        reason = answer?.error?.message ?? `HTTP ${response.status}`;
        code = SSE_STATUS_CODES[response.status] ?? 1013;
        const retryAfter = Number(response.headers.get("Retry-After"));
        if (retryAfter > 0) afterMs = retryAfter * 1000;
      } else {
        opened = true;
        this.attempt = 0;
        this.setState("open");
        const parser = new SseParser();
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done || this.stopped) break;
          for (const message of parser.feed(value)) {
            const instruction = this.handle(message);
            if (instruction !== null) {
              afterMs = instruction.afterMs;
              reason = instruction.reason;
              code = 1012;
            }
          }
        }
        if (!reason) reason = "the stream ended";
      }
    } catch (error) {
      if (this.stopped) return;
      reason = error instanceof Error ? error.message : String(error);
    }
    if (this.stopped) return;
    this.abort = null;
    if (code === 4001) {
      if (!this.owner._refreshable() || this.refusedOnce) return this.terminate(code, reason);
      this.refusedOnce = true;
    } else if (TERMINAL_CODES.has(code)) {
      return this.terminate(code, reason);
    } else if (opened) {
      this.refusedOnce = false;
    }
    const delay = afterMs ?? (opened && this.retryMs !== null ? this.retryMs : backoffDelay(this.attempt++, this.clock.random));
    this.setState("reconnecting", { code, reason, retryInMs: delay });
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      void this.run(true);
    }, delay);
  }

  /** One parsed message; a `fleetcast.reconnect` instruction comes back to the caller. */
  private handle(message: SseMessage): { afterMs: number | null; reason: string } | null {
    if (message.kind === "retry") {
      this.retryMs = message.ms;
      return null;
    }
    if (message.event === "fleetcast.reconnect") {
      const body = parseJson(message.data) as { reason?: string; after_ms?: number } | null;
      return { afterMs: typeof body?.after_ms === "number" ? body.after_ms : null, reason: body?.reason ?? "reconnect" };
    }
    if (message.event === "fleetcast.gap") {
      const body = parseJson(message.data) as { requested?: string; earliest?: string | null } | null;
      this.owner._gap(this.sub, {
        channel: this.sub.channel,
        requested: String(body?.requested ?? ""),
        earliest: body?.earliest ?? null,
      });
      return null;
    }
    if (message.event === "fleetcast.join" || message.event === "fleetcast.leave") {
      const body = parseJson(message.data) as Record<string, unknown> | null;
      if (body !== null) this.owner._presence(this.sub, body, message.event === "fleetcast.join" ? "join" : "leave");
      return null;
    }
    if (message.id === null) return null;
    this.owner._deliver(this.sub, { channel: this.sub.channel, id: message.id, type: message.event, data: parseJson(message.data) });
    return null;
  }

  private terminate(code: number, reason: string): void {
    this.stopped = true;
    this.state = "closed";
    this.owner._fail(this.sub, new FleetcastError(reason || `closed with ${code}`, code));
    this.owner.sseStateChanged({ code, reason, channel: this.sub.channel });
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
