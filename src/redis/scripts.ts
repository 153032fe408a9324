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
 * ## Bounds across topics
 *
 * The meta hash also counts the bytes kept in every stream (`b`: the data and headers of each
 * entry as stored), and a hash on the meta slot (`<prefix>{m}:bytes`) counts them per topic; the
 * topic index, scored by each topic's newest sequence number, orders topics by recency. Each
 * publish adds its entry's bytes and takes off what its count and age trims removed (the script
 * reads those entries before trimming, so the count stays exact). No count goes below zero:
 * streams written before the counts existed (or by an older version) hold bytes never counted,
 * and their trims take off at most what was. Past `maxTopics` (on a new topic) or past
 * `maxTotalBytes`, the least recently published topics leave whole, as an expired one does (`d`
 * is raised to their newest seq, so readers behind it on any topic see a gap); when the topic
 * being published is the only one left, its own oldest entries are trimmed instead, recorded as
 * `max-deleted-entry-id` like every trim.
 *
 * A stream can also go without a trim seeing it: an idle topic's key expires (`maxAge` + 1 s
 * after its last publish), or someone deletes it. When a publish finds its topic's stream empty
 * although the topic is in the index, its old count leaves the total, and the new stream records
 * the topic's previous score as its `max-deleted-entry-id`, so a reader behind it sees a gap.
 *
 * Evicted topics' streams are on keys the publish script could not name in advance: the script
 * returns them with their scores, and the publishing process drops them with
 * {@link DROP_EVICTED} right after, which keeps only entries newer than the score (the topic may
 * have been published again in between). Every key a script touches is in its KEYS.
 *
 * The cost per publish on one server: one `HINCRBY` (per-topic bytes) and two more fields in the
 * meta `HSET`; `ZCARD` on a new topic only; `ZSCORE` and `HGET` only when the stream is empty;
 * eviction, and one more round trip to drop what it evicted, only when over or when the age sweep
 * (1 publish in 32) finds expired topics.
 *
 * On a cluster the streams live on other nodes than the meta slot: step 1 (the meta slot) keeps
 * the counts (one more `ZSCORE` per publish: it cannot see the stream) and chooses what leaves,
 * step 2 appends and trims, and the publishing process drops evicted streams on their nodes right
 * after. The bytes a step 2 trimmed (or found gone) are taken off by that process's next step 1.
 * A process that dies in between leaves the count high (more is trimmed, never less) or an
 * evicted stream until its age TTL.
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
-- The bytes an entry counts for: its field values (data and headers) as stored.
local function esize(e)
  local n = 0
  local f = e[2]
  for i = 2, #f, 2 do n = n + #f[i] end
  return n
end
`;

/**
 * Trims a stream's oldest entries until \`want\` bytes are gone (or the stream is empty), and
 * records the newest one trimmed as its \`max-deleted-entry-id\`, as every other trim does.
 * \`topid\` is the stream's newest id. Returns the bytes and the entries trimmed. O(entries trimmed).
 */
const TRIM_OLDEST = `
local function trimOldest(key, want, topid)
  local removed, count, last = 0, 0, nil
  while removed < want do
    local from = '-'
    if last ~= nil then from = '(' .. last end
    local page = redis.call('XRANGE', key, from, '+', 'COUNT', 64)
    if #page == 0 then break end
    for i = 1, #page do
      removed = removed + esize(page[i])
      count = count + 1
      last = page[i][1]
      if removed >= want then break end
    end
  end
  if last ~= nil then
    redis.call('XTRIM', key, 'MINID', sid(seqof(last) + 1))
    redis.call('XSETID', key, topid, 'MAXDELETEDID', last)
  end
  return removed, count
