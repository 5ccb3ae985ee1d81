-- apply.lua applies one partition's folded batch to the aggregates together
-- with the partition's next offset, as one atomic step with compare-and-set.
--
-- Redis does not roll a script back when a command fails half way, so the
-- script runs in three phases: parse the arguments, then read and check
-- everything (CAS, key types, integer formats, overflow), and only then
-- write. Nothing in the write phase can fail on data that passed the checks.
--
-- Numbers arrive as decimal strings and counters move with HINCRBY, because
-- Lua numbers are doubles and would round sums above 2^53.
--
-- KEYS, in this order:
--   offsets hash;
--   one key per counter hash (section H), per ranking (Z), per price history
--   (P), per price index (G), per stream (X) and the dedup set (S), in ARGV
--   order.
-- Every key the script touches is in KEYS. Each key appears once, and each
-- field or member once per key: the overflow checks rely on it.
--
-- ARGV, in this order:
--   field id_field epoch_field base base_id next next_id next_epoch
--   price_keep stream_maxlen
--   H: n, then per hash: nfields (field incr)*nfields mm [min max if mm=1] ttl
--   Z: n, then per sorted set: nmembers (member incr)*nmembers
--   P: n, then per sorted set: npoints (score member)*npoints
--   G: n, then per sorted set: nmembers (score member)*nmembers
--   X: n, then per stream: nfields (field value)*nfields
--   S: n (0 or 1), then: trim_before nmembers (score member)*nmembers
--
-- Section S remembers the sale ids this batch counted, for dedup: one
-- member holding all of them with their record timestamps, scored by the
-- newest (see aggregate.Delta.SeenBlob; zero members when the batch counted
-- none), and forgets the members scored before trim_before (0: none). The
-- aggregator looked the batch up in its copy of this set, read as of the
-- batch's base; the compare-and-set below proves nobody changed it since.
--
-- The partition's position is three fields of the offsets hash: the next
-- offset to count (field), the Kafka topic ID it belongs to (id_field,
-- absent in hashes written before topic IDs were stored) and the leader
-- epoch of the last record counted, as "{epoch}@{offset}" (epoch_field).
-- The compare-and-set covers the offset and the topic ID: base_id is the ID
-- the aggregator read ('' for none), so a batch read from one incarnation
-- of a topic never applies over the offsets of another, even when the
-- numbers match. next_id is written when not '' (it differs from base_id
-- only to record the ID of a hash that had none); next_epoch when not
-- negative.
--
-- Returns {1, next, next_id} when applied, or {0, stored, stored_id}
-- without writing anything when the stored position is not base's (stored
-- is -1 when there is none, stored_id '' when there is none).

local INT64_MAX = '9223372036854775807'
local INT64_MIN_ABS = '9223372036854775808'
-- Scores are doubles: integers are exact up to 2^53.
local SCORE_MAX = 9007199254740992
-- Lua's unpack is limited by the C stack, so long argument lists go out in
-- chunks of this many elements.
local CHUNK = 1000

local ki, ai = 0, 0
local function next_key()
  ki = ki + 1
  return KEYS[ki]
end
local function next_arg()
  ai = ai + 1
  return ARGV[ai]
end
local function next_count()
  return tonumber(next_arg())
end

local function fail(msg)
  error({err = 'BFGUARD ' .. msg})
end

-- is_int64 reports whether s is the canonical decimal form of an int64, the
-- only form HINCRBY accepts.
local function is_int64(s)
  local neg, digits = string.match(s, '^(%-?)(%d+)$')
  if not digits then
    return false
  end
  if #digits > 1 and string.sub(digits, 1, 1) == '0' then
    return false
  end
  local limit = INT64_MAX
  if neg == '-' then
    if digits == '0' then
      return false
    end
    limit = INT64_MIN_ABS
  end
  return #digits < #limit or (#digits == #limit and digits <= limit)
end

-- cmp_int compares two int64 decimal strings exactly.
local function cmp_int(a, b)
  local an, bn = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if an ~= bn then
    return an and -1 or 1
  end
  local ad, bd = an and string.sub(a, 2) or a, bn and string.sub(b, 2) or b
  local c
  if #ad ~= #bd then
    c = #ad < #bd and -1 or 1
  elseif ad == bd then
    c = 0
  else
    c = ad < bd and -1 or 1
  end
  return an and -c or c
end

-- split cuts a non-negative decimal string into its value above and below
-- 10^9; both halves are exact as doubles.
local function split(s)
  local n = #s
  if n <= 9 then
    return 0, tonumber(s)
  end
  return tonumber(string.sub(s, 1, n - 9)), tonumber(string.sub(s, n - 8))
