-- presenced's writes in cluster mode, run atomically inside Redis. See
-- src/cluster/mod.rs for the key layout and why it is a script.
--
-- KEYS[1] is the change stream, "{presenced}:log"; every other key shares its
-- hash tag (and so its Redis Cluster slot) and is derived from it.
-- ARGV: op, generation candidate, stream MAXLEN, connection TTL ms,
-- max users, max connections per user, max tokens per user, then the op's own.
-- Returns {"ok", last entry id or "", count, last visible entry id or ""}
-- or {"err", code, detail}.

local STREAM = KEYS[1]
local P = string.sub(STREAM, 1, -4)
local op = ARGV[1]
local MAXLEN = ARGV[3]
local TTL = tonumber(ARGV[4])
local MAX_USERS = tonumber(ARGV[5])
local MAX_CONNS = tonumber(ARGV[6])
local MAX_TOKENS = tonumber(ARGV[7])
local A = 8

local IDS = P .. 'ids'        -- set of user ids
local NAMES = P .. 'names'    -- hash username -> user id
local OWNERS = P .. 'owners'  -- hash connection id -> user id
local DUE = P .. 'due'        -- sorted set connection id by expiry deadline (ms, Redis TIME)
local function ukey(id) return P .. 'u:' .. id end    -- hash: the user's profile and status
local function tkey(id) return P .. 't:' .. id end    -- set of token hashes
local function ckey(id) return P .. 'c:' .. id end    -- hash connection id -> "status instance"
local function ikey(inst) return P .. 'i:' .. inst end -- set of an instance's connection ids

-- The first write ever (or after Redis lost its data) names the generation.
redis.call('SET', P .. 'gen', ARGV[2], 'NX')

-- docs/api.md §1, the one place cluster mode applies it.
local function connection_status(uid)
  local best = 'offline'
  for _, v in ipairs(redis.call('HVALS', ckey(uid))) do
    local s = string.match(v, '^(%a+)')
    if s == 'online' then return 'online' end
    if s == 'away' then best = 'away' end
  end
  return best
end

local function derive(chosen, cs)
  if cs == 'offline' then return 'offline' end
  if chosen == 'online' then return cs end
  return chosen
end

local function load(uid)
  local f = redis.call('HGETALL', ukey(uid))
  if #f == 0 then return nil end
  local u = {}
  for i = 1, #f, 2 do u[f[i]] = f[i + 1] end
  return u
end

local function tokens(uid)
  local tk = redis.call('SMEMBERS', tkey(uid))
  table.sort(tk)
  return table.concat(tk, ' ')
end

-- What others see, as one comparable string; deactivated users read offline.
local function visible(u)
  local st = u.st
  if u.ac ~= '1' then st = 'offline' end
  return table.concat({u.un, u.nm, u.off, u.et, st, u.tx}, '\n')
end

-- What a replica needs besides: roles, activity, statusConnection, tokens.
local function hidden(uid, u)
  return table.concat({u.ad, u.ac, connection_status(uid), tokens(uid)}, '\n')
end

-- The user's full state as stream fields; kind "u" (visible change), "h"
-- (hidden change) or "s" (a state loaded at bootstrap).
local function fields(uid, kind)
  local u = load(uid)
  return {'k', kind, 'id', uid, 'un', u.un, 'nm', u.nm, 'off', u.off, 'et', u.et,
          'st', u.st, 'tx', u.tx, 'ac', u.ac, 'ad', u.ad,
          'cs', connection_status(uid), 'tk', tokens(uid)}
end

-- The entries this call wrote: the caller waits for the last to be applied
-- locally, and a visible one is its cursor.
local last_id, last_visible = '', ''

local function xadd(kind, entry)
  last_id = redis.call('XADD', STREAM, 'MAXLEN', '~', MAXLEN, '*', unpack(entry))
  if kind ~= 'h' then last_visible = last_id end
  return last_id
end

local function emit(uid, kind)
  return xadd(kind, fields(uid, kind))
end

local function ok(count)
  return {'ok', last_id, count, last_visible}
end

local function before(uid)
  local u = load(uid)
  return {visible(u), hidden(uid, u)}
end

-- Writes an entry only if the op changed something, visible or not.
local function finish(uid, was)
  local u = load(uid)
  if visible(u) ~= was[1] then return emit(uid, 'u') end
  if hidden(uid, u) ~= was[2] then return emit(uid, 'h') end
  return ''
end

local function recompute(uid)
  local chosen = redis.call('HGET', ukey(uid), 'ch')
  redis.call('HSET', ukey(uid), 'st', derive(chosen, connection_status(uid)))
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function drop_connection(uid, cid)
  local cur = redis.call('HGET', ckey(uid), cid)
  if cur then
    local inst = string.match(cur, '^%a+ (.*)$')
    if inst and inst ~= '' then redis.call('SREM', ikey(inst), cid) end
  end
  redis.call('HDEL', ckey(uid), cid)
  redis.call('HDEL', OWNERS, cid)
  redis.call('ZREM', DUE, cid)
end

-- Closes connections (id list), each user's change written once.
local function close_all(cids)
  local by_user, order, closed = {}, {}, 0
  for _, cid in ipairs(cids) do
    local uid = redis.call('HGET', OWNERS, cid)
    if uid then
      if not by_user[uid] then
        by_user[uid] = before(uid)
        table.insert(order, uid)
      end
      drop_connection(uid, cid)
      closed = closed + 1
    else
      redis.call('ZREM', DUE, cid)
    end
  end
  for _, uid in ipairs(order) do
    recompute(uid)
    finish(uid, by_user[uid])
  end
  return closed
