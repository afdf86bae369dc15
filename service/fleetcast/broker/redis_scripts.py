"""The Lua scripts of the Redis Streams broker: each one round trip, each atomic.

Why trimming is done by hand rather than with ``XADD ... MAXLEN ~``: Redis 7.0 updates a stream's
``max-deleted-entry-id`` on ``XDEL`` only, not when ``XADD``/``XTRIM`` trims (checked against 7.0.15), and the gap
rule of :mod:`fleetcast.broker.base` needs to know the newest event that trimming removed. So the publish script
finds the ids it is about to trim (one entry per publish in the steady state), trims exactly, and records the
newest of them with ``XSETID ... MAXDELETEDID``. ``XINFO STREAM`` then tells the truth to the read script, to
the operator and to anyone debugging with ``redis-cli``, and the record survives AOF rewrites and replication.
Nothing in fleetcast uses ``XDEL``; a manual ``XDEL`` of an id newer than the last trimmed one is overwritten
by the next trim (the gap rule then misses that one deleted entry).
"""

from __future__ import annotations

from fleetcast.broker.redis_common import Script

_IDS = """
local function parse_id(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function id_gt(a, b)
  local am, as = parse_id(a)
  local bm, bs = parse_id(b)
  return am > bm or (am == bm and as > bs)
end
local function stream_meta(key)
  -- {exists, length, first id, last generated id, max deleted id, last id}; '' where there is none
  if redis.call('EXISTS', key) == 0 then return {0, 0, '', '', '', ''} end
  local info = redis.call('XINFO', 'STREAM', key)
  local meta = {1, 0, '', '', '', ''}
  for i = 1, #info, 2 do
    local name, value = info[i], info[i + 1]
    if name == 'length' then meta[2] = value
    elseif name == 'first-entry' and value then meta[3] = value[1]
    elseif name == 'last-generated-id' then meta[4] = value
    elseif name == 'max-deleted-entry-id' then meta[5] = value
    elseif name == 'last-entry' and value then meta[6] = value[1]
    end
  end
  return meta
end
"""

PUBLISH = Script(
    _IDS
    + """
-- KEYS[1] stream, KEYS[2] idempotency record (optional)
-- ARGV: data, type, traceparent (''), max events (''), max age ms (''), idempotency ttl ms, notify channel (''),
--       idle ttl ms ('': kept forever), notify command (PUBLISH, or SPUBLISH on a cluster; absent: PUBLISH)
if KEYS[2] then
  local first = redis.call('GET', KEYS[2])
  if first then return first end
end
local id
if ARGV[3] ~= '' then
  id = redis.call('XADD', KEYS[1], '*', 'data', ARGV[1], 'type', ARGV[2], 'traceparent', ARGV[3])
else
  id = redis.call('XADD', KEYS[1], '*', 'data', ARGV[1], 'type', ARGV[2])
end
local trimmed = nil
if ARGV[5] ~= '' then
  local now = redis.call('TIME')
  local cutoff = string.format('%.0f', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    - tonumber(ARGV[5]))
  local older = redis.call('XREVRANGE', KEYS[1], '(' .. cutoff .. '-0', '-', 'COUNT', 1)
  if #older > 0 then
    trimmed = older[1][1]
    redis.call('XTRIM', KEYS[1], 'MINID', cutoff .. '-0')
  end
end
if ARGV[4] ~= '' then
  local keep = tonumber(ARGV[4])
  local excess = redis.call('XLEN', KEYS[1]) - keep
  if excess > 0 then
    local doomed = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
    local newest = doomed[#doomed][1]
    if trimmed == nil or id_gt(newest, trimmed) then trimmed = newest end
    redis.call('XTRIM', KEYS[1], 'MAXLEN', keep)
  end
end
if trimmed ~= nil then
  redis.call('XSETID', KEYS[1], id, 'MAXDELETEDID', trimmed)
end
if ARGV[8] ~= nil and ARGV[8] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
else
  redis.call('PERSIST', KEYS[1])
end
if KEYS[2] then
  redis.call('SET', KEYS[2], id, 'PX', ARGV[6])
end
if ARGV[7] ~= '' then
  local notify = ARGV[9] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH'
  redis.call(notify, ARGV[7], id .. '\\n' .. ARGV[3] .. '\\n' .. #ARGV[2] .. '\\n' .. ARGV[2] .. ARGV[1])
end
return id
"""
)
"""Append one event atomically: idempotency check, XADD, retention with exact trim bookkeeping, the stream's idle
TTL (so abandoned channels leave; an expired stream reads as a gap for any ``since`` but ``0-0``), notification.
Idempotency records keep their own expiry. On a cluster the notification is a sharded ``SPUBLISH``: its channel
carries the stream's hash tag, so it stays on the shard that runs the script instead of crossing the cluster bus."""

READ = Script(
    _IDS
    + """
-- KEYS[1] stream; ARGV: since (normalized <ms>-<seq>), limit
-- returns {gap, earliest or '', latest or '', entries}
local since, limit = ARGV[1], tonumber(ARGV[2])
local meta = stream_meta(KEYS[1])
if meta[1] == 0 then
  return {since ~= '0-0' and 1 or 0, '', '', {}}
end
local gap = 0
if meta[5] ~= '' and id_gt(meta[5], since) then
  gap = 1
elseif since ~= '0-0' and not (meta[5] ~= '' and not id_gt(since, meta[5])) then
  -- since was never deleted, so it must be retained, or this stream does not know it (history lost)
  if #redis.call('XRANGE', KEYS[1], since, since) == 0 then gap = 1 end
end
local entries
if gap == 1 then
  entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', limit)
else
  entries = redis.call('XRANGE', KEYS[1], '(' .. since, '+', 'COUNT', limit)
end
local latest = meta[4]
if latest == '0-0' then latest = '' end
return {gap, meta[3], latest, entries}
"""
)
"""Events after ``since`` with the gap rule applied atomically against the same snapshot of the stream."""

META = Script(
    _IDS
    + """
return stream_meta(KEYS[1])
"""
)
"""``{exists, length, first id, last generated id, max deleted id, last id}`` of one stream; '' for none."""
