/**
 * The Lua scripts the Redis backend runs. Each publish and each read is one script, so it is one
 * round trip and atomic on one server.
 *
 * ## Ids
 *
 * A message's sequence number is `max(last + 1, serverTimeMs * 1024)`: strictly increasing across
 * every topic (one counter), and floored by Redis's own clock, so a counter that went back (a
 * restart that lost the last writes) never issues a number twice. Its stream entry id is
 * `<seq / 1024>-<seq % 1024>`: the first part is then (almost always) the publish time in ms, so
 * `MINID` trims by age, and the mapping keeps order both ways. Numbers stay below 2^53: Lua's
 * doubles hold them exactly until the year 2248.
 *
 * ## Gaps
 *
 * A log is trimmed from its oldest end only (`MAXLEN` by count, `MINID` by age), and each trim
 * records the newest id it removed as the stream's `max-deleted-entry-id` (`XSETID ...
 * MAXDELETEDID`, Redis 7.0). A read after a cursor older than that id reports a gap. Topics whose
 * whole log expired leave the index; the newest sequence number dropped so is kept in the meta
 * hash (`d`), and a cursor older than it reports a gap too.
 *
 * @module
 * @internal
 */

/** Helpers every script shares. */
const HELPERS = `
local function fmt(n) return string.format('%.0f', n) end
local function sid(seq) return fmt(math.floor(seq / 1024)) .. '-' .. fmt(seq % 1024) end
local function seqof(id)
  local ms, n = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms) * 1024 + tonumber(n)
end
local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;

/**
 * Takes the next sequence number. Expects `meta` (the meta hash key), `index` (the topic index
 * key), `newEpoch`, `topic`, `maxAge` (ms, -1 for none), `store` ('1' or '0') as locals; sets
 * `epoch`, `seq`, `now`.
 */
const NEXT = `
local m = redis.call('HMGET', meta, 'e', 's', 'd')
local epoch = m[1]
if not epoch then
  epoch = newEpoch
  redis.call('HSET', meta, 'e', epoch)