end

local function unknown(uid) return {'err', 'unknown_user', uid} end

if op == 'put_user' then
  local uid, un = ARGV[A], ARGV[A + 1]
  local owner = redis.call('HGET', NAMES, un)
  if owner and owner ~= uid then return {'err', 'username_taken', un} end
  local profile = {'un', un, 'nm', ARGV[A + 2], 'off', ARGV[A + 3], 'et', ARGV[A + 4],
                   'ad', ARGV[A + 5], 'ac', ARGV[A + 6]}
  local u = load(uid)
  if not u then
    if MAX_USERS > 0 and redis.call('SCARD', IDS) >= MAX_USERS then
      return {'err', 'too_many_users', tostring(MAX_USERS)}
    end
    redis.call('SADD', IDS, uid)
    redis.call('HSET', ukey(uid), 'ch', 'online', 'st', 'offline', 'tx', '', unpack(profile))
    redis.call('HSET', NAMES, un, uid)
    emit(uid, 'u')
    return ok(0)
  end
  local was = before(uid)
  if u.un ~= un then
    redis.call('HDEL', NAMES, u.un)
    redis.call('HSET', NAMES, un, uid)
  end
  redis.call('HSET', ukey(uid), unpack(profile))
  finish(uid, was)
  return ok(0)

elseif op == 'delete_user' then
  local uid = ARGV[A]
  local u = load(uid)
  if not u then return ok(0) end
  for _, cid in ipairs(redis.call('HKEYS', ckey(uid))) do drop_connection(uid, cid) end
  redis.call('DEL', ukey(uid), tkey(uid), ckey(uid))
  if redis.call('HGET', NAMES, u.un) == uid then redis.call('HDEL', NAMES, u.un) end
  redis.call('SREM', IDS, uid)
  xadd('d', {'k', 'd', 'id', uid, 'un', u.un})
  return ok(0)

elseif op == 'add_token' or op == 'revoke_token' then
  local uid, hash = ARGV[A], ARGV[A + 1]
  if not load(uid) then return unknown(uid) end
  if op == 'add_token' then
    if redis.call('SISMEMBER', tkey(uid), hash) == 1 then return ok(0) end
    if redis.call('SCARD', tkey(uid)) >= MAX_TOKENS then return {'err', 'too_many_tokens', uid} end
    redis.call('SADD', tkey(uid), hash)
  elseif redis.call('SREM', tkey(uid), hash) == 0 then
    return ok(0)
  end
  emit(uid, 'h')
  return ok(0)

elseif op == 'set_status' then
  -- A manual set takes effect at once, even without connections.
  local uid, status, has_text, text = ARGV[A], ARGV[A + 1], ARGV[A + 2], ARGV[A + 3]
  if not load(uid) then return unknown(uid) end
  local was = before(uid)
  if status ~= '' then redis.call('HSET', ukey(uid), 'ch', status, 'st', status) end
  if has_text == '1' then redis.call('HSET', ukey(uid), 'tx', text) end
  finish(uid, was)
  return ok(0)

elseif op == 'put_connection' then
  local cid, uid, status, inst = ARGV[A], ARGV[A + 1], ARGV[A + 2], ARGV[A + 3]
  local owner = redis.call('HGET', OWNERS, cid)
  if owner and owner ~= uid then return {'err', 'connection_of_another_user', cid} end
  if not load(uid) then return unknown(uid) end
  local cur = redis.call('HGET', ckey(uid), cid)
  if not cur and MAX_CONNS > 0 and redis.call('HLEN', ckey(uid)) >= MAX_CONNS then
    return {'err', 'too_many_connections', tostring(MAX_CONNS)}
  end
  local was = before(uid)
  local old_inst = cur and string.match(cur, '^%a+ (.*)$') or ''
  -- A heartbeat without an instance keeps the one the connection had.
  if inst == '' then inst = old_inst end
  if old_inst ~= '' and old_inst ~= inst then redis.call('SREM', ikey(old_inst), cid) end
  if inst ~= '' then redis.call('SADD', ikey(inst), cid) end
  redis.call('HSET', ckey(uid), cid, status .. ' ' .. inst)
  redis.call('HSET', OWNERS, cid, uid)
  redis.call('ZADD', DUE, now_ms() + TTL, cid)
  -- A heartbeat is a connection event: it ends a manual set's exception.
  recompute(uid)
  finish(uid, was)
  return ok(0)

elseif op == 'delete_connection' then
  close_all({ARGV[A]})
  return ok(0)

elseif op == 'delete_instance' then
  return ok(close_all(redis.call('SMEMBERS', ikey(ARGV[A]))))

elseif op == 'sweep' then
  -- Pops only what is due by Redis's clock, so any replica may sweep at any time.
  local due = redis.call('ZRANGEBYSCORE', DUE, '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[A]))
  return ok(close_all(due))

elseif op == 'dump' then
  -- The states of the given users, as bootstrap loads them.
  local out = {}
  for i = A, #ARGV do
    if redis.call('EXISTS', ukey(ARGV[i])) == 1 then table.insert(out, fields(ARGV[i], 's')) end
  end
  return out
end

return {'err', 'unknown_op', op}
