import assert from "node:assert/strict";
import { test } from "node:test";

import { Fleetcast } from "../dist/client.js";
import { FakeClock, MemoryStorage, settle, socketFactory } from "./support.js";

function client(options = {}) {
  const clock = new FakeClock();
  const { sockets, make } = socketFactory();
  const states = [];
  const fc = new Fleetcast("https://rt.example.com/", { ...options, env: { webSocket: make, clock: clock.env() } });
  fc.on("state", (change) => states.push(change));
  return { fc, clock, sockets, states };
}

function recorder() {
  const events = [];
  const gaps = [];
  const errors = [];
  return {
    events, gaps, errors,
    options: { onEvent: (e) => events.push(e), onGap: (g) => gaps.push(g), onError: (e) => errors.push(e) },
  };
}

test("many channels share one WebSocket, and each event reaches its channel once", async () => {
  const { fc, sockets } = client();
  const a = recorder();
  const b = recorder();
  const subA = fc.subscribe("chat:a", a.options);
  fc.subscribe("score", b.options);
  assert.equal(sockets.length, 1);
  assert.equal(sockets[0].url, `wss://rt.example.com/v1/ws?client=${fc.clientId}`);
  assert.equal(sockets[0].protocol, "fleetcast.v1");
  sockets[0].open();
  assert.deepEqual(sockets[0].sent.map((m) => [m.op, m.channel, m.since]), [["subscribe", "chat:a", undefined], ["subscribe", "score", undefined]]);
  sockets[0].message({ op: "event", channel: "chat:a", id: "5-0", type: "chat", data: { text: "hi" } });
  sockets[0].message({ op: "event", channel: "score", id: "6-0", type: "goal", data: 1 });
  sockets[0].message({ op: "event", channel: "chat:a", id: "5-0", type: "chat", data: { text: "hi" } });
  sockets[0].message({ op: "gap", channel: "score", requested: "1-0", earliest: "3-0" });
  assert.deepEqual(a.events, [{ channel: "chat:a", id: "5-0", type: "chat", data: { text: "hi" } }]);
  assert.deepEqual(b.events.map((e) => [e.id, e.type]), [["6-0", "goal"]]);
  assert.deepEqual(b.gaps, [{ channel: "score", requested: "1-0", earliest: "3-0" }]);
  assert.equal(subA.lastId, "5-0");
  subA.unsubscribe();
  assert.deepEqual(sockets[0].sent.at(-1).op, "unsubscribe");
  sockets[0].message({ op: "event", channel: "chat:a", id: "7-0", type: "chat", data: {} });
  assert.equal(a.events.length, 1);
  fc.close();
});

test("a reconnect resumes every channel from its last id, after the server's after_ms exactly", async () => {
  const storage = new MemoryStorage();
  const { fc, clock, sockets, states } = client({ storage });
  const a = recorder();
  fc.subscribe("chat:a", { ...a.options, since: "1-0" });
  fc.subscribe("score", {});
  sockets[0].open();
  assert.equal(sockets[0].sent[0].since, "1-0");
  sockets[0].message({ op: "event", channel: "chat:a", id: "2-0", type: "message", data: 2 });
  sockets[0].message({ op: "reconnect", reason: "drain", after_ms: 300 });
  sockets[0].serverClose(1012, "drain");
  assert.deepEqual(clock.pending(), [300]);
  assert.deepEqual(states.at(-1), { state: "reconnecting", code: 1012, reason: "drain", retryInMs: 300 });
  await clock.advance(299);
  assert.equal(sockets.length, 1);
  await clock.advance(1);
  assert.equal(sockets.length, 2);
  sockets[1].open();
  assert.deepEqual(sockets[1].sent.map((m) => [m.channel, m.since]), [["chat:a", "2-0"], ["score", undefined]]);
  // The replay overlaps what was delivered: the duplicate is dropped, the rest delivered once.
  sockets[1].message({ op: "event", channel: "chat:a", id: "2-0", type: "message", data: 2 });
  sockets[1].message({ op: "event", channel: "chat:a", id: "3-0", type: "message", data: 3 });
  assert.deepEqual(a.events.map((e) => e.id), ["2-0", "3-0"]);
  assert.equal(storage.getItem("fleetcast:lastId:chat:a"), "3-0");
  assert.deepEqual(states.map((s) => s.state), ["connecting", "open", "reconnecting", "reconnecting", "open"]);
  fc.close();
});