end
local now = nowms()
local seq = math.max((tonumber(m[2]) or 0) + 1, now * 1024)
redis.call('HSET', meta, 's', fmt(seq))
if store == '1' then redis.call('ZADD', index, seq, topic) end
if maxAge >= 0 and seq % 32 == 0 then
  -- Now and then (1 publish in 32): topics whose newest message expired leave the index, and the
  -- newest seq dropped so is remembered. Reads check each topic's own stream meanwhile.
  local cut = '(' .. fmt((now - maxAge) * 1024)
  local gone = redis.call('ZREVRANGEBYSCORE', index, cut, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if gone[1] then
    redis.call('ZREMRANGEBYSCORE', index, '-inf', cut)
    if tonumber(gone[2]) > (tonumber(m[3]) or 0) then redis.call('HSET', meta, 'd', gone[2]) end
  end
end
`;

/**
 * Appends to a topic's stream and notifies. Expects `key`, `epoch`, `seq`, `now`, `topic`, `data`,
 * `headers`, `maxCount`, `maxAge`, `channel`, `store` as locals; sets `len` (entries after the
 * append, 0 when not stored), or returns `{'retry'}` when the stream already holds a later id
 * (only possible when the counter lives on another cluster node).
 */
const APPEND = `
local len = 0
if store == '1' and maxCount > 0 then
  local id = sid(seq)
  local deleted = nil
  local aged = false
  local n = redis.call('XLEN', key)
  local first = nil
  if n > 0 and (n >= maxCount or maxAge >= 0) then first = redis.call('XRANGE', key, '-', '+', 'COUNT', math.max(1, n - maxCount + 1)) end
  if n >= maxCount then deleted = first[#first][1] end
  local added
  if headers == '' then
    added = redis.pcall('XADD', key, 'MAXLEN', maxCount, id, 'd', data)
  else
    added = redis.pcall('XADD', key, 'MAXLEN', maxCount, id, 'd', data, 'h', headers)
  end
  -- Refused only when the stream holds a later id: the counter is on another cluster node and a
  -- later seq got here first. Nothing was written; the caller takes a new seq.
  if type(added) == 'table' and added.err then return {'retry'} end
  if maxAge >= 0 then
    -- Only when the oldest entry is past its age (XREVRANGE scans a node backwards: not per publish).
    local cut = (now - maxAge) * 1024
    if first ~= nil and first[1] ~= nil and seqof(first[1][1]) < cut then
      local min = sid(cut)
      local expired = redis.call('XREVRANGE', key, '(' .. min, '-', 'COUNT', 1)
      if expired[1] then
        if deleted == nil or seqof(expired[1][1]) > seqof(deleted) then deleted = expired[1][1] end
        redis.call('XTRIM', key, 'MINID', min)
        aged = true
      end
    end
    -- The whole log is past its age once its newest entry is: let the key go then.
    redis.call('PEXPIRE', key, maxAge + 1000)
  end
  if deleted ~= nil then redis.call('XSETID', key, id, 'MAXDELETEDID', deleted) end
  if aged then len = redis.call('XLEN', key) else len = math.min(n + 1, maxCount) end
end
redis.call('PUBLISH', channel, epoch .. '\\n' .. fmt(seq) .. '\\n' .. topic .. '\\n' .. headers .. '\\n' .. data)
`;

/**
 * Publish on one server (or one cluster slot): every key in one script.
 * KEYS: meta, index, stream. ARGV: newEpoch, topic, data, headers, maxCount, maxAge, channel, store.
 * Returns `{epoch, seq, len}`.
 */
export const PUBLISH_ONE = `${HELPERS}
local meta, index, key = KEYS[1], KEYS[2], KEYS[3]
local newEpoch, topic, data, headers = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local maxCount, maxAge, channel, store = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], ARGV[8]
${NEXT}
${APPEND}
return {epoch, fmt(seq), len}
`;

/**
 * Cluster, step 1 (the meta slot): the next sequence number.
 * KEYS: meta, index. ARGV: newEpoch, topic, maxAge, store. Returns `{epoch, seq, now}`.
 */
export const PUBLISH_NEXT = `${HELPERS}
local meta, index = KEYS[1], KEYS[2]
local newEpoch, topic, maxAge, store = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
${NEXT}
return {epoch, fmt(seq), fmt(now)}
`;

/**
 * Cluster, step 2 (the topic's slot): append and notify.
 * KEYS: stream. ARGV: epoch, seq, now, topic, data, headers, maxCount, maxAge, channel, store.
 * Returns `{epoch, seq, len}` or `{'retry'}`.
 */
export const PUBLISH_APPEND = `${HELPERS}
local key = KEYS[1]
local epoch, seq, now, topic, data, headers = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local maxCount, maxAge, channel, store = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], ARGV[10]
${APPEND}
return {epoch, fmt(seq), len}
`;

/**
 * Reads the meta state, creating the epoch when there is none.
 * Expects `meta`, `newEpoch`; sets `epoch`, `top` (the last seq issued), `dropped`.
 */
const META = `
local m = redis.call('HMGET', meta, 'e', 's', 'd')
local epoch = m[1]
if not epoch then
  epoch = newEpoch
  redis.call('HSET', meta, 'e', epoch)
