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
export declare const VERSION = "0.1.0";
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
    onmessage: ((event: {
        data: unknown;
    }) => void) | null;
    onclose: ((event: {
        code: number;
        reason: string;
    }) => void) | null;
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
export declare class FleetcastError extends Error {
    /** A close code (4001, 4003...) or an error code of the protocol ("forbidden", "invalid_channel"...). */
    readonly code: number | string;
    readonly status: number | undefined;
    constructor(message: string, code: number | string, status?: number);
}
export declare const WS_PROTOCOL = "fleetcast.v1";
export declare const BACKOFF_BASE_MS = 500;
export declare const BACKOFF_CAP_MS = 10000;
/** Full-jitter backoff: a uniform delay in [0, min(cap, base * 2^attempt)). */
export declare function backoffDelay(attempt: number, random?: () => number): number;
/** Order of two event ids (`<ms>-<seq>`): negative, zero or positive. */
export declare function compareIds(a: string, b: string): number;
/**
 * When to refresh a token that expires at `expiresAtSeconds` (the `authed` answer's `expires_at`): a quarter of
 * its remaining life early, at most a minute early, never in the past.
 */
export declare function refreshDelay(expiresAtSeconds: number, nowMs: number): number;
/** `http(s)://host[/prefix]` -> `ws(s)://host[/prefix]/v1/ws`, with the page's presence id when given. */
export declare function webSocketUrl(base: string, clientId?: string): string;
/** A random presence id: 16 characters of A-Z, a-z, 0-9. */
export declare function randomClientId(random?: () => number): string;
export type SseMessage = {
    kind: "event";
    id: string | null;
    event: string;
    data: string;
} | {
    kind: "retry";
    ms: number;
};
/**
 * An incremental `text/event-stream` parser (the HTML standard's rules): feed it text as it arrives, get whole
 * messages back. Comments (`: ping`) are dropped; `id` sticks until changed, as in `EventSource`.
 */
export declare class SseParser {
    private buffer;
    private data;
    private event;
    private lastId;
    private sawData;
    feed(chunk: string): SseMessage[];
    private line;
}
declare class Sub implements Subscription {
    readonly channel: string;
    readonly options: SubscribeOptions;
    lastId: string | null;
    active: boolean;
    private readonly owner;
    constructor(owner: Fleetcast, channel: string, options: SubscribeOptions, lastId: string | null);
    unsubscribe(): void;
}
type Listener = (change: StateChange) => void;
export declare class Fleetcast {
    readonly url: string;
    readonly transport: Transport;
    /** Sent as `?client=` on every connection: with the token's `sub`, this page's presence identity. */
    readonly clientId: string;
    private readonly token;
    private readonly storage;
    private readonly storagePrefix;
    private readonly clock;
    private readonly makeWebSocket;
    private readonly fetch;
    private readonly subs;
    private readonly listeners;
    private stateNow;
    private closed;
    private ws;
    private readonly streams;
    constructor(url: string, options?: FleetcastOptions);
    /** The connection's state now ("closed" before the first subscribe). */
    get state(): ConnectionState;
    /** Listen to state changes; returns a function that stops listening. */
    on(what: "state", listener: Listener): () => void;
    subscribe(channel: string, options?: SubscribeOptions): Subscription;
    /** Publish over the WebSocket (transport "ws"), or over HTTP (transport "sse"). Resolves with the event id. */
    publish(channel: string, data: unknown, options?: PublishOptions): Promise<{
        id: string;
    }>;
    /** One page of the clients present in `channel`, across every pod; pass `cursor` back for the next (0: done). */
    presence(channel: string, page?: {
        cursor?: number;
        limit?: number;
    }): Promise<{
        clients: PresentClient[];
        cursor: number;
    }>;
    /** How many clients are present in `channel`, and how many distinct users (`sub`) they are. */
    presenceStats(channel: string): Promise<{
        clients: number;
        users: number;
    }>;
    /** Stop everything: the WebSocket or every event stream, and every timer. */
    close(): void;
    /** @internal */
    _unsubscribe(sub: Sub): void;
    /** @internal */
    _subs(): Iterable<Sub>;
    /** @internal */
    _sub(channel: string): Sub | undefined;
    /** @internal */
    _env(): {
        clock: Clock;
        makeWebSocket: WebSocketFactory;
        fetch: typeof fetch;
    };
    /** @internal: a token from the page, or null without one. */
    _token(): Promise<string | null>;
    /** @internal */
    _fixedToken(): string | null;
    /** @internal */
    _refreshable(): boolean;
    /** @internal: deliver an event once: ids at or before the last one delivered are dropped. */
    _deliver(sub: Sub, event: FleetcastEvent): void;
    /** @internal */
    _gap(sub: Sub, gap: GapInfo): void;
    /** @internal: the subscription ended for good. */
    _fail(sub: Sub, error: FleetcastError): void;
    /** @internal */
    setState(change: StateChange): void;
    /** @internal: with SSE the client's state is the worst of its streams' states. */
    sseStateChanged(detail?: Partial<StateChange>): void;
    private loadLastId;
    private getJson;
    _presence(sub: Sub, body: Record<string, unknown>, kind: "join" | "leave"): void;
    private publishOverHttp;
}
export {};