end
`;

/**
 * Takes the next sequence number and keeps the bounds across topics. Expects `meta`, `index`,
 * `bytesKey` (topic -> bytes kept), `newEpoch`, `topic`, `maxAge` (ms, -1 for none), `store`
 * ('1' or '0'), `maxTopics`, `probe` (look up the topic's previous score before it moves: the
 * caller found its stream empty, or cannot know) as locals; sets `epoch`, `seq`, `now`, `total`
 * (bytes kept in all streams), `dropped`, `prev` (the topic's score before this publish when
 * probed, else nil), `evicted` (a flat list of topic, score: the topics whose stream the caller
 * must drop) and the functions `charge`, `evict` and `overBudget`. The meta hash is written by
 * {@link FINISH}. Split in two: {@link NEXT_META} reads the meta hash (once per script), then
 * {@link NEXT_SEQ} takes each message's seq.
 */
const NEXT_META = `
local m = redis.call('HMGET', meta, 'e', 's', 'd', 'b')
local epoch = m[1]
if not epoch then
  epoch = newEpoch
  redis.call('HSET', meta, 'e', epoch)
end
local now = nowms()
-- The last seq issued; each message takes the next (see NEXT_SEQ).
local last = tonumber(m[2]) or 0
local seq, seqText, prev = 0, '0', nil
local dropped = tonumber(m[3]) or 0
local dropped0 = dropped
local total = tonumber(m[4]) or 0
local evicted = {}
-- Set by PUBLISH_MANY: called with each topic evicted, to drop at once a stream the batch holds.
local onEvict = nil
-- Adds delta to a topic's count and the change to the total, neither ever below zero: a stream
-- written before the counts existed (or by an older version) holds bytes never counted, and its
-- trims take off at most what was. Returns the topic's count after.
local function charge(t, delta)
  if delta == 0 then return 0 end
  local left = redis.call('HINCRBY', bytesKey, t, delta)
  if left <= 0 then redis.call('HDEL', bytesKey, t) end
  total = math.max(0, total + math.max(left, 0) - math.max(left - delta, 0))
  return math.max(left, 0)
end
-- A topic whose stream is gone (expired, deleted): its count leaves the total.
local function uncount(t)
  local tb = tonumber(redis.call('HGET', bytesKey, t))
  if tb ~= nil then
    redis.call('HDEL', bytesKey, t)
    total = math.max(0, total - math.max(tb, 0))
  end
