import assert from "node:assert/strict";
import { test } from "node:test";

import { BACKOFF_CAP_MS, SseParser, backoffDelay, compareIds, refreshDelay, webSocketUrl } from "../dist/client.js";

test("the SSE parser joins lines split across chunks, in any line ending, and keeps the id", () => {
  const parser = new SseParser();
  const out = [
    ...parser.feed("retry: 1500\n\n: ping\n\nid: 1-0\nev"),
    ...parser.feed("ent: score\ndata: {\"a\":\r\ndata: 1}\r"),
    ...parser.feed("\n\r\ndata: plain\n\nid: 2-5\nevent: fleetcast.gap\ndata:{}\n"),
    ...parser.feed("\n"),
  ];
  assert.deepEqual(out, [
    { kind: "retry", ms: 1500 },
    { kind: "event", id: "1-0", event: "score", data: '{"a":\n1}' },
    { kind: "event", id: "1-0", event: "message", data: "plain" },
    { kind: "event", id: "2-5", event: "fleetcast.gap", data: "{}" },
  ]);
});

test("the SSE parser ignores comments, unknown fields and a bad retry, and holds back an unfinished message", () => {
  const parser = new SseParser();
  assert.deepEqual(parser.feed(": hello\nfoo: bar\nretry: soon\nevent: x\n\n"), []);
  assert.deepEqual(parser.feed("data: half"), []);
  assert.deepEqual(parser.feed("\n\n"), [{ kind: "event", id: null, event: "message", data: "half" }]);
});

test("backoff is full jitter: uniform below min(10 s, 500 ms * 2^attempt)", () => {
  for (let attempt = 0; attempt < 12; attempt++) {
    const ceiling = Math.min(BACKOFF_CAP_MS, 500 * 2 ** attempt);
    assert.equal(backoffDelay(attempt, () => 0), 0);
    assert.equal(backoffDelay(attempt, () => 0.5), Math.floor(ceiling / 2));
    assert.ok(backoffDelay(attempt, () => 0.999999) < ceiling);
  }
  assert.equal(backoffDelay(1000, () => 0.5), 5000);
  const samples = Array.from({ length: 2000 }, () => backoffDelay(3));
  assert.ok(Math.min(...samples) < 400 && Math.max(...samples) > 3600, "spread over [0, 4000)");
});

test("event ids compare by milliseconds, then by sequence, as numbers", () => {
  assert.ok(compareIds("1733130000000-0", "1733130000000-1") < 0);
  assert.ok(compareIds("1733130000000-10", "1733130000000-9") > 0);
  assert.ok(compareIds("999-0", "1000-0") < 0);
  assert.equal(compareIds("5-5", "5-5"), 0);
});

test("a token is refreshed a quarter of its life early, at most a minute early, never in the past", () => {
  const now = 1_000_000_000_000;
  assert.equal(refreshDelay(now / 1000 + 4, now), 3000);
  assert.equal(refreshDelay(now / 1000 + 3600, now), 3_540_000);
  assert.equal(refreshDelay(now / 1000 - 10, now), 0);
});

test("the WebSocket URL follows the page's scheme", () => {
  assert.equal(webSocketUrl("https://rt.example.com"), "wss://rt.example.com/v1/ws");
  assert.equal(webSocketUrl("http://127.0.0.1:8000"), "ws://127.0.0.1:8000/v1/ws");
});
