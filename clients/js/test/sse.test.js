import assert from "node:assert/strict";
import { test } from "node:test";

import { Fleetcast } from "../dist/client.js";
import { FakeClock, MemoryStorage, fakeFetch, settle } from "./support.js";

function client(options = {}) {
  const clock = new FakeClock();
  const { calls, fetch } = fakeFetch();
  const states = [];
  const fc = new Fleetcast("http://127.0.0.1:8000", { transport: "sse", ...options, env: { fetch, clock: clock.env() } });
  fc.on("state", (change) => states.push(change));
  return { fc, clock, calls, states };
}

function recorder() {
  const events = [];
  const gaps = [];
  const errors = [];
  return { events, gaps, errors, options: { onEvent: (e) => events.push(e), onGap: (g) => gaps.push(g), onError: (e) => errors.push(e) } };
}

test("every event type reaches onEvent, gaps reach onGap, and the stream resumes after the server's after_ms", async () => {
  let issued = 0;
  const { fc, clock, calls, states } = client({ token: () => `t${++issued}` });
  const seen = recorder();
  const sub = fc.subscribe("chat:room-1", seen.options);
  await settle();
  assert.equal(calls.length, 1);
  assert.equal(calls[0].url.pathname, "/v1/channels/chat%3Aroom-1/events");
  assert.equal(calls[0].init.headers.Authorization, "Bearer t1");
  assert.equal(calls[0].url.searchParams.get("token"), null, "no token in the URL");
  assert.equal(calls[0].url.searchParams.get("client"), fc.clientId, "the presence id on every connection");
  const stream = calls[0].answerStream();
  await settle();
  assert.equal(fc.state, "open");
  stream.write('retry: 2000\n\nid: 1-0\nevent: never-seen-before\ndata: {"n":1}\n\n');
  stream.write('event: fleetcast.gap\ndata: {"requested":"0-1","earliest":"1-0"}\n\n: ping\n\n');
  stream.write("id: 2-0\ndata: plain text\n\n");
  stream.write('event: fleetcast.reconnect\ndata: {"reason":"token expired","after_ms":150}\n\nretry: 150\n\n');
  stream.end();
  await settle();
  assert.deepEqual(seen.events, [
    { channel: "chat:room-1", id: "1-0", type: "never-seen-before", data: { n: 1 } },
    { channel: "chat:room-1", id: "2-0", type: "message", data: "plain text" },
  ]);
  assert.deepEqual(seen.gaps, [{ channel: "chat:room-1", requested: "0-1", earliest: "1-0" }]);
  assert.equal(sub.lastId, "2-0");
  assert.deepEqual(states.at(-1), { state: "reconnecting", code: 1012, reason: "token expired", retryInMs: 150, channel: "chat:room-1" });
  await clock.advance(150);
  assert.equal(calls.length, 2);
  assert.equal(calls[1].url.searchParams.get("lastEventId"), "2-0");
  assert.equal(calls[1].init.headers.Authorization, "Bearer t2", "a fresh token on every reconnect");
  const again = calls[1].answerStream();
  again.write("id: 2-0\ndata: 2\n\nid: 3-0\ndata: 3\n\n");
  await settle();
  assert.deepEqual(seen.events.map((e) => e.id), ["1-0", "2-0", "3-0"]);
  fc.close();
  await settle();
  assert.equal(fc.state, "closed");
});

test("a dropped stream comes back after the server's retry:, a failed connect after jittered backoff", async () => {
  const { fc, clock, calls } = client();
  fc.subscribe("score", { since: "7-0" });
  await settle();
  assert.equal(calls[0].url.searchParams.get("lastEventId"), "7-0");
  const stream = calls[0].answerStream();
  stream.write("retry: 1234\n\n");
  await settle();
  stream.fail();
  await settle();
  assert.deepEqual(clock.pending(), [1234]);
  await clock.advance(1234);
  calls[1].fail();
  await settle();
  assert.deepEqual(clock.pending(), [250]);
  await clock.advance(250);
  calls[2].answer(503, { error: { code: "unavailable", message: "broker unavailable" } }, { "Retry-After": "2" });
  await settle();
  assert.deepEqual(clock.pending(), [2000]);
  fc.close();
  assert.deepEqual(clock.pending(), []);
});

test("401 is retried once with a fresh token; a second 401 ends the subscription with 4001", async () => {
  let issued = 0;
  const { fc, clock, calls, states } = client({ token: async () => `t${++issued}` });
  const seen = recorder();
  fc.subscribe("chat:a", seen.options);
  await settle();
  calls[0].answer(401, { error: { code: "token_expired", message: "the token expired" } });
  await settle();
  await clock.advance(clock.pending()[0]);
  assert.equal(calls[1].init.headers.Authorization, "Bearer t2");
  calls[1].answer(401, { error: { code: "invalid_token", message: "the token is not valid" } });
  await settle();
  assert.equal(seen.errors.length, 1);
  assert.equal(seen.errors[0].code, 4001);
  assert.equal(seen.errors[0].message, "the token is not valid");
  assert.deepEqual(states.at(-1), { state: "closed", code: 4001, reason: "the token is not valid", channel: "chat:a" });
  await clock.advance(60_000);
  assert.equal(calls.length, 2);
});

test("403 and 404 are final at once", async () => {
  for (const [status, code] of [[403, 4003], [404, 4004], [400, 4400]]) {
    const { fc, clock, calls } = client({ token: () => "t" });
    const seen = recorder();
    fc.subscribe("chat:a", seen.options);
    await settle();
    calls[0].answer(status, { error: { code: "x", message: "refused" } });
    await settle();
    assert.equal(seen.errors[0].code, code);
    await clock.advance(60_000);
    assert.equal(calls.length, 1);
    fc.close();
  }
});

test("SSE publishes over HTTP with the token and returns the id; each channel has its own stream", async () => {
  const storage = new MemoryStorage();
  storage.setItem("fleetcast:lastId:b", "3-3");
  const { fc, calls } = client({ token: "secret", storage });
  fc.subscribe("a", {});
  fc.subscribe("b", {});
  await settle();
  assert.deepEqual(calls.map((c) => c.url.searchParams.get("lastEventId")), [null, "3-3"]);
  const published = fc.publish("a", { x: 1 }, { type: "note" });
  await settle();
  const post = calls[2];
  assert.equal(post.init.method, "POST");
  assert.equal(post.init.headers.Authorization, "Bearer secret");
  assert.deepEqual(JSON.parse(post.init.body), { data: { x: 1 }, type: "note" });
  post.answer(201, { channel: "a", id: "10-0" });
  assert.deepEqual(await published, { id: "10-0" });
  const refused = fc.publish("a", 1);
  await settle();
  calls[3].answer(429, { error: { code: "rate_limited", message: "slow down" } });
  await assert.rejects(refused, { code: "rate_limited", status: 429 });
  fc.close();
});
