/**
 * The Lua scripts of {@link RedisJobStore}: each change to a job is one script, so the state
 * machine (first outcome wins), the idempotency key, the owner's set of live jobs and the
 * announcement move together.
 *
 * Every script takes one key (`KEYS[1]`, any key of the store: it routes the call to the store's
 * cluster slot) and starts with the same arguments: the key prefix (with the hash tag), the time
 * in ms (`''`: Redis's own clock), the slack added to key TTLs, the announcement channel, and the
 * most ended ids remembered as gone.
 *
 * A job is a hash `<p>job:<id>`: `i` id, `s` state, `p` progress (JSON), `r` result (JSON), `e` error
 * (JSON), `v` version, `o` owner, `f` fingerprint, `k` idempotency key name, `t` TTL, `g` gone
 * ms, `x` when the outcome expires (`''` while live). Ended jobs are remembered in the sorted set
 * `<p>gone` (member the id, score until when it is gone), at most `MAX_GONE` (ARGV[5]) of them:
 * past it the oldest are forgotten early. Owners' leases are the sorted set `<p>workers`; each
 * owner's live jobs the set `<p>owned:<owner>`.
 *
 * @module
 * @internal
 */

const PRELUDE = `
local P = ARGV[1]
local NOW
if ARGV[2] ~= '' then NOW = tonumber(ARGV[2]) else
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local SLACK = tonumber(ARGV[3])
local CHANNEL = ARGV[4]
local MAX_GONE = tonumber(ARGV[5])

local function ms(n) return string.format('%d', n) end

-- An outcome's TTL passed: the job goes (its tombstone was set when it ended).
local function drop(id, m)
  redis.call('DEL', P .. 'job:' .. id)
  if m.k ~= '' and redis.call('GET', m.k) == id then redis.call('DEL', m.k) end
end

-- The job's fields and flat reply, or nil when it is not kept now.
local function load(id)
  local h = redis.call('HGETALL', P .. 'job:' .. id)
  if #h == 0 then return nil, nil end
  local m = {}
  for i = 1, #h, 2 do m[h[i]] = h[i + 1] end
  if m.x ~= nil and m.x ~= '' and tonumber(m.x) <= NOW then
    drop(id, m)
    return nil, nil
  end
  return m, h
end

local function missing(id)
  local g = redis.call('ZSCORE', P .. 'gone', id)
  if g and tonumber(g) > NOW then return {'gone'} end
  return {'none'}
end

-- Remembers an id as gone until \`untilMs\`: past ones are dropped, and the oldest past MAX_GONE.
local function bury(id, untilMs)
  local key = P .. 'gone'
  redis.call('ZADD', key, untilMs, id)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', NOW)
  local n = redis.call('ZCARD', key)
  if n > MAX_GONE then redis.call('ZREMRANGEBYRANK', key, 0, n - MAX_GONE - 1) end
  -- The set goes when its last entry does.
  local want = untilMs - NOW + SLACK
  if redis.call('PTTL', key) < want then redis.call('PEXPIRE', key, want) end
end

-- The job reached an outcome: it is kept for its TTL, then gone for its gone ms.
local function finish(id, m, key)
  local ttl = tonumber(m.t)
  local gone = tonumber(m.g)
  redis.call('HSET', key, 'x', ms(NOW + ttl))
  redis.call('PEXPIRE', key, ttl + SLACK)
  if m.k ~= '' then redis.call('PEXPIRE', m.k, ttl + SLACK) end
  if gone > 0 and MAX_GONE > 0 then bury(id, NOW + ttl + gone) end
  redis.call('SREM', P .. 'owned:' .. m.o, id)
end
`;

/** ARGV[6..]: id, owner, ttl, gone, lease, key name (`''`: none), fingerprint (`''`: none). */
export const JOB_CREATE = `${PRELUDE}
local id, owner, keyName = ARGV[6], ARGV[7], ARGV[11]
redis.call('ZADD', P .. 'workers', NOW + tonumber(ARGV[10]), owner)
if keyName ~= '' then
  local existing = redis.call('GET', keyName)
  if existing then
    local m, h = load(existing)
    if m then return {'existing', h} end
  end
end
local key = P .. 'job:' .. id
redis.call('HSET', key, 'i', id, 's', 'pending', 'p', 'null', 'v', '1', 'o', owner, 'f', ARGV[12], 'k', keyName, 't', ARGV[8], 'g', ARGV[9], 'x', '')
if keyName ~= '' then redis.call('SET', keyName, id) end
redis.call('SADD', P .. 'owned:' .. owner, id)
redis.call('PUBLISH', CHANNEL, id .. ' 1')
return {'created', redis.call('HGETALL', key)}
`;