test("a lost connection is retried with full-jitter backoff that grows, and resets once connected", async () => {
  const { fc, clock, sockets } = client();
  fc.subscribe("chat:a", {});
  sockets[0].serverClose(1006);
  assert.deepEqual(clock.pending(), [250]); // random 0.5 of 500 ms
  await clock.advance(250);
  sockets[1].serverClose(1006);
  assert.deepEqual(clock.pending(), [500]);
  await clock.advance(500);
  sockets[2].serverClose(1013, "overloaded");
  assert.deepEqual(clock.pending(), [1000]);
  await clock.advance(1000);
  sockets[3].open();
  sockets[3].serverClose(1011);
  assert.deepEqual(clock.pending(), [250]);
  fc.close();
  assert.deepEqual(clock.pending(), []);
});

test("terminal close codes stop the client with the reason; nothing reconnects", async () => {
  for (const [code, reason] of [[4003, "forbidden"], [4004, "unknown channel"], [4400, "protocol error"], [1009, "message too big"]]) {
    const { fc, clock, sockets, states } = client();
    fc.subscribe("chat:a", {});
    sockets[0].open();
    sockets[0].serverClose(code, reason);
    assert.deepEqual(states.at(-1), { state: "closed", code, reason });
    await clock.advance(60_000);
    assert.equal(sockets.length, 1);
    assert.equal(fc.state, "closed");
    await assert.rejects(fc.publish("chat:a", 1), { code: "closed", message: `the connection ended: ${reason} (${code})` });
  }
});

test("with a token: auth goes first, subscribes wait for authed, and the token is refreshed before it expires", async () => {
  let issued = 0;
  const { fc, clock, sockets } = client({ token: async () => `token-${++issued}` });
  fc.subscribe("chat:a", {});
  sockets[0].open();
  await settle();
  assert.deepEqual(sockets[0].sent, [{ op: "auth", token: "token-1", ref: sockets[0].sent[0].ref }]);
  sockets[0].message({ op: "authed", ref: sockets[0].sent[0].ref, sub: "u1", expires_at: clock.now() / 1000 + 4 });
  assert.deepEqual(sockets[0].ops(), ["auth", "subscribe"]);
  assert.deepEqual(clock.pending(), [3000]);
  await clock.advance(3000);
  assert.deepEqual(sockets[0].sent.at(-1), { op: "auth", token: "token-2", ref: sockets[0].sent.at(-1).ref });
  sockets[0].message({ op: "authed", ref: sockets[0].sent.at(-1).ref, sub: "u1", expires_at: clock.now() / 1000 + 8 });
  assert.deepEqual(clock.pending(), [6000]);
  assert.deepEqual(sockets[0].ops(), ["auth", "subscribe", "auth"], "a refresh does not resubscribe");
  assert.equal(sockets.length, 1, "a refresh happens in place");
  fc.close();
  assert.deepEqual(clock.pending(), []);
});

test("4001 gets one more try with a fresh token, and stops with the reason when that is refused too", async () => {
  let issued = 0;
  const { fc, clock, sockets, states } = client({ token: () => `token-${++issued}` });
  fc.subscribe("chat:a", {});
  sockets[0].open();
  await settle();
  sockets[0].message({ op: "authed", ref: 1, sub: "u1", expires_at: null });
  sockets[0].serverClose(4001, "token expired");
  assert.equal(states.at(-1).state, "reconnecting");
  await clock.advance(clock.pending()[0]);
  sockets[1].open();
  await settle();
  assert.equal(sockets[1].sent[0].token, "token-2");
  sockets[1].serverClose(4001, "invalid token");
  assert.deepEqual(states.at(-1), { state: "closed", code: 4001, reason: "invalid token" });
  await clock.advance(60_000);
  assert.equal(sockets.length, 2);
});