end

local MAX_HI, MAX_LO = split(INT64_MAX)

-- sum_fits reports whether cur + incr fits in an int64, exactly, for a
-- non-negative incr.
local function sum_fits(cur, incr)
  if string.sub(cur, 1, 1) == '-' then
    return true
  end
  local ch, cl = split(cur)
  local ih, il = split(incr)
  local hi, lo = ch + ih, cl + il
  if lo >= 1e9 then
    hi, lo = hi + 1, lo - 1e9
  end
  return hi < MAX_HI or (hi == MAX_HI and lo <= MAX_LO)
end

-- read runs a read-only command and turns its error, WRONGTYPE for one,
-- into a guard failure: reads happen before any write, so failing here is
-- safe.
local function read(...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply['err'] then
    fail(reply['err'])
  end
  return reply
end

local function want_type(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then
    fail(key .. ' is a ' .. t .. ', want ' .. want)
  end
end

-- call_chunked runs cmd key [prefix...] args... over args in chunks with
-- the given caller (redis.call or read) and concatenates the replies.
local function call_chunked(caller, cmd, key, prefix, args)
  local out = {}
  for i = 1, #args, CHUNK do
    local part = {cmd, key}
    for _, p in ipairs(prefix) do
      part[#part + 1] = p
    end
    for j = i, math.min(i + CHUNK - 1, #args) do
      part[#part + 1] = args[j]
    end
    local reply = caller(unpack(part))
    if type(reply) == 'table' then
      for _, v in ipairs(reply) do
        out[#out + 1] = v
      end
    end
  end
  return out
end

-- Compare-and-set first, so that a replay costs one HMGET.
local offsets_key = next_key()
local field, id_field, epoch_field = next_arg(), next_arg(), next_arg()
local base, base_id = next_arg(), next_arg()
local nxt, next_id, next_epoch = next_arg(), next_arg(), next_arg()
local cur = read('HMGET', offsets_key, field, id_field)
local stored, stored_id = cur[1] or '-1', cur[2] or ''
if not is_int64(stored) then
  fail(offsets_key .. ' ' .. field .. ' holds ' .. stored .. ', not an offset')
end
if stored ~= base or stored_id ~= base_id then
  return {0, stored, stored_id}
end
if not is_int64(nxt) or not is_int64(base) or cmp_int(nxt, base) <= 0 then
  fail('next offset ' .. tostring(nxt) .. ' must be past base ' .. tostring(base))
end
local price_keep = next_count()
local stream_maxlen = next_arg()

-- Parse.
local hashes = {}
for h = 1, next_count() do
  local e = {key = next_key(), fields = {}, incrs = {}}
  for f = 1, next_count() do
    e.fields[f] = next_arg()
    e.incrs[f] = next_arg()
  end
  if next_arg() == '1' then
    e.min, e.max = next_arg(), next_arg()
  end
  e.ttl = next_arg()
  hashes[h] = e
end
local rankings = {}
for z = 1, next_count() do
  local e = {key = next_key(), members = {}, incrs = {}}
  for m = 1, next_count() do
    e.members[m] = next_arg()
    e.incrs[m] = next_arg()
  end
  rankings[z] = e
end
local histories = {}
for p = 1, next_count() do
  local e = {key = next_key(), pairs = {}}
  for i = 1, 2 * next_count() do
    e.pairs[i] = next_arg()
  end
  histories[p] = e
end
local latest = {}
for g = 1, next_count() do
  local e = {key = next_key(), pairs = {}}
  for i = 1, 2 * next_count() do
    e.pairs[i] = next_arg()
  end
  latest[g] = e
end
local streams = {}
for x = 1, next_count() do
  local e = {key = next_key(), pairs = {}}
  for i = 1, 2 * next_count() do
    e.pairs[i] = next_arg()
  end
  streams[x] = e
end

local seen = {}
for s = 1, next_count() do
  local e = {key = next_key(), trim = next_arg(), pairs = {}}
  for i = 1, 2 * next_count() do
    e.pairs[i] = next_arg()
  end
  seen[s] = e
end

-- Read and check. HMGET and ZMSCORE double as type checks: they fail with
-- WRONGTYPE here, before anything is written.
for _, e in ipairs(hashes) do
  local fields = {}
  for i, f in ipairs(e.fields) do
    fields[i] = f
  end
  if e.min then
    fields[#fields + 1] = 'min_price_cents'
    fields[#fields + 1] = 'max_price_cents'
  end
  local cur = call_chunked(read, 'HMGET', e.key, {}, fields)
  for i, f in ipairs(e.fields) do
    local c = cur[i] or '0'
    if not is_int64(c) then
      fail(e.key .. ' ' .. f .. ' holds ' .. c .. ', not an int64')
    end
    if not is_int64(e.incrs[i]) or string.sub(e.incrs[i], 1, 1) == '-' then
      fail(e.key .. ' ' .. f .. ' increment ' .. e.incrs[i] .. ' is not a non-negative int64')
    end
    if not sum_fits(c, e.incrs[i]) then
      fail(e.key .. ' ' .. f .. ' would overflow: ' .. c .. ' + ' .. e.incrs[i])
    end
  end
  if e.min then
    if not is_int64(e.min) or not is_int64(e.max) then
      fail(e.key .. ' min/max argument is not an int64')
    end
    local n = #e.fields
    local cmin, cmax = cur[n + 1], cur[n + 2]
    if (cmin and not is_int64(cmin)) or (cmax and not is_int64(cmax)) then
      fail(e.key .. ' min/max price is not an int64')
    end
    e.set = {}
    if not cmin or cmp_int(e.min, cmin) < 0 then
      e.set[#e.set + 1] = 'min_price_cents'
      e.set[#e.set + 1] = e.min
    end
    if not cmax or cmp_int(e.max, cmax) > 0 then
      e.set[#e.set + 1] = 'max_price_cents'
      e.set[#e.set + 1] = e.max
    end
  end
end

for _, e in ipairs(rankings) do
  local cur = call_chunked(read, 'ZMSCORE', e.key, {}, e.members)
  e.zadd = {}
  for i, m in ipairs(e.members) do
    if not is_int64(e.incrs[i]) or string.sub(e.incrs[i], 1, 1) == '-' then
      fail(e.key .. ' ' .. m .. ' increment ' .. e.incrs[i] .. ' is not a non-negative int64')
    end
    local c, n = tonumber(cur[i]) or 0, tonumber(e.incrs[i])
    -- Not c + n > SCORE_MAX: past 2^53 the sum rounds to an even double,
    -- and 2^53 + 1 would pass as 2^53.
    if c > SCORE_MAX - n then
      fail(e.key .. ' ' .. m .. ' score would pass 2^53')
    end
    local s = c + n
    e.zadd[#e.zadd + 1] = string.format('%.17g', s)
    e.zadd[#e.zadd + 1] = m
  end
end

for _, e in ipairs(histories) do
  e.card = read('ZCARD', e.key)
end
for _, e in ipairs(latest) do
  want_type(e.key, 'zset')
end
for _, e in ipairs(streams) do
  want_type(e.key, 'stream')
end
for _, e in ipairs(seen) do
  want_type(e.key, 'zset')
  if not is_int64(e.trim) then
    fail(e.key .. ' trim bound ' .. tostring(e.trim) .. ' is not an int64')
  end
end

-- Write.
for _, e in ipairs(hashes) do
  for i, f in ipairs(e.fields) do
    if e.incrs[i] ~= '0' then
      redis.call('HINCRBY', e.key, f, e.incrs[i])
    end
  end
  if e.set and #e.set > 0 then
    redis.call('HSET', e.key, unpack(e.set))
  end
  if e.ttl ~= '0' then
    redis.call('EXPIRE', e.key, e.ttl)
  end
end
for _, e in ipairs(rankings) do
  call_chunked(redis.call, 'ZADD', e.key, {}, e.zadd)
end
for _, e in ipairs(histories) do
  call_chunked(redis.call, 'ZADD', e.key, {}, e.pairs)
  if e.card + #e.pairs / 2 > price_keep then
    redis.call('ZREMRANGEBYRANK', e.key, 0, -(price_keep + 1))
  end
end
for _, e in ipairs(latest) do
  call_chunked(redis.call, 'ZADD', e.key, {'GT'}, e.pairs)
end
for _, e in ipairs(streams) do
  redis.call('XADD', e.key, 'MAXLEN', '~', stream_maxlen, '*', unpack(e.pairs))
end
for _, e in ipairs(seen) do
  if #e.pairs > 0 then
    call_chunked(redis.call, 'ZADD', e.key, {}, e.pairs)
  end
  if e.trim ~= '0' then
    redis.call('ZREMRANGEBYSCORE', e.key, '-inf', '(' .. e.trim)
  end
end
local position = {field, nxt}
if next_id ~= '' then
  position[#position + 1] = id_field
  position[#position + 1] = next_id
end
if string.sub(next_epoch, 1, 1) ~= '-' then
  position[#position + 1] = epoch_field
  position[#position + 1] = next_epoch .. '@' .. nxt
end
redis.call('HSET', offsets_key, unpack(position))
if next_id == '' then
  next_id = stored_id
end
return {1, nxt, next_id}