end
-- A topic leaves with its whole log: its bytes leave the total, and the newest seq dropped so is
-- remembered (a cursor older than it reports a gap). The caller drops the stream (only what the
-- score covers: the topic may be published again meanwhile).
local function evict(t, score)
  redis.call('ZREM', index, t)
  uncount(t)
  if score > dropped then dropped = score end
  if onEvict ~= nil then onEvict(t) end
  evicted[#evicted + 1] = t
  evicted[#evicted + 1] = fmt(score)
end
-- Past the byte budget, the least recently published topics leave whole, but never the one being
-- published: returns how many bytes are still over when it is the only one left (to trim from
-- its own oldest end), else 0. At most 100 topics a call; the next publish goes on.
local function overBudget(maxBytes)
  for _ = 1, 100 do
    if total <= maxBytes then return 0 end
    local lru = redis.call('ZRANGE', index, 0, 0, 'WITHSCORES')
    if lru[1] == nil then return 0 end
    if lru[1] == topic then return total - maxBytes end
    evict(lru[1], tonumber(lru[2]))
  end
  return 0
end
`;

/**
 * Takes the next sequence number for one message, after {@link NEXT_META} (once per script; once
 * per message in {@link PUBLISH_MANY}). Expects `topic`, `store` and `probe` as locals.
 */
const NEXT_SEQ = `
seq = math.max(last + 1, now * 1024)
last = seq
seqText = fmt(seq)
prev = nil
if store == '1' then
  if probe then
    local z = redis.call('ZSCORE', index, topic)
    if z then prev = tonumber(z) end
  end
  if redis.call('ZADD', index, seq, topic) == 1 then
    -- A new topic: past maxTopics, the least recently published leave.
    local over = redis.call('ZCARD', index) - maxTopics
    for _ = 1, math.min(over, 100) do
      local lru = redis.call('ZRANGE', index, 0, 0, 'WITHSCORES')
      if lru[1] == nil or lru[1] == topic then break end
      evict(lru[1], tonumber(lru[2]))
    end
  end
end
if maxAge >= 0 and seq % 32 == 0 then
  -- Now and then (1 publish in 32): topics whose newest message expired leave the index and the
  -- count, at most 100 at a time (their streams are dropped by the caller, or expire by their TTL
  -- a second later). Reads check each topic's own stream meanwhile.
  local cut = '(' .. fmt((now - maxAge) * 1024)
  local gone = redis.call('ZRANGEBYSCORE', index, '-inf', cut, 'WITHSCORES', 'LIMIT', 0, 100)
  for i = 1, #gone, 2 do evict(gone[i], tonumber(gone[i + 1])) end
end
`;

/**
 * Writes the meta hash: the sequence number, the bytes kept and (when it moved) the newest seq
 * dropped. Expects `seqText` (`fmt(seq)`, formatted once per script).
 */
const FINISH = `
if dropped ~= dropped0 then
  redis.call('HSET', meta, 's', seqText, 'b', fmt(total), 'd', fmt(dropped))
else
  redis.call('HSET', meta, 's', seqText, 'b', fmt(total))
end
`;

/**
 * Appends to a topic's stream and notifies. Expects `key`, `epoch`, `seq`, `now`, `topic`, `data`,
 * `headers`, `maxCount`, `maxAge`, `channel`, `store`, `n` (`XLEN key`, when storing), `expire(key)` (sets the
 * key's TTL to `maxAge` + 1 s: the whole log is past its age once its newest entry is), `stale`
 * (when the stream is empty although the topic was published before, the newest seq it held:
 * recorded as trimmed, so readers behind it see a gap; else nil) as locals; sets `len` (entries after the
 * append, 0 when not stored), `id` (the entry's id), `stored`, and `removed` (bytes the count and
 * age bounds trimmed), or returns `{'retry'}` when the stream already holds a later id (only
 * possible when the counter lives on another cluster node, or another writer wrote by hand).
 */
const APPEND = `
local len = 0
local removed = 0
local stored = false
local id = sid(seq)
if store == '1' and maxCount > 0 then
  local deleted = nil
  if stale ~= nil then deleted = sid(stale) end
  local aged = false
  local first = nil
  if n > 0 and (n >= maxCount or maxAge >= 0) then first = redis.call('XRANGE', key, '-', '+', 'COUNT', math.max(1, n - maxCount + 1)) end
  local added
  if headers == '' then
    added = redis.pcall('XADD', key, 'MAXLEN', maxCount, id, 'd', data)
  else
    added = redis.pcall('XADD', key, 'MAXLEN', maxCount, id, 'd', data, 'h', headers)
  end
  -- Refused only when the stream holds a later id: the counter is on another cluster node and a
  -- later seq got here first. Nothing was written; the caller takes a new seq.
  if type(added) == 'table' and added.err then return retry() end
  stored = true
  if n >= maxCount then
    deleted = first[#first][1]
    for i = 1, #first do removed = removed + esize(first[i]) end
  end
  if maxAge >= 0 then
    -- Only when the oldest entry is past its age (the range reads what it trims: not per publish).
    local cut = (now - maxAge) * 1024
    if first ~= nil and first[1] ~= nil and seqof(first[1][1]) < cut then
      local min = sid(cut)
      local expired = redis.call('XRANGE', key, '-', '(' .. min, 'COUNT', 1024)
      if expired[1] then
        local newest = expired[#expired][1]
        for i = 1, #expired do removed = removed + esize(expired[i]) end
        if deleted == nil or seqof(newest) > seqof(deleted) then deleted = newest end
        redis.call('XTRIM', key, 'MINID', sid(seqof(newest) + 1))
        aged = true
      end
    end
    -- The whole log is past its age once its newest entry is: let the key go then.
    expire(key)
  end
  if deleted ~= nil then redis.call('XSETID', key, id, 'MAXDELETEDID', deleted) end
  if aged then len = redis.call('XLEN', key) else len = math.min(n + 1, maxCount) end
end
redis.call('PUBLISH', channel, epoch .. '\\n' .. seqText .. '\\n' .. topic .. '\\n' .. headers .. '\\n' .. data)
`;

/**
 * After {@link APPEND}: a stored entry's bytes are counted to its topic, and past `maxBytes` the
 * least recently published topics leave (or, alone over the budget, the topic trims its own
 * oldest entries). Expects `stored`, `data`, `headers`, `removed`, `key`, `id`, `len` as locals.
 */
const BOUND = `
if stored then
  local size = #data + #headers
  charge(topic, size - removed)
  local over = overBudget(maxBytes)
  if over > 0 then
    local gone, trimmed = trimOldest(key, over, id)
    charge(topic, -gone)
    len = len - trimmed
  end
end
`;

/**
 * Publish on one server: every key it touches is in KEYS.
 * KEYS: meta, index, stream, bytes. ARGV: newEpoch, topic, data, headers, maxCount, maxAge,
 * channel, store, maxBytes, maxTopics. Returns `{epoch, seq, len, evicted...}` or
 * `{'retry', evicted...}`, where `evicted` is (topic, score) pairs whose streams the caller drops
 * with {@link DROP_EVICTED} (they are on keys not known before the script ran).
 */
export const PUBLISH_ONE = `${HELPERS}${TRIM_OLDEST}
local meta, index, key, bytesKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local newEpoch, topic, data, headers = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local maxCount, maxAge, channel, store = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], ARGV[8]
local maxBytes, maxTopics = tonumber(ARGV[9]), tonumber(ARGV[10])
local n = 0
if store == '1' and maxCount > 0 then n = redis.call('XLEN', key) end
-- An empty stream of a topic published before (its key expired, or was deleted): see below.
local probe = store == '1' and maxCount > 0 and n == 0
${NEXT_META}
${NEXT_SEQ}
local function expire(k) redis.call('PEXPIRE', k, maxAge + 1000) end
local stale = nil
if prev ~= nil then
  -- The stream went without a trim counting it: its bytes leave the count now (else they would
  -- stay counted for ever), and its newest seq is recorded as trimmed when the stream is made again.
  stale = prev
  uncount(topic)
end
local function retry()
  ${FINISH}
  local out = {'retry'}
  for i = 1, #evicted do out[#out + 1] = evicted[i] end
  return out
end
${APPEND}
${BOUND}
${FINISH}
local out = {epoch, seqText, len}
for i = 1, #evicted do out[#out + 1] = evicted[i] end
return out
`;

/**
 * Publish a batch on one server: what {@link PUBLISH_ONE} does for each message, in order, with
 * the meta hash read and written once, each stream's length read once, and each stream's TTL set
 * once (the script's clock is read once: every message of the batch has the same `now`). Each
 * message takes the next seq, so ids stay ordered across processes as one by one.
 * KEYS: meta, index, bytes, stream... (one per topic of the batch). ARGV: newEpoch, maxCount,
 * maxAge, channel, maxBytes, maxTopics, count, then per message (key number: 1 for the first
 * stream key, store, data, headers), then the topic of each stream key.
 * Returns `{epoch, count, (seq, len)..., evicted...}`; a message whose stream held a later id
 * (only when another writer wrote by hand) has seq `'retry'`: nothing was written for it, and the
 * caller publishes it again.
 */
export const PUBLISH_MANY = `${HELPERS}${TRIM_OLDEST}
local meta, index, bytesKey = KEYS[1], KEYS[2], KEYS[3]
local newEpoch, maxCount, maxAge, channel = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local maxBytes, maxTopics, count = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local topic, key, data, headers, store = '', '', '', '', '0'
${NEXT_META}
-- Each stream's length after the batch's last append to it (read once, then kept here).
local lens = {}
local expiring = {}
local function expire(k) expiring[k] = true end
local function retry() return 'retry' end
-- A topic of this batch evicted (by a later topic of the batch, or the byte budget) is dropped
-- here, not after the script: its stream holds only what the eviction covers, and a later message
-- of the batch to it must start an empty stream, its old bytes (already uncounted) never trimmed
-- and counted off a second time. The caller's drop then finds only newer entries and keeps them.
local keyOf = {}
for k = 1, #KEYS - 3 do keyOf[ARGV[7 + count * 4 + k]] = KEYS[3 + k] end
onEvict = function(t)
  local k = keyOf[t]
  if k ~= nil then
    redis.call('DEL', k)
    lens[k] = 0
  end
end
local function one()
  local n = 0
  if store == '1' and maxCount > 0 then
    n = lens[key]
    if n == nil then n = redis.call('XLEN', key) end
  end
  local probe = store == '1' and maxCount > 0 and n == 0
  ${NEXT_SEQ}
  local stale = nil
  if prev ~= nil then
    stale = prev
    uncount(topic)
  end
  ${APPEND}
  ${BOUND}
  if stored then lens[key] = len end
  return len
end
local out = {epoch, count}
local topics = 7 + count * 4
for i = 0, count - 1 do
  local b = 8 + i * 4
  local k = tonumber(ARGV[b])
  key, topic, store, data, headers = KEYS[3 + k], ARGV[topics + k], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local len = one()
  if len == 'retry' then
    out[#out + 1] = 'retry'
    out[#out + 1] = 0
  else
    out[#out + 1] = seqText
    out[#out + 1] = len
  end
end
${FINISH}
for k in pairs(expiring) do redis.call('PEXPIRE', k, maxAge + 1000) end
for i = 1, #evicted do out[#out + 1] = evicted[i] end
return out
`;

/**
 * Cluster, step 1 (the meta slot): the next sequence number, and the bounds across topics.
 * KEYS: meta, index, bytes. ARGV: newEpoch, topic, maxAge, store, size (bytes the new entry
 * counts for, 0 when not kept), maxBytes, maxTopics, then (topic, bytes) pairs that earlier
 * appends trimmed (or found gone). Returns `{epoch, seq, now, over, prev, counted, evicted...}`:
 * `over` is the bytes the append must trim from the topic's own oldest end, `prev` the topic's
 * score before ('' for none: step 2 records it as trimmed when it finds the stream empty),
 * `counted` the topic's count before this entry (to take off when step 2 finds the stream
 * empty), and `evicted` (topic, score) pairs whose streams the caller drops with {@link DROP_EVICTED}.
 */
export const PUBLISH_NEXT = `${HELPERS}
local meta, index, bytesKey = KEYS[1], KEYS[2], KEYS[3]
local newEpoch, topic, maxAge, store = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local size, maxBytes, maxTopics = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
-- The stream is on another node: always look up the previous score (one ZSCORE).
local probe = size > 0
${NEXT_META}
${NEXT_SEQ}
-- What earlier appends trimmed, or found gone (a topic evicted meanwhile had its bytes taken out whole).
for i = 8, #ARGV, 2 do charge(ARGV[i], -tonumber(ARGV[i + 1])) end
if prev ~= nil and maxAge >= 0 and prev < (now - maxAge - 2000) * 1024 then
  -- Its stream surely expired by its TTL (maxAge + 1 s after its last publish; one more second
  -- for the nodes' clocks): its bytes leave the count now.
  uncount(topic)
end
local over = 0
local counted = 0
if size > 0 then
  counted = charge(topic, size) - size
  over = overBudget(maxBytes)
end
${FINISH}
local p = ''
if prev ~= nil then p = fmt(prev) end
local out = {epoch, seqText, fmt(now), fmt(over), p, fmt(math.max(counted, 0))}
for i = 1, #evicted do out[#out + 1] = evicted[i] end
return out
`;

/**
 * Cluster, step 2 (the topic's slot): append, trim what the budget still asks after the count
 * and age trims (`over` less what they freed) from the oldest end, and notify.
 * KEYS: stream. ARGV: epoch, seq, now, topic, data, headers, maxCount, maxAge, channel, store,
 * over, prev ('' for none), counted (step 1's count of the topic before this entry: when the
 * stream is found empty, those bytes are gone already and do not need trimming).
 * Returns `{epoch, seq, len, removed, stale}` (`removed`: bytes trimmed, for the next step 1;
 * `stale`: 1 when the stream was empty although the topic had been published, so step 1's count
 * of it was of a stream that is gone) or `{'retry'}`.
 */
export const PUBLISH_APPEND = `${HELPERS}${TRIM_OLDEST}
local key = KEYS[1]
local epoch, seq, now, topic, data, headers = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local seqText = ARGV[2]
local maxCount, maxAge, channel, store, over = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], ARGV[10], tonumber(ARGV[11])
local n = 0
if store == '1' and maxCount > 0 then n = redis.call('XLEN', key) end
local stale = nil
if n == 0 and ARGV[12] ~= '' then stale = tonumber(ARGV[12]) end
local function retry() return {'retry'} end
local function expire(k) redis.call('PEXPIRE', k, maxAge + 1000) end
${APPEND}
local want = over - removed
if stale ~= nil then want = want - tonumber(ARGV[13]) end
if stored and want > 0 then
  local gone, count = trimOldest(key, want, id)
  removed = removed + gone
  len = len - count
end
local wasStale = 0
if stale ~= nil and stored then wasStale = 1 end
return {epoch, seqText, len, fmt(removed), wasStale}
`;

/**
 * Drops evicted topics' streams, but only what each eviction covered: entries up to the score the
 * topic had when it left. A topic published again meanwhile (by another process, between the
 * publish script and this one) keeps its new entries, and the newest entry dropped is recorded as
 * trimmed, so readers behind it see a gap. A stream left with nothing newer is deleted.
 * KEYS: stream... ARGV: score... (one per key). Returns the number of streams deleted.
 */
export const DROP_EVICTED = `${HELPERS}
local deleted = 0
for i = 1, #KEYS do
  local key, score = KEYS[i], tonumber(ARGV[i])
  local top = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if top[1] == nil or seqof(top[1][1]) <= score then
    deleted = deleted + redis.call('DEL', key)
  else
    local info = redis.call('XINFO', 'STREAM', key)
    local lastId, maxDeleted = nil, '0-0'
    for j = 1, #info, 2 do
      if info[j] == 'last-generated-id' then lastId = info[j + 1]
      elseif info[j] == 'max-deleted-entry-id' then maxDeleted = info[j + 1] end
    end
    redis.call('XTRIM', key, 'MINID', sid(score + 1))
    if seqof(maxDeleted) < score then redis.call('XSETID', key, lastId, 'MAXDELETEDID', sid(score)) end
  end
end
return deleted
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
 * Lua: `streams()`, an iterator over (stream key, topic) pairs: the stream keys are `KEYS` after
 * the first `skip`, and each one's topic is in `ARGV` 4 places further on.
 */
function streamsAfterKey(skip: number): string {
  return `local function streams()
  local i = ${skip}
  return function()
    i = i + 1
    if KEYS[i] == nil then return nil end
    return KEYS[i], ARGV[4 + i]
  end
end`;
}

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
${streamsAfterKey(2)}
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
${streamsAfterKey(0)}
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