end
local top = tonumber(m[2]) or 0
local dropped = tonumber(m[3]) or 0
`;

/**
 * Reads streams after `after` (-1: from the oldest), up to `last` (a seq), at most `limit` + 1
 * entries each. Expects locals `after`, `last`, `limit`, `maxAge`, `index`; a function
 * `streams()` yields (key, topic). Appends `{gap, entries}` per stream to `out`.
 */
const STREAMS = `
local now = nowms()
local min = -1
if maxAge >= 0 then min = (now - maxAge) * 1024 end
for key, topic in streams() do
  local gap = 0
  local entries = {}
  if redis.call('EXISTS', key) == 1 then
    local deleted = -1
    local info = redis.call('XINFO', 'STREAM', key)
    for i = 1, #info, 2 do
      if info[i] == 'max-deleted-entry-id' then deleted = seqof(info[i + 1]) end
    end
    local start = '-'
    if after >= 0 then start = '(' .. sid(after) end
    if min >= 0 then
      local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
      if first[1] and seqof(first[1][1]) < min then
        local expired = redis.call('XREVRANGE', key, '(' .. sid(min), '-', 'COUNT', 1)
        if expired[1] then
          local e = seqof(expired[1][1])
          if e > deleted then deleted = e end
        end
      end
      if after < min then start = sid(min) end
    end
    if after >= 0 and deleted > 0 and deleted > after then gap = 1 end
    if last >= 0 then
      entries = redis.call('XRANGE', key, start, sid(last), 'COUNT', limit + 1)
    end
  elseif after >= 0 and index ~= nil then
    local score = redis.call('ZSCORE', index, topic)
    if score and tonumber(score) > after then gap = 1 end
  end
  out[#out + 1] = gap
  out[#out + 1] = entries
end
`;

/**
 * Read on one server (or one slot): meta and streams in one script.
 * KEYS: meta, index, stream... ARGV: newEpoch, cursorEpoch ('' = from the oldest), cursorSeq,
 * limit, maxAge, last ('' = the head), topic... (one per stream).
 * Returns `{epoch, top, gapAll, (gap, entries)...}` or `{'ahead', epoch, top}`.
 */
export const READ_ONE = `${HELPERS}
local meta, index, newEpoch = KEYS[1], KEYS[2], ARGV[1]
${META}
local after = -1
local gapAll = 0
if ARGV[2] ~= '' then
  if ARGV[2] ~= epoch then
    gapAll = 1
  else
    after = tonumber(ARGV[3])
    if after > top then return {'ahead', epoch, fmt(top)} end
    if after < dropped then gapAll = 1 end
  end
end
local limit, maxAge = tonumber(ARGV[4]), tonumber(ARGV[5])
local last = top
if ARGV[6] ~= '' then last = math.min(top, tonumber(ARGV[6])) end
local out = {epoch, fmt(top), gapAll}
local function streams()
  local i = 2
  return function()
    i = i + 1
    if KEYS[i] == nil then return nil end
    return KEYS[i], ARGV[4 + i]
  end
end
${STREAMS}
return out
`;

/**
 * Cluster, or a pattern read: the meta state and the topics with messages after `after`.
 * KEYS: meta, index. ARGV: newEpoch, cursorEpoch, cursorSeq, listTopics ('1' or '0').
 * Returns `{epoch, top, dropped, topics}` where topics is a flat list (topic, score...).
 */
export const READ_META = `${HELPERS}
local meta, index, newEpoch = KEYS[1], KEYS[2], ARGV[1]
${META}
local topics = {}
if ARGV[4] == '1' then
  local from = '-inf'
  if ARGV[2] == epoch then from = '(' .. ARGV[3] end
  topics = redis.call('ZRANGEBYSCORE', index, from, '+inf')
end
return {epoch, fmt(top), fmt(dropped), topics}
`;

/**
 * Cluster, or a pattern read: streams only (keys of one slot, or any keys on one server).
 * KEYS: stream... ARGV: after (-1 from the oldest), last (the head read before), limit, maxAge,
 * topic... Returns `{(gap, entries)...}`.
 */
export const READ_STREAMS = `${HELPERS}
local after, last, limit, maxAge = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local index = nil
local out = {}
local function streams()
  local i = 0
  return function()
    i = i + 1
    if KEYS[i] == nil then return nil end
    return KEYS[i], ARGV[4 + i]
  end
end
${STREAMS}
return out
`;

/**
 * The head: the epoch (created when missing) and the last seq issued.
 * KEYS: meta. ARGV: newEpoch. Returns `{epoch, top}`.
 */
export const HEAD = `${HELPERS}
local meta, newEpoch = KEYS[1], ARGV[1]
${META}
return {epoch, fmt(top)}
`;

/**
 * After a reconnect: detects a Redis that lost writes. When the epoch is the one this process
 * knew and the counter is below a seq this process saw, the log went back in time: a new epoch
 * makes every older cursor a gap instead of silently skipping what is issued again. The counter
 * never goes back.
 * KEYS: meta. ARGV: newEpoch, knownEpoch, seenSeq. Returns `{epoch, top, rotated}`.
 */
export const RECOVER = `${HELPERS}
local meta, newEpoch = KEYS[1], ARGV[1]
${META}
local rotated = 0
local seen = tonumber(ARGV[3])
if epoch == ARGV[2] and top < seen then
  epoch = newEpoch
  rotated = 1
  redis.call('HSET', meta, 'e', epoch, 's', fmt(seen))
  top = seen
end
return {epoch, fmt(top), rotated}
`;