/** ARGV[6]: id. */
export const JOB_READ = `${PRELUDE}
local m, h = load(ARGV[6])
if m then return {'job', h} end
return missing(ARGV[6])
`;

/** ARGV[6]: key name. */
export const JOB_FIND_KEY = `${PRELUDE}
local id = redis.call('GET', ARGV[6])
if not id then return {'none'} end
local m, h = load(id)
if m then return {'job', h} end
return {'none'}
`;

/** ARGV[6..]: id, kind (running, progress, succeeded, failed, canceled), value (progress, result or error JSON). */
export const JOB_UPDATE = `${PRELUDE}
local id, kind, value = ARGV[6], ARGV[7], ARGV[8]
local m, h = load(id)
if not m then return missing(id) end
local s = m.s
local ok
if kind == 'running' then ok = s == 'pending'
elseif kind == 'progress' or kind == 'succeeded' then ok = s == 'running'
else ok = s == 'pending' or s == 'running' end
if not ok then return {'job', h} end
local key = P .. 'job:' .. id
local v = redis.call('HINCRBY', key, 'v', 1)
if kind == 'running' then redis.call('HSET', key, 's', 'running')
elseif kind == 'progress' then redis.call('HSET', key, 'p', value)
else
  redis.call('HSET', key, 's', kind)
  if kind == 'succeeded' then redis.call('HSET', key, 'r', value) elseif kind == 'failed' then redis.call('HSET', key, 'e', value) end
  finish(id, m, key)
end
redis.call('PUBLISH', CHANNEL, id .. ' ' .. v)
return {'job', redis.call('HGETALL', key)}
`;

/** ARGV[6]: id. A finished job goes now (its TTL passed by the owner's clock). */
export const JOB_EXPIRE = `${PRELUDE}
local id = ARGV[6]
local m = load(id)
if not m or m.s == 'pending' or m.s == 'running' then return 0 end
drop(id, m)
local gone = tonumber(m.g)
if gone > 0 and MAX_GONE > 0 then bury(id, NOW + gone)
else redis.call('ZREM', P .. 'gone', id) end
redis.call('PUBLISH', CHANNEL, id .. ' ' .. (tonumber(m.v) + 1))
return 1
`;

/**
 * ARGV[6..]: owner, lease ms (0: release). A release with live jobs left makes the lease run out
 * now, so the next reap fails them.
 */
export const JOB_LEASE = `${PRELUDE}
local owner, lease = ARGV[6], tonumber(ARGV[7])
if lease > 0 then redis.call('ZADD', P .. 'workers', NOW + lease, owner)
elseif redis.call('SCARD', P .. 'owned:' .. owner) == 0 then
  redis.call('ZREM', P .. 'workers', owner)
  redis.call('DEL', P .. 'owned:' .. owner)
else
  redis.call('ZADD', P .. 'workers', 0, owner)
end
return 1
`;

/** ARGV[6]: the error (JSON) dead owners' live jobs fail with. At most 100 owners per call. */
export const JOB_REAP = `${PRELUDE}
local dead = redis.call('ZRANGEBYSCORE', P .. 'workers', '-inf', '(' .. ms(NOW), 'LIMIT', 0, 100)
local n = 0
for _, w in ipairs(dead) do
  local set = P .. 'owned:' .. w
  for _, id in ipairs(redis.call('SMEMBERS', set)) do
    local m = load(id)
    if m and (m.s == 'pending' or m.s == 'running') then
      local key = P .. 'job:' .. id
      local v = redis.call('HINCRBY', key, 'v', 1)
      redis.call('HSET', key, 's', 'failed', 'e', ARGV[6])
      finish(id, m, key)
      redis.call('PUBLISH', CHANNEL, id .. ' ' .. v)
      n = n + 1
    end
  end
  redis.call('DEL', set)
  redis.call('ZREM', P .. 'workers', w)
end
return n
`;

/** Every script, by the command name it is defined as. */
export const JOB_SCRIPTS = {
  pbJobCreate: JOB_CREATE,
  pbJobRead: JOB_READ,
  pbJobFindKey: JOB_FIND_KEY,
  pbJobUpdate: JOB_UPDATE,
  pbJobExpire: JOB_EXPIRE,
  pbJobLease: JOB_LEASE,
  pbJobReap: JOB_REAP,
} as const;
