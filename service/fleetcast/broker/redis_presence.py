"""Presence on Redis: one hash per channel, joins and leaves batched per pod, announced on the channel's
notification channel.

Keys (all from :class:`fleetcast.contract.keys.Keys`): the channel's entries in ``presence(channel)`` and the count
of entries per ``sub`` in ``presence_users(channel)`` (both tagged ``{channel}``, so one script touches both on a
Redis Cluster), and per pod the set ``presence_channels(pod)`` of channels where it holds entries (what to clean
when it dies). The scripts publish ``presence \\n <join|leave> \\n <entry JSON>`` on ``notify(channel)``, the
channel the publish script announces events on, so every pod's live reader hears joins and leaves in order with
the channel's events (:mod:`fleetcast.broker.redis_live`).

One :meth:`RedisPresence.apply` is one pipeline: one script call per channel (in chunks of :data:`CHUNK`
entries, so no call holds Redis for long) and the pod's channel set updates. Nothing is renewed per entry:
entries live with their pod's heartbeat (:mod:`fleetcast.contract.presence`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import redis.exceptions

from fleetcast.broker.redis_common import Script, execute, text, unavailable
from fleetcast.broker.redis_connect import Mode, connect
from fleetcast.contract.keys import Keys
from fleetcast.contract.presence import Entry, Stats

MARK = b"presence\n"
"""How a presence announcement starts on a notification channel (an event's starts with its id, a digit)."""
CHUNK = 500
"""Entries per script call."""
PAGE_MAX = 1000

_COUNT = """
local function count(users, sub, delta)
  if sub == '' then return end
  local n = redis.call('HINCRBY', users, sub, delta)
  if n <= 0 then redis.call('HDEL', users, sub) end
end
"""

APPLY = Script(
    _COUNT
    + """
-- KEYS[1] entries, KEYS[2] users; ARGV: notify channel ('': announce nothing), notify command (PUBLISH, or
-- SPUBLISH on a cluster), number of joins, then per join: field, entry, sub ('' if anonymous); then per leave:
-- field, conn
local notify, publish, joins = ARGV[1], ARGV[2] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH', tonumber(ARGV[3])
local i = 4
for _ = 1, joins do
  local field, entry, sub = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  i = i + 3
  if redis.call('HSET', KEYS[1], field, entry) == 1 then
    count(KEYS[2], sub, 1)
    if notify ~= '' then redis.call(publish, notify, 'presence\\njoin\\n' .. entry) end
  end
end
while i <= #ARGV do
  local field, conn = ARGV[i], ARGV[i + 1]
  i = i + 2
  local stored = redis.call('HGET', KEYS[1], field)
  if stored then
    local entry = cjson.decode(stored)
    if entry.conn == conn then
      redis.call('HDEL', KEYS[1], field)
      count(KEYS[2], type(entry.sub) == 'string' and entry.sub or '', -1)
      if notify ~= '' then redis.call(publish, notify, 'presence\\nleave\\n' .. stored) end
    end
  end
end
return 1
"""
)
"""Joins (announced when the identity was absent) and leaves (deleted and announced only while the entry still
carries the leaving connection) of one channel, atomically."""

REAP = Script(
    _COUNT
    + """
-- KEYS[1] entries, KEYS[2] users; ARGV: notify channel, notify command (PUBLISH or SPUBLISH), dead pod, prefix of
-- the connections to keep ('': none), fields...
local publish = ARGV[2] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH'
local keep = ARGV[4]
local removed = 0
for i = 5, #ARGV do
  local stored = redis.call('HGET', KEYS[1], ARGV[i])
  if stored then
    local entry = cjson.decode(stored)
    if entry.pod == ARGV[3] and (keep == '' or string.sub(entry.conn, 1, #keep) ~= keep) then
      redis.call('HDEL', KEYS[1], ARGV[i])
      count(KEYS[2], type(entry.sub) == 'string' and entry.sub or '', -1)
      redis.call(publish, ARGV[1], 'presence\\nleave\\n' .. stored)
      removed = removed + 1
    end
  end
end
return removed
"""
)
"""Delete the given entries of a dead pod (checked again here: another pod may have taken them over), or of an
earlier process of this pod (``keep``: the connection prefix of the current one)."""


class RedisPresence:
    """A :class:`fleetcast.broker.presence.PresenceStore` on Redis (announcements arrive through the live
    reader, like events)."""

    def __init__(self, url: str, *, keys: Keys, timeout: float = 2.0, mode: Mode = "standalone") -> None:
        self.keys = keys
        self._target = connect(url, mode=mode, timeout=timeout, max_connections=4)
        self._client = self._target.client
        self._publish = "SPUBLISH" if self._target.cluster else "PUBLISH"
        """How announcements go out: on a cluster as sharded messages, like the publish script's notifications."""

    async def close(self) -> None:
        await self._target.close()

    async def apply(
        self,
        pod: str,
        joins: Sequence[Entry],
        leaves: Sequence[Entry],
        emptied: Sequence[str],
        quiet: Collection[str] = (),
    ) -> None:
        keys = self.keys
        by_channel: dict[str, tuple[list[Entry], list[Entry]]] = defaultdict(lambda: ([], []))
        for entry in joins:
            by_channel[entry.channel][0].append(entry)
        for entry in leaves:
            by_channel[entry.channel][1].append(entry)
        calls: list[tuple[list[str], list[str | int]]] = []
        for channel, (joined, left) in by_channel.items():
            for start in range(0, max(len(joined), len(left)), CHUNK):
                notify = "" if channel in quiet else keys.notify(channel)
                args: list[str | int] = [notify, self._publish, len(joined[start : start + CHUNK])]
                for e in joined[start : start + CHUNK]:
                    args += [e.field, e.to_json(), e.sub or ""]
                for e in left[start : start + CHUNK]:
                    args += [e.field, e.conn]
                calls.append(([keys.presence(channel), keys.presence_users(channel)], args))
        added = sorted({e.channel for e in joins})
        async with self._target.slot():
            with unavailable("presence"):
                try:
                    await self._pipeline(pod, calls, added, emptied, by_sha=True)
                except redis.exceptions.NoScriptError:
                    await self._pipeline(pod, calls, added, emptied, by_sha=False)

    async def _pipeline(
        self,
        pod: str,
        calls: list[tuple[list[str], list[str | int]]],
        added: Sequence[str],
        emptied: Sequence[str],
        *,
        by_sha: bool,
    ) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            if added:
                pipe.execute_command("SADD", self.keys.presence_channels(pod), *added)
            for keys, args in calls:
                head = ("EVALSHA", APPLY.sha) if by_sha else ("EVAL", APPLY.text)
                pipe.execute_command(*head, len(keys), *keys, *args)
            if emptied:
                pipe.execute_command("SREM", self.keys.presence_channels(pod), *emptied)
            await pipe.execute()

    async def page(self, channel: str, cursor: int, count: int) -> tuple[list[Entry], int]:
        key = self.keys.presence(channel)
        async with self._target.slot():
            with unavailable("presence"):
                reply = await execute(self._client, "HSCAN", key, cursor, "COUNT", min(max(count, 1), PAGE_MAX))
        next_cursor, flat = reply
        entries = []
        for _, value in _pairs(flat):
            try:
                entries.append(Entry.from_json(channel, value))
            except ValueError:
                continue  # not ours to interpret; the reaper leaves it too
        return entries, int(next_cursor)

    async def stats(self, channel: str) -> Stats:
        async with self._target.slot():
            with unavailable("presence"):
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.execute_command("HLEN", self.keys.presence(channel))
                    pipe.execute_command("HLEN", self.keys.presence_users(channel))
                    clients, users = await pipe.execute()
        return Stats(clients=int(clients), users=int(users))

    async def reap(self, pod: str, keep: str = "") -> int:
        """Scan each channel the dead pod held entries in, page by page, and delete its entries (but those whose
        connection starts with ``keep``, whose channels then stay in the index)."""
        index = self.keys.presence_channels(pod)
        async with self._target.slot():
            return await self._reap(pod, index, keep)

    async def forget(self, pod: str) -> None:
        async with self._target.slot():
            with unavailable("presence"):
                await execute(self._client, "DEL", self.keys.presence_channels(pod))

    async def _reap(self, pod: str, index: str, keep: str) -> int:
        removed = 0
        with unavailable("presence"):
            channels = [text(c) for c in await execute(self._client, "SMEMBERS", index)]
            for channel in channels:
                keys = [self.keys.presence(channel), self.keys.presence_users(channel)]
                cursor = 0
                while True:
                    cursor, flat = await execute(self._client, "HSCAN", keys[0], cursor, "COUNT", PAGE_MAX)
                    fields = [text(f) for f, v in _pairs(flat) if _of_pod(v, pod)]
                    if fields:
                        args = [self.keys.notify(channel), self._publish, pod, keep, *fields]
                        removed += int(await REAP.run(self._client, keys, args))
                    if int(cursor) == 0:
                        break
            if not keep:
                await execute(self._client, "DEL", index)
        return removed


def _of_pod(value: bytes, pod: str) -> bool:
    """A cheap pre-filter (the script checks again, exactly)."""
    return f'"pod":{_json_str(pod)}'.encode() in value


def _json_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _pairs(flat: Any) -> Iterable[tuple[Any, Any]]:
    """HSCAN's field/value pairs, whether the client parsed them into a dict or left them flat."""
    if isinstance(flat, dict):
        return flat.items()
    return zip(flat[::2], flat[1::2], strict=True)
