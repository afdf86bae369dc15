// The Socket.IO peer of fleetcast's benchmark (bench/suite): one pod of a Socket.IO 4.8 fleet sharing state
// through Redis Streams with @socket.io/redis-streams-adapter.
//
// Configured the way Socket.IO's own docs recommend for performance: WebSocket transport only (no HTTP
// long-polling, no upgrade), no compression (perMessageDeflate and httpCompression off), the native
// bufferutil/utf-8-validate addons installed for the `ws` engine. Rooms are channels.
//
// Wire, mirroring fleetcast's so the same publisher and load client drive both:
//   POST /v1/channels/:channel/events  body {"data": <json>}  -> io.to(channel).emit("event", {channel, data}), 201
//   GET  /healthz                                              -> 200
//   socket event "subscribe" <channel>                         -> join the room, emit "subscribed" <channel>
//
// With --recovery it enables connection state recovery (the adapter stores sessions and replays missed packets
// from the stream), Socket.IO's counterpart of fleetcast's resume. It deliberately has no drain: Socket.IO has
// no paced-drain equivalent.
"use strict";

const http = require("node:http");
const { parseArgs } = require("node:util");
const { Server } = require("socket.io");
const { createClient } = require("redis");
const { createAdapter } = require("@socket.io/redis-streams-adapter");

const MAX_BODY = 1024 * 1024;

const { values: args } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "3000" },
    "redis-url": { type: "string", default: "redis://127.0.0.1:6379" },
    recovery: { type: "boolean", default: false },
  },
});

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

async function main() {
  const redis = createClient({ url: args["redis-url"] });
  redis.on("error", (err) => console.error("redis:", err.message));
  await redis.connect();

  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    transports: ["websocket"],
    perMessageDeflate: false,
    httpCompression: false,
    serveClient: false,
    adapter: createAdapter(redis),
    connectionStateRecovery: args.recovery ? { maxDisconnectionDuration: 120_000, skipMiddlewares: true } : undefined,
  });

  io.on("connection", (socket) => {
    socket.on("subscribe", (channel) => {
      if (typeof channel !== "string") return;
      socket.join(channel);
      socket.emit("subscribed", channel);
    });
  });

  // Socket.IO answers its own path; everything else is ours.
  httpServer.on("request", (req, res) => {
    if (req.url.startsWith("/socket.io/")) return;
    if (req.method === "GET" && req.url === "/healthz") return reply(res, 200, { status: "ok" });
    const match = /^\/v1\/channels\/([^/?]+)\/events$/.exec(req.url);
    if (req.method !== "POST" || match === null) return reply(res, 404, { error: { code: "not_found" } });
    const channel = decodeURIComponent(match[1]);
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size <= MAX_BODY) chunks.push(chunk);
    });
    req.on("end", () => {
      if (size > MAX_BODY) return reply(res, 413, { error: { code: "too_big" } });
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        return reply(res, 400, { error: { code: "bad_json" } });
      }
      io.to(channel).emit("event", { channel, data: body.data });
      reply(res, 201, { channel });
    });
  });

  httpServer.listen(Number(args.port), args.host, () => {
    console.error(`socket.io peer on ${args.host}:${args.port}`);
  });

  const shutdown = () => {
    io.close();
    redis.quit().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