test("a fixed token is not retried after 4001", async () => {
  const { fc, sockets, states } = client({ token: "static" });
  fc.subscribe("chat:a", {});
  sockets[0].open();
  await settle();
  sockets[0].serverClose(4001, "token expired");
  assert.deepEqual(states.at(-1), { state: "closed", code: 4001, reason: "token expired" });
});

test("publish resolves with the id, rejects with the server's error, and waits for the connection", async () => {
  const { fc, sockets } = client();
  const early = fc.publish("chat:a", { text: "queued" }, { type: "chat" });
  assert.deepEqual(sockets[0].sent, []);
  sockets[0].open();
  const [first] = sockets[0].sent;
  assert.deepEqual({ ...first, ref: 0 }, { op: "publish", channel: "chat:a", data: { text: "queued" }, type: "chat", ref: 0 });
  sockets[0].message({ op: "published", ref: first.ref, id: "9-0" });
  assert.deepEqual(await early, { id: "9-0" });
  const refused = fc.publish("news", 1);
  sockets[0].message({ op: "error", ref: sockets[0].sent.at(-1).ref, code: "forbidden", message: "not allowed to publish to news" });
  await assert.rejects(refused, { name: "FleetcastError", code: "forbidden", message: "not allowed to publish to news" });
  const lost = fc.publish("chat:a", 2);
  sockets[0].serverClose(1012, "drain");
  await assert.rejects(lost, { code: 1012 });
  fc.close();
});

test("a refused subscription reports its error and ends; the others go on", async () => {
  const { fc, sockets } = client();
  const bad = recorder();
  const good = recorder();
  fc.subscribe("private:x", bad.options);
  fc.subscribe("chat:a", good.options);
  sockets[0].open();
  sockets[0].message({ op: "error", ref: sockets[0].sent[0].ref, code: "forbidden", message: "no access to private:x" });
  assert.equal(bad.errors[0].code, "forbidden");
  sockets[0].serverClose(1012);
  assert.throws(() => fc.subscribe("chat:a", {}), { code: "duplicate" });
  fc.close();
});

test("storage gives a new subscription its starting point, per channel", () => {
  const storage = new MemoryStorage();
  storage.setItem("fleetcast:lastId:chat:a", "41-0");
  const { fc, sockets } = client({ storage });
  const sub = fc.subscribe("chat:a", {});
  fc.subscribe("chat:b", {});
  assert.equal(sub.lastId, "41-0");
  sockets[0].open();
  assert.deepEqual(sockets[0].sent.map((m) => m.since), ["41-0", undefined]);
  fc.close();
});

test("joins and leaves reach onPresence of their channel only; the client id stays across reconnects", async () => {
  const { fc, sockets } = client({ clientId: "page-0000001" });
  const heard = [];
  fc.subscribe("room:a", { onPresence: (p) => heard.push(p) });
  fc.subscribe("room:b", {});
  sockets[0].open();
  sockets[0].message({ op: "join", channel: "room:a", client: "k1k1k1k1", sub: "ann", info: { n: 1 } });
  sockets[0].message({ op: "join", channel: "room:b", client: "k2k2k2k2", sub: "bob", info: null });
  sockets[0].message({ op: "leave", channel: "room:a", client: "k1k1k1k1", sub: "ann", info: { n: 1 } });
  assert.deepEqual(heard, [
    { kind: "join", channel: "room:a", client: "k1k1k1k1", sub: "ann", info: { n: 1 } },
    { kind: "leave", channel: "room:a", client: "k1k1k1k1", sub: "ann", info: { n: 1 } },
  ]);
  assert.equal(sockets[0].url, "wss://rt.example.com/v1/ws?client=page-0000001");
  assert.throws(() => client({ clientId: "bad id" }), /clientId must be/);
});
