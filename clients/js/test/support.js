// The SDK's own seams for unit tests: a clock whose time moves only when told, a scripted WebSocket, and a
// fetch whose event streams the test writes to. No network.

export class FakeClock {
  constructor(random = 0.5) {
    this.t = 1_000_000;
    this.timers = new Map();
    this.nextId = 1;
    this.randomValue = random;
  }
  now() { return this.t; }
  random() { return this.randomValue; }
  setTimeout(callback, ms) {
    const id = this.nextId++;
    this.timers.set(id, { at: this.t + ms, callback });
    return id;
  }
  clearTimeout(id) { this.timers.delete(id); }
  /** The delays of the timers pending now, from now. */
  pending() { return [...this.timers.values()].map((timer) => timer.at - this.t).sort((a, b) => a - b); }
  /** Move time forward, running the timers that fall due in order (and the promises they start). */
  async advance(ms) {
    const target = this.t + ms;
    for (;;) {
      let next = null;
      for (const [id, timer] of this.timers) if (timer.at <= target && (next === null || timer.at < next[1].at)) next = [id, timer];
      if (next === null) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].callback();
      await settle();
    }
    this.t = target;
    await settle();
  }
  env() {
    return { now: () => this.now(), random: () => this.random(), setTimeout: (f, ms) => this.setTimeout(f, ms), clearTimeout: (id) => this.clearTimeout(id) };
  }
}

/** Let pending promise callbacks run. */
export async function settle() {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

export class FakeSocket {
  constructor(url, protocol) {
    this.url = url;
    this.protocol = protocol;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  close(code, reason) { this.closedWith = { code, reason }; this.readyState = 3; }
  // what the server does
  open() { this.readyState = 1; this.onopen?.({}); }
  message(object) { this.onmessage?.({ data: JSON.stringify(object) }); }
  serverClose(code, reason = "") { this.readyState = 3; this.onclose?.({ code, reason }); }
  ops() { return this.sent.map((message) => message.op); }
}

export function socketFactory() {
  const sockets = [];
  const make = (url, protocol) => {
    const socket = new FakeSocket(url, protocol);
    sockets.push(socket);
    return socket;
  };
  return { sockets, make };
}

/** A fetch whose answers the test decides: each call waits in `calls` for `answerStream()` or `answer()`. */
export function fakeFetch() {
  const calls = [];
  const fetch = (url, init) =>
    new Promise((resolve, reject) => {
      const call = {
        url: new URL(url),
        init,
        answer(status, body = {}, headers = {}) {
          resolve(new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } }));
        },
        answerStream() {
          const encoder = new TextEncoder();
          let controller;
          const stream = new ReadableStream({ start(c) { controller = c; } });
          init.signal?.addEventListener("abort", () => { try { controller.error(new Error("aborted")); } catch {} });
          resolve(new Response(stream, { status: 200, headers: { "Content-Type": "text/event-stream" } }));
          return {
            write(text) { controller.enqueue(encoder.encode(text)); },
            end() { controller.close(); },
            fail() { controller.error(new TypeError("network error")); },
          };
        },
        fail() { reject(new TypeError("Failed to fetch")); },
      };
      calls.push(call);
    });
  return { calls, fetch };
}

export class MemoryStorage {
  constructor() { this.items = new Map(); }
  getItem(key) { return this.items.has(key) ? this.items.get(key) : null; }
  setItem(key, value) { this.items.set(key, String(value)); }
}
