/* The cluster job queue on Redis Streams (see queue_redis.h for the keys and
 * how the contract of queue.h is kept).
 *
 * Every transition is one Lua script, so that what a transition checks and
 * what it changes cannot be interleaved with another process's transition:
 * two workers claiming at once never get the same job, an ack that races
 * with the takeover of an expired lease either finds its attempt or does
 * nothing. The process keeps one thing in memory: the jobs it holds, for the
 * heartbeat and for poll_cancelled; losing that list with the process is what
 * lets the leases expire.
 */
#include "junction/queue_redis.h"
#include "junction/crypto.h"
#include "junction/error.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_RETENTION_MS (7LL * 24 * 3600 * 1000)
#define DEFAULT_CLAIM_WINDOW 1000
#define MAX_CLAIM_WINDOW 10000
#define MAX_PROVIDER_LEN 64
/* Organizations that take strict turns (see the claim script): a larger span
 * is fairer with many organizations waiting, and moves more entries. */
#define RR_SPAN "4"

/* ---- scripts -------------------------------------------------------------
 *
 * ARGV[1] is always the key prefix. Job hash fields: id, idem, grp, prov,
 * org, prio (0..2), payload, state, att, max, cancel, enq, ready, fin, err,
 * cons, entry (the stream entry id while the job is in its stream). */

#define LUA_PRELUDE                                                                                   \
    "local P = ARGV[1]\n"                                                                             \
    "local PRIO = {'high', 'normal', 'low'}\n"                                                        \
    "local GROUP = 'workers'\n"                                                                       \
    "local function skey(prov, prio)\n"                                                               \
    "  return P .. 'integrations.jobs.' .. prov .. '.' .. PRIO[tonumber(prio) + 1]\n"                 \
    "end\n"                                                                                           \
    "local function jkey(id) return P .. 'jn:job:' .. id end\n"                                       \
    "local function fields(arr)\n"                                                                    \
    "  local t = {}\n"                                                                                \
    "  if type(arr) ~= 'table' then return t end\n"                                                   \
    "  for i = 1, #arr, 2 do t[arr[i]] = arr[i + 1] end\n"                                            \
    "  return t\n"                                                                                    \
    "end\n"                                                                                           \
    "local function job(id) return fields(redis.call('HGETALL', jkey(id))) end\n" /* Appends the      \
                                                                                   * job to its       \
                                                                                   * stream           \
                                                                                   * (creating the    \
                                                                                   * stream and       \
                                                                                   * its group the    \
                                                                                   * first time:      \
                                                                                   * entries added    \
                                                                                   * before the       \
                                                                                   * group exists     \
                                                                                   * are read too)    \
                                                                                   * and counts it    \
                                                                                   * as waiting       \
                                                                                   * for its          \
                                                                                   * organization:    \
                                                                                   * <stream>.waiting \
                                                                                   * holds the        \
                                                                                   * count per        \
                                                                                   * organization,    \
                                                                                   * <stream>.orgs    \
                                                                                   * the              \
                                                                                   * organizations    \
                                                                                   * with waiting     \
                                                                                   * entries          \
                                                                                   * scored by        \
                                                                                   * when they        \
                                                                                   * were last        \
                                                                                   * served (the      \
                                                                                   * claim's round    \
                                                                                   * robin). */       \
    "local function push(s, prov, id, org, grp, enq)\n"                                               \
    "  if redis.call('EXISTS', s) == 0 then\n"                                                        \
    "    redis.call('XGROUP', 'CREATE', s, GROUP, '0', 'MKSTREAM')\n"                                 \
    "  end\n"                                                                                         \
    "  local eid = redis.call('XADD', s, '*', 'j', id, 'o', org, 'g', grp, 'e', enq)\n"               \
    "  redis.call('HSET', jkey(id), 'entry', eid)\n"                                                  \
    "  redis.call('HINCRBY', s .. '.waiting', org, 1)\n"                                              \
    "  local seq = redis.call('HGET', P .. 'jn:served:' .. prov, org) or 0\n"                         \
    "  redis.call('ZADD', s .. '.orgs', 'NX', seq, org)\n"                                            \
    "  return eid\n"                                                                                  \
    "end\n" /* An entry left the waiting part of the stream (delivered or deleted). */                \
    "local function unwait(s, org)\n"                                                                 \
    "  if redis.call('HINCRBY', s .. '.waiting', org, -1) <= 0 then\n"                                \
    "    redis.call('HDEL', s .. '.waiting', org)\n"                                                  \
    "    redis.call('ZREM', s .. '.orgs', org)\n"                                                     \
    "  end\n"                                                                                         \
    "end\n"                                                                                           \
    "local function drop_entry(s, eid)\n"                                                             \
    "  if eid and eid ~= '' then\n"                                                                   \
    "    redis.call('XACK', s, GROUP, eid)\n"                                                         \
    "    redis.call('XDEL', s, eid)\n"                                                                \
    "  end\n"                                                                                         \
    "end\n"                                                                                           \
    "local function unlock(grp, id)\n"                                                                \
    "  if grp and grp ~= '' then\n"                                                                   \
    "    local k = P .. 'jn:lock:' .. grp\n"                                                          \
    "    if redis.call('GET', k) == id then redis.call('DEL', k) end\n"                               \
    "  end\n"                                                                                         \
    "end\n"                                                                                           \
    "local function mark_queued(grp, id, ttl)\n"                                                      \
    "  if grp and grp ~= '' then\n"                                                                   \
    "    redis.call('SET', P .. 'jn:queued:' .. grp, id, 'PX', ttl)\n"                                \
    "  end\n"                                                                                         \
    "end\n"                                                                                           \
    "local function unmark_queued(grp, id)\n"                                                         \
    "  if grp and grp ~= '' then\n"                                                                   \
    "    local k = P .. 'jn:queued:' .. grp\n"                                                        \
    "    if redis.call('GET', k) == id then redis.call('DEL', k) end\n"                               \
    "  end\n"                                                                                         \
    "end\n"

/* ARGV: prefix, id, idem, grp, prov, org, prio, payload, now, not_before,
 * max, coalesce, retention. Returns {id, created, coalesced}. */
static jn_redis_block_script_t enqueue_script = JN_REDIS_BLOCK_SCRIPT(
    LUA_PRELUDE
    "local id, idem, grp, prov, org = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]\n"
    "local prio, payload = ARGV[7], ARGV[8]\n"
    "local now, nb, max = tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11]\n"
    "local coalesce, ttl = ARGV[12] == '1', tonumber(ARGV[13])\n"
    "local ik = P .. 'jn:idem:' .. idem\n"
    "if idem ~= '' then\n"
    "  local existing = redis.call('GET', ik)\n"
    "  if existing then return {existing, 0, 0} end\n"
    "end\n"
    "if coalesce and grp ~= '' then\n"
    "  local q = redis.call('GET', P .. 'jn:queued:' .. grp)\n"
    "  if q and redis.call('HGET', jkey(q), 'state') == 'queued' then\n"
    /*   the slot is absorbed by the waiting job: other schedulers see the same */
    "    if idem ~= '' then redis.call('SET', ik, q, 'PX', ttl) end\n"
    "    return {q, 0, 1}\n"
    "  end\n"
    "end\n"
    "if redis.call('EXISTS', jkey(id)) == 1 then\n"
    "  return redis.error_reply('ERR job id ' .. id .. ' exists')\n"
    "end\n"
    "if nb < now then nb = now end\n"
    "redis.call('HSET', jkey(id), 'id', id, 'idem', idem, 'grp', grp, 'prov', prov, 'org', org,\n"
    "  'prio', prio, 'payload', payload, 'state', 'queued', 'att', 0, 'max', max, 'cancel', 0,\n"
    "  'enq', now, 'ready', nb, 'fin', 0, 'err', '', 'cons', '', 'entry', '')\n"
    "local s = skey(prov, prio)\n"
    "if nb > now then\n"
    "  redis.call('ZADD', s .. '.delayed', nb, id)\n"
    "else\n"
    "  push(s, prov, id, org, grp, now)\n"
    "end\n"
    "if idem ~= '' then redis.call('SET', ik, id, 'PX', ttl) end\n"
    "mark_queued(grp, id, ttl)\n"
    "redis.call('SADD', P .. 'jn:providers', prov)\n"
    "return {id, 1, 0}\n");

/* ARGV: prefix, provider, consumer, now, visibility, window, round-robin
 * span. Returns the claimed job's hash (HGETALL) or false. */
static jn_redis_block_script_t claim_script = JN_REDIS_BLOCK_SCRIPT(
    LUA_PRELUDE
    "local prov, consumer = ARGV[2], ARGV[3]\n"
    "local now, vis, window = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local rr_span = tonumber(ARGV[7])\n"
    "local served = P .. 'jn:served:' .. prov\n"
    "local function lock_free(grp, id)\n"
    "  if grp == nil or grp == '' then return true end\n"
    "  local holder = redis.call('GET', P .. 'jn:lock:' .. grp)\n"
    "  return holder == false or holder == id\n"
    "end\n"
    "local function take(id, h)\n"
    "  redis.call('HSET', jkey(id), 'state', 'running', 'cons', consumer,\n"
    "    'att', tonumber(h.att) + 1, 'ready', now + vis)\n"
    "  if h.grp ~= '' then redis.call('SET', P .. 'jn:lock:' .. h.grp, id, 'PX', vis) end\n"
    "  unmark_queued(h.grp, id)\n"
    "  return redis.call('HGETALL', jkey(id))\n"
    "end\n"
    "for p = 0, 2 do\n"
    "  local s = skey(prov, p)\n"
    /* retries and delayed jobs that are due join the end of their stream */
    "  local dk = s .. '.delayed'\n"
    "  for _, id in ipairs(redis.call('ZRANGEBYSCORE', dk, '-inf', now, 'LIMIT', 0, 100)) do\n"
    "    redis.call('ZREM', dk, id)\n"
    "    local h = job(id)\n"
    "    if h.state == 'queued' then push(s, prov, id, h.org, h.grp, h.enq) end\n"
    "  end\n"
    /* the group's last delivered entry; a stream without the group gets it */
    "  local groups = redis.call('EXISTS', s) == 1 and redis.call('XINFO', 'GROUPS', s)\n"
    "  if groups then\n"
    "    local last, pending = nil, 0\n"
    "    for _, g in ipairs(groups) do\n"
    "      local gi = fields(g)\n"
    "      if gi['name'] == GROUP then\n"
    "        last, pending = gi['last-delivered-id'], tonumber(gi['pending'])\n"
    "      end\n"
    "    end\n"
    "    if last == nil then\n"
    "      redis.call('XGROUP', 'CREATE', s, GROUP, '0')\n"
    "      last = '0-0'\n"
    "    end\n"
    /* 1. leases that expired: the pending entries idle for the visibility
     * timeout (a holder's heartbeat resets the idle time) */
    /* at most four scans a visibility timeout per stream, whoever claims */
    "    local cursor, rounds = '0-0', 0\n"
    "    if pending == 0 or not redis.call('SET', s .. '.scan', '1', 'NX', 'PX',\n"
    "        math.max(1, math.floor(vis / 4))) then\n"
    "      cursor = nil\n"
    "    end\n"
    "    while cursor ~= nil do\n"
    "      local r = redis.call('XAUTOCLAIM', s, GROUP, consumer, vis, cursor, 'COUNT', 1)\n"
    "      cursor, rounds = r[1], rounds + 1\n"
    "      if cursor == '0-0' or rounds >= 10000 then cursor = nil end\n"
    "      for _, e in ipairs(r[2]) do\n"
    "        if type(e) == 'table' and type(e[2]) == 'table' then\n"
    "          local f = fields(e[2])\n"
    "          local h = job(f.j)\n"
    "          if h.state == 'running' and h.entry == e[1] then\n"
    "            if lock_free(h.grp, f.j) then return take(f.j, h) end\n"
    /*           another job of its group runs: left pending, looked at again
     *           after another visibility timeout */
    "          else\n"
    "            drop_entry(s, e[1])\n"
    "          end\n"
    "        end\n"
    "      end\n"
    "    end\n"
    /* 2. entries not yet delivered, in stream order: the first whose group
     * is free and whose organization was not served in the last k claims,
     * k = the organizations with waiting entries - 1, at most RR_SPAN (so up
     * to RR_SPAN + 1 of them take strict turns, and with more an
     * organization served in the last RR_SPAN claims yields to the others);
     * failing that, the first whose group is free. At most `window` entries
     * are looked at. */
    "    local ok = s .. '.orgs'\n"
    "    local k = math.min(redis.call('ZCARD', ok) - 1, rr_span)\n"
    "    local recent = {}\n"
    "    if k > 0 then\n"
    "      local seq = tonumber(redis.call('GET', P .. 'jn:served:seq') or '0')\n"
    /*   an organization never served has score 0: never recent */
    "      for _, o in ipairs(redis.call('ZRANGEBYSCORE', ok, '(' .. math.max(seq - k, 0),\n"
    "          '+inf')) do\n"
    "        recent[o] = true\n"
    "      end\n"
    "    end\n"
    "    local chosen_pos, fallback, looked = nil, nil, 0\n"
    "    local start, chunk, budget = '(' .. last, 8, window\n"
    "    while chosen_pos == nil and budget > 0 do\n"
    /*     small reads first: the entry wanted is usually near the head */
    "      local entries = redis.call('XRANGE', s, start, '+', 'COUNT', math.min(chunk, budget))\n"
    "      chunk = math.min(chunk * 2, 128)\n"
    "      if #entries == 0 then break end\n"
    "      budget = budget - #entries\n"
    "      for _, e in ipairs(entries) do\n"
    "        looked = looked + 1\n"
    "        local f = fields(e[2])\n"
    "        local h = redis.call('HMGET', jkey(f.j), 'state', 'entry')\n"
    "        if h[1] == 'queued' and h[2] == e[1] and lock_free(f.g, f.j) then\n"
    "          if not recent[f.o] then chosen_pos = looked; break end\n"
    "          if fallback == nil then fallback = looked end\n"
    "        end\n"
    "      end\n"
    "      start = '(' .. entries[#entries][1]\n"
    "    end\n"
    "    if chosen_pos == nil then chosen_pos = fallback end\n"
    /* nothing to hand out within the budget (every group busy): what was
     * looked at moves to the end of the stream, so the next claim looks
     * further */
    "    local n = chosen_pos\n"
    "    if n == nil and budget <= 0 then n = looked end\n"
    "    if n ~= nil and n > 0 then\n"
    "      local got = redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', n,\n"
    "        'STREAMS', s, '>')\n"
    "      local list = (got and got[1] and got[1][2]) or {}\n"
    "      local chosen = nil\n"
    "      for i, e in ipairs(list) do\n"
    "        local f = fields(e[2])\n"
    "        unwait(s, f.o)\n"
    "        if i == chosen_pos then\n"
    "          chosen = f\n"
    "        else\n"
    "          drop_entry(s, e[1])\n"
    "          local h = redis.call('HMGET', jkey(f.j), 'state', 'entry')\n"
    "          if h[1] == 'queued' and h[2] == e[1] then push(s, prov, f.j, f.o, f.g, f.e) end\n"
    "        end\n"
    "      end\n"
    "      if chosen ~= nil then\n"
    "        local seq = redis.call('INCR', P .. 'jn:served:seq')\n"
    "        redis.call('HSET', served, chosen.o, seq)\n"
    "        redis.call('ZADD', ok, 'XX', seq, chosen.o)\n"
    "        return take(chosen.j, job(chosen.j))\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return false\n");

/* ARGV: prefix, op (ack, nack, release, cancel), id, consumer, attempts, now,
 * retention, error, retry_at. Returns {0, dead} or {1} when the caller no
 * longer holds the attempt. */
static jn_redis_block_script_t finish_script = JN_REDIS_BLOCK_SCRIPT(
    LUA_PRELUDE
    "local op, id, consumer, att = ARGV[2], ARGV[3], ARGV[4], ARGV[5]\n"
    "local now, ttl, err, retry_at = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8],\n"
    "  tonumber(ARGV[9])\n"
    "local jk = jkey(id)\n"
    "local h = job(id)\n"
    "if h.state ~= 'running' or h.cons ~= consumer or h.att ~= att then return {1} end\n"
    "local s = skey(h.prov, h.prio)\n"
    "drop_entry(s, h.entry)\n"
    "unlock(h.grp, id)\n"
    "local function ended(state, why)\n"
    "  redis.call('HSET', jk, 'state', state, 'fin', now, 'cons', '', 'entry', '')\n"
    "  if why ~= '' then redis.call('HSET', jk, 'err', why) end\n"
    "  redis.call('PEXPIRE', jk, ttl)\n"
    "end\n"
    "if op == 'ack' then ended('done', ''); return {0, 0} end\n"
    "if op == 'cancel' then ended('cancelled', err); return {0, 0} end\n"
    "if op == 'nack' and tonumber(h.att) >= tonumber(h.max) then\n"
    "  redis.call('XADD', s .. '.dead', '*', 'j', id, 'o', h.org, 'g', h.grp, 'a', h.att,\n"
    "    'm', h.max, 'e', h.enq, 't', now, 'err', err, 'p', h.payload)\n"
    "  ended('dead', err)\n"
    "  return {0, 1}\n"
    "end\n"
    /* a job whose cancellation was requested does not go back to the queue */
    "if h.cancel == '1' then ended('cancelled', err ~= '' and err or 'cancelled by request');\n"
    "  return {0, 0} end\n"
    "if op == 'release' then\n"
    "  redis.call('HSET', jk, 'state', 'queued', 'att', tonumber(h.att) - 1, 'cons', '',\n"
    "    'ready', now)\n"
    "  push(s, h.prov, id, h.org, h.grp, h.enq)\n"
    "else\n"
    "  redis.call('HSET', jk, 'state', 'queued', 'cons', '', 'entry', '', 'ready', retry_at)\n"
    "  if err ~= '' then redis.call('HSET', jk, 'err', err) end\n"
    "  redis.call('ZADD', s .. '.delayed', retry_at, id)\n"
    "end\n"
    "mark_queued(h.grp, id, ttl)\n"
    "return {0, 0}\n");

/* ARGV: prefix, id, now, retention. Returns {found (0/1), state before}. */
static jn_redis_block_script_t cancel_script = JN_REDIS_BLOCK_SCRIPT(
    LUA_PRELUDE
    /* a queued job leaves its stream; a running one is flagged */
    "local id, now, ttl = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local h = job(id)\n"
    "if h.state == nil then return {0, ''} end\n"
    "if h.state == 'queued' then\n"
    "  local s = skey(h.prov, h.prio)\n"
    "  if h.entry ~= '' then\n"
    "    redis.call('XDEL', s, h.entry)\n"
    "    unwait(s, h.org)\n"
    "  end\n"
    "  redis.call('ZREM', s .. '.delayed', id)\n"
    "  redis.call('HSET', jkey(id), 'state', 'cancelled', 'fin', now, 'entry', '',\n"
    "    'err', 'cancelled by request')\n"
    "  redis.call('PEXPIRE', jkey(id), ttl)\n"
    "  unmark_queued(h.grp, id)\n"
    "elseif h.state == 'running' then\n"
    "  redis.call('HSET', jkey(id), 'cancel', 1)\n"
    "end\n"
    "return {1, h.state}\n");

/* ARGV: prefix, consumer, now, visibility, ids... Renews the leases still
 * held; returns the ids that are not (taken over, finished). */
static jn_redis_block_script_t heartbeat_script = JN_REDIS_BLOCK_SCRIPT(
    LUA_PRELUDE
    "local consumer, now, vis = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local lost = {}\n"
    "for i = 5, #ARGV do\n"
    "  local id = ARGV[i]\n"
    "  local h = job(id)\n"
    "  if h.state == 'running' and h.cons == consumer and h.entry ~= '' then\n"
    "    redis.call('XCLAIM', skey(h.prov, h.prio), GROUP, consumer, 0, h.entry, 'JUSTID')\n"
    "    redis.call('HSET', jkey(id), 'ready', now + vis)\n"
    "    if h.grp ~= '' then\n"
    "      local lk = P .. 'jn:lock:' .. h.grp\n"
    "      local holder = redis.call('GET', lk)\n"
    "      if holder == false or holder == id then redis.call('SET', lk, id, 'PX', vis) end\n"
    "    end\n"
    "  else\n"
    "    lost[#lost + 1] = id\n"
    "  end\n"
    "end\n"
    "return lost\n");

/* ARGV: prefix, consumer, ids... Returns the ids whose cancellation was
 * requested and that the consumer still holds. */
static jn_redis_block_script_t cancelled_script = JN_REDIS_BLOCK_SCRIPT(
    LUA_PRELUDE
    /* held, running, flagged */
    "local out = {}\n"
    "for i = 3, #ARGV do\n"
    "  local h = redis.call('HMGET', jkey(ARGV[i]), 'state', 'cons', 'cancel')\n"
    "  if h[1] == 'running' and h[2] == ARGV[2] and h[3] == '1' then\n"
    "    out[#out + 1] = ARGV[i]\n"
    "  end\n"
    "end\n"
    "return out\n");

/* ARGV: prefix, now. Rows {provider, priority, queued, ready, running, dead,
 * oldest age} in provider order. */
static jn_redis_block_script_t stats_script = JN_REDIS_BLOCK_SCRIPT(
    LUA_PRELUDE
    "local now = tonumber(ARGV[2])\n"
    "local provs = redis.call('SMEMBERS', P .. 'jn:providers')\n"
    "table.sort(provs)\n"
    "local out = {}\n"
    "for _, prov in ipairs(provs) do\n"
    "  for p = 0, 2 do\n"
    "    local s = skey(prov, p)\n"
    "    local queued, ready, running, oldest = 0, 0, 0, nil\n"
    "    if redis.call('EXISTS', s) == 1 then\n"
    "      local last = '0-0'\n"
    "      for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do\n"
    "        local gi = fields(g)\n"
    "        if gi['name'] == GROUP then\n"
    "          last, running = gi['last-delivered-id'], tonumber(gi['pending'])\n"
    "        end\n"
    "      end\n"
    "      for _, e in ipairs(redis.call('XRANGE', s, '(' .. last, '+', 'COUNT', 100000)) do\n"
    "        local f = fields(e[2])\n"
    "        if redis.call('HGET', jkey(f.j), 'state') == 'queued' then\n"
    "          queued, ready = queued + 1, ready + 1\n"
    "          local enq = tonumber(f.e)\n"
    "          if enq and (oldest == nil or enq < oldest) then oldest = enq end\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "    for _, id in ipairs(redis.call('ZRANGE', s .. '.delayed', 0, 99999)) do\n"
    "      local h = redis.call('HMGET', jkey(id), 'state', 'enq', 'ready')\n"
    "      if h[1] == 'queued' then\n"
    "        queued = queued + 1\n"
    "        if tonumber(h[3]) <= now then ready = ready + 1 end\n"
    "        local enq = tonumber(h[2])\n"
    "        if enq and (oldest == nil or enq < oldest) then oldest = enq end\n"
    "      end\n"
    "    end\n"
    "    local dead = redis.call('XLEN', s .. '.dead')\n"
    "    if queued + running + dead > 0 then\n"
    "      out[#out + 1] = {prov, p, queued, ready, running, dead,\n"
    "        oldest and math.max(0, now - oldest) or 0}\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n");

/* ARGV: prefix, state (queued, running), provider or ''. The job ids in that
 * state, stream order (delayed jobs last). */
static jn_redis_block_script_t each_script = JN_REDIS_BLOCK_SCRIPT(
    LUA_PRELUDE
    "local state, only = ARGV[2], ARGV[3]\n"
    "local provs = only ~= '' and {only} or redis.call('SMEMBERS', P .. 'jn:providers')\n"
    "table.sort(provs)\n"
    "local out = {}\n"
    "for _, prov in ipairs(provs) do\n"
    "  for p = 0, 2 do\n"
    "    local s = skey(prov, p)\n"
    "    if redis.call('EXISTS', s) == 1 then\n"
    "      for _, e in ipairs(redis.call('XRANGE', s, '-', '+', 'COUNT', 100000)) do\n"
    "        local f = fields(e[2])\n"
    "        local h = redis.call('HMGET', jkey(f.j), 'state', 'entry')\n"
    "        if h[1] == state and h[2] == e[1] then out[#out + 1] = f.j end\n"
    "      end\n"
    "    end\n"
    "    if state == 'queued' then\n"
    "      for _, id in ipairs(redis.call('ZRANGE', s .. '.delayed', 0, 99999)) do\n"
    "        out[#out + 1] = id\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n");

/* ARGV: prefix, consumer, providers... Removes this consumer from the groups
 * of those providers' streams where it holds nothing (a clean shutdown), so
 * that consumers of stopped processes do not pile up in XINFO CONSUMERS. */
static jn_redis_block_script_t goodbye_script = JN_REDIS_BLOCK_SCRIPT(
    LUA_PRELUDE
    /* only where it holds nothing: pending entries must not be dropped */
    "local consumer = ARGV[2]\n"
    "for i = 3, #ARGV do\n"
    "  for p = 0, 2 do\n"
    "    local s = skey(ARGV[i], p)\n"
    "    if redis.call('EXISTS', s) == 1 then\n"
    "      local ok, list = pcall(redis.call, 'XINFO', 'CONSUMERS', s, GROUP)\n"
    "      if ok then\n"
    "        for _, c in ipairs(list) do\n"
    "          local ci = fields(c)\n"
    "          if ci['name'] == consumer and tonumber(ci['pending']) == 0 then\n"
    "            redis.call('XGROUP', 'DELCONSUMER', s, GROUP, consumer)\n"
    "          end\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return 0\n");

/* ---- the queue ---------------------------------------------------------- */

typedef struct {
    jn_queue_t base; /* first: the functions cast between the two */
    jn_redis_block_t *conn;
    char prefix[128];
    int64_t retention_ms;
    int window;
    /* The jobs this consumer holds (heartbeat, poll_cancelled). */
    char (*held)[JN_QUEUE_ID_LEN];
    size_t nheld, capheld;
    /* Providers this consumer claimed from (its group membership). */
    char **providers;
    size_t nproviders;
} redis_queue_t;

static redis_queue_t *to_rq(jn_queue_t *q)
{
    return (redis_queue_t *)q;
}

static int fail(redis_queue_t *rq, const char *what, const char *why)
{
    snprintf(rq->base.errmsg, sizeof(rq->base.errmsg), "%s: %.440s", what, why);
    return -1;
}

static void held_add(redis_queue_t *rq, const char *id)
{
    if (rq->nheld == rq->capheld) {
        size_t cap = rq->capheld ? rq->capheld * 2 : 16;
        char(*grown)[JN_QUEUE_ID_LEN] = realloc(rq->held, cap * sizeof(*grown));
        /* out of memory: the lease is not renewed and expires; another
         * worker then runs the job again (at-least-once) */
        if (grown == NULL)
            return;
        rq->held = grown;
        rq->capheld = cap;
    }
    snprintf(rq->held[rq->nheld++], JN_QUEUE_ID_LEN, "%s", id);
}

static void held_remove(redis_queue_t *rq, const char *id)
{
    size_t i;

    for (i = 0; i < rq->nheld; i++) {
        if (strcmp(rq->held[i], id) == 0) {
            memmove(rq->held[i], rq->held[rq->nheld - 1], JN_QUEUE_ID_LEN);
            rq->nheld--;
            return;
        }
    }
}

static void provider_note(redis_queue_t *rq, const char *provider)
{
    char **grown, *copy;
    size_t i;

    for (i = 0; i < rq->nproviders; i++)
        if (strcmp(rq->providers[i], provider) == 0)
            return;
    grown = realloc(rq->providers, (rq->nproviders + 1) * sizeof(*grown));
    if (grown == NULL)
        return;
    rq->providers = grown;
    if ((copy = strdup(provider)) != NULL)
        rq->providers[rq->nproviders++] = copy;
}

/* The script with the prefix as its first argument. */
static redisReply *run(redis_queue_t *rq, jn_redis_block_script_t *s, int argc, const char **argv)
{
    char err[512];
    redisReply *reply;

    argv[0] = rq->prefix;
    reply = jn_redis_block_script(rq->conn, s, 0, argc, argv, NULL, err, sizeof(err));
    if (reply == NULL)
        snprintf(rq->base.errmsg, sizeof(rq->base.errmsg), "%s", err);
    return reply;
}

static int valid_provider(const char *p)
{
    size_t n = 0;

    for (; *p; p++, n++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return 0;
    return n > 0 && n <= MAX_PROVIDER_LEN;
}

/* ---- a job from a hash (HGETALL) or a dead-letter entry ------------------- */

typedef struct {
    const char *id, *idem, *grp, *prov, *org, *payload, *cons, *err, *state;
    int64_t prio, att, max, cancel, enq, ready, fin;
} raw_job_t;

static int64_t num(const char *s)
{
    return s ? strtoll(s, NULL, 10) : 0;
}

static void raw_set(raw_job_t *r, const char *k, const char *v)
{
    if (!strcmp(k, "id") || !strcmp(k, "j"))
        r->id = v;
    else if (!strcmp(k, "idem"))
        r->idem = v;
    else if (!strcmp(k, "grp") || !strcmp(k, "g"))
        r->grp = v;
    else if (!strcmp(k, "prov"))
        r->prov = v;
    else if (!strcmp(k, "org") || !strcmp(k, "o"))
        r->org = v;
    else if (!strcmp(k, "payload") || !strcmp(k, "p"))
        r->payload = v;
    else if (!strcmp(k, "cons"))
        r->cons = v;
    else if (!strcmp(k, "err"))
        r->err = v;
    else if (!strcmp(k, "state"))
        r->state = v;
    else if (!strcmp(k, "prio"))
        r->prio = num(v);
    else if (!strcmp(k, "att") || !strcmp(k, "a"))
        r->att = num(v);
    else if (!strcmp(k, "max") || !strcmp(k, "m"))
        r->max = num(v);
    else if (!strcmp(k, "cancel"))
        r->cancel = num(v);
    else if (!strcmp(k, "enq") || !strcmp(k, "e"))
        r->enq = num(v);
    else if (!strcmp(k, "ready"))
        r->ready = num(v);
    else if (!strcmp(k, "fin") || !strcmp(k, "t"))
        r->fin = num(v);
}

/* Copies the strings into one block owned by out (jn_queue_job_clear). An
 * empty optional string is NULL, as the embedded queue reports it. */
static int job_fill(const raw_job_t *r, jn_queue_job_t *out)
{
    const char *src[8] = {r->id, r->idem, r->grp, r->prov, r->org, r->payload, r->cons, r->err};
    char **dst[8] = {&out->id,       &out->idempotency_key, &out->group_key,
                     &out->provider, &out->organization_id, &out->payload_json,
                     &out->consumer, &out->last_error};
    size_t total = 0, i, n;
    char *p;
    int st;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < 8; i++)
        total += (src[i] ? strlen(src[i]) : 0) + 1;
    out->strings_ = p = malloc(total);
    if (p == NULL)
        return -1;
    for (i = 0; i < 8; i++) {
        int optional = i == 1 || i == 2 || i == 6 || i == 7;
        if (src[i] == NULL || (optional && src[i][0] == '\0')) {
            *dst[i] = NULL;
            continue;
        }
        n = strlen(src[i]);
        memcpy(p, src[i], n + 1);
        *dst[i] = p;
        p += n + 1;
    }
    st = jn_queue_state_parse(r->state);
    out->state = st < 0 ? JN_QSTATE_QUEUED : (jn_queue_state_t)st;
    out->priority =
        (unsigned)r->prio < JN_PRIORITY_COUNT ? (jn_priority_t)r->prio : JN_PRIORITY_NORMAL;
    out->attempts = (int)r->att;
    out->max_attempts = (int)r->max;
    out->cancel_requested = r->cancel != 0;
    out->enqueued_ms = r->enq;
    out->ready_ms = r->ready;
    out->finished_ms = r->fin;
    return 0;
}

/* A flat field/value array (HGETALL, a stream entry's fields) into out. */
static int job_from_pairs(const redisReply *pairs, jn_queue_job_t *out)
{
    raw_job_t r = {0};
    size_t i;

    if (pairs == NULL || pairs->type != REDIS_REPLY_ARRAY || pairs->elements < 2)
        return 1;
    for (i = 0; i + 1 < pairs->elements; i += 2)
        if (pairs->element[i]->type == REDIS_REPLY_STRING &&
            pairs->element[i + 1]->type == REDIS_REPLY_STRING)
            raw_set(&r, pairs->element[i]->str, pairs->element[i + 1]->str);
    if (r.id == NULL)
        return 1;
    return job_fill(&r, out);
}

/* ---- operations --------------------------------------------------------- */

static void rq_destroy(jn_queue_t *q)
{
    redis_queue_t *rq = to_rq(q);
    const char **argv;
    size_t i;

    /* leave the groups this process joined, unless it still holds a job */
    if (rq->conn != NULL && rq->nproviders > 0 && rq->nheld == 0 &&
        (argv = calloc(rq->nproviders + 2, sizeof(*argv))) != NULL) {
        argv[1] = q->opts.consumer;
        for (i = 0; i < rq->nproviders; i++)
            argv[i + 2] = rq->providers[i];
        freeReplyObject(run(rq, &goodbye_script, (int)rq->nproviders + 2, argv));
        free(argv);
    }
    for (i = 0; i < rq->nproviders; i++)
        free(rq->providers[i]);
    free(rq->providers);
    free(rq->held);
    jn_redis_block_close(rq->conn);
    free(rq);
}

static int rq_enqueue(jn_queue_t *q, const jn_queue_enqueue_t *in, jn_queue_enqueued_t *out)
{
    redis_queue_t *rq = to_rq(q);
    char id[JN_QUEUE_ID_LEN], prio[4], now[24], nb[24], max[16], ttl[24];
    const char *argv[13];
    redisReply *r;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (in->provider == NULL || *in->provider == '\0')
        return fail(rq, "enqueue", "no provider");
    if (!valid_provider(in->provider))
        return fail(rq, "enqueue",
                    "the provider must be 1 to 64 of [A-Za-z0-9_-] (it names a stream)");
    if (in->organization_id == NULL || *in->organization_id == '\0')
        return fail(rq, "enqueue", "no organization");
    if (in->payload_json == NULL)
        return fail(rq, "enqueue", "no payload");
    if ((unsigned)in->priority >= JN_PRIORITY_COUNT)
        return fail(rq, "enqueue", "invalid priority");
    if (in->id != NULL)
        snprintf(id, sizeof(id), "%s", in->id);
    else if (jn_random_id(id) != 0)
        return fail(rq, "enqueue", "no random bytes for a job id");
    snprintf(prio, sizeof(prio), "%d", (int)in->priority);
    snprintf(now, sizeof(now), "%" PRId64, jn_queue_now(q));
    snprintf(nb, sizeof(nb), "%" PRId64, in->not_before_ms);
    snprintf(max, sizeof(max), "%d",
             in->max_attempts > 0 ? in->max_attempts : q->opts.max_attempts);
    snprintf(ttl, sizeof(ttl), "%" PRId64, rq->retention_ms);
    argv[1] = id;
    argv[2] = in->idempotency_key ? in->idempotency_key : "";
    argv[3] = in->group_key ? in->group_key : "";
    argv[4] = in->provider;
    argv[5] = in->organization_id;
    argv[6] = prio;
    argv[7] = in->payload_json;
    argv[8] = now;
    argv[9] = nb;
    argv[10] = max;
    argv[11] = (in->flags & JN_QUEUE_COALESCE) ? "1" : "0";
    argv[12] = ttl;
    if ((r = run(rq, &enqueue_script, 13, argv)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[0]->type == REDIS_REPLY_STRING) {
        snprintf(out->id, sizeof(out->id), "%s", r->element[0]->str);
        out->created = r->element[1]->integer == 1;
        out->coalesced = r->element[2]->integer == 1;
        rc = 0;
    } else {
        fail(rq, "enqueue", "unexpected reply from the enqueue script");
    }
    freeReplyObject(r);
    return rc;
}

static int rq_claim(jn_queue_t *q, const char *provider, jn_queue_job_t *out)
{
    redis_queue_t *rq = to_rq(q);
    char now[24], vis[24], window[16];
    const char *argv[7];
    redisReply *r;
    int rc;

    memset(out, 0, sizeof(*out));
    if (provider == NULL || !valid_provider(provider))
        return fail(rq, "claim", "the provider must be 1 to 64 of [A-Za-z0-9_-]");
    snprintf(now, sizeof(now), "%" PRId64, jn_queue_now(q));
    snprintf(vis, sizeof(vis), "%" PRId64, q->opts.visibility_timeout_ms);
    snprintf(window, sizeof(window), "%d", rq->window);
    argv[1] = provider;
    argv[2] = q->opts.consumer;
    argv[3] = now;
    argv[4] = vis;
    argv[5] = window;
    argv[6] = RR_SPAN;
    provider_note(rq, provider);
    if ((r = run(rq, &claim_script, 7, argv)) == NULL)
        return -1;
    if (r->type != REDIS_REPLY_ARRAY) { /* false: nothing ready */
        freeReplyObject(r);
        return 1;
    }
    rc = job_from_pairs(r, out);
    freeReplyObject(r);
    if (rc != 0)
        return rc < 0 ? fail(rq, "claim", "out of memory")
                      : fail(rq, "claim", "the claimed job has no id");
    held_add(rq, out->id);
    return 0;
}

static int finish(redis_queue_t *rq, const char *op, const jn_queue_job_t *job, const char *error,
                  int64_t retry_at_ms, int *dead)
{
    char att[16], now[24], ttl[24], retry[24];
    const char *argv[10];
    redisReply *r;
    int rc = -1;

    if (dead != NULL)
        *dead = 0;
    if (job == NULL || job->id == NULL)
        return fail(rq, op, "no job");
    snprintf(att, sizeof(att), "%d", job->attempts);
    snprintf(now, sizeof(now), "%" PRId64, jn_queue_now(&rq->base));
    snprintf(ttl, sizeof(ttl), "%" PRId64, rq->retention_ms);
    snprintf(retry, sizeof(retry), "%" PRId64, retry_at_ms);
    argv[1] = op;
    argv[2] = job->id;
    argv[3] = rq->base.opts.consumer;
    argv[4] = att;
    argv[5] = now;
    argv[6] = ttl;
    argv[7] = error ? error : "";
    argv[8] = retry;
    held_remove(rq, job->id);
    if ((r = run(rq, &finish_script, 9, argv)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_INTEGER) {
        rc = (int)r->element[0]->integer;
        if (rc == 0 && dead != NULL && r->elements >= 2)
            *dead = r->element[1]->integer == 1;
    } else {
        fail(rq, op, "unexpected reply from the finish script");
    }
    freeReplyObject(r);
    return rc;
}

static int rq_ack(jn_queue_t *q, const jn_queue_job_t *job)
{
    return finish(to_rq(q), "ack", job, NULL, 0, NULL);
}

static int rq_nack(jn_queue_t *q, const jn_queue_job_t *job, const char *error, int64_t retry_at_ms,
                   int *dead)
{
    if (retry_at_ms <= 0)
        retry_at_ms = jn_queue_now(q) + jn_queue_backoff_ms(q, job->id, job->attempts);
    return finish(to_rq(q), "nack", job, error, retry_at_ms, dead);
}

static int rq_release(jn_queue_t *q, const jn_queue_job_t *job)
{
    return finish(to_rq(q), "release", job, NULL, 0, NULL);
}

static int rq_cancel_job(jn_queue_t *q, const jn_queue_job_t *job, const char *reason)
{
    return finish(to_rq(q), "cancel", job, reason ? reason : "cancelled", 0, NULL);
}

/* The script's argument list: prefix, fixed arguments, then the held ids. */
static const char **held_argv(redis_queue_t *rq, int fixed)
{
    const char **argv = calloc((size_t)fixed + rq->nheld + 1, sizeof(*argv));
    size_t i;

    if (argv != NULL)
        for (i = 0; i < rq->nheld; i++)
            argv[(size_t)fixed + i] = rq->held[i];
    return argv;
}

static int rq_heartbeat(jn_queue_t *q)
{
    redis_queue_t *rq = to_rq(q);
    char now[24], vis[24];
    const char **argv;
    redisReply *r;
    size_t i;

    if (rq->nheld == 0)
        return 0;
    if ((argv = held_argv(rq, 4)) == NULL)
        return fail(rq, "heartbeat", "out of memory");
    snprintf(now, sizeof(now), "%" PRId64, jn_queue_now(q));
    snprintf(vis, sizeof(vis), "%" PRId64, q->opts.visibility_timeout_ms);
    argv[1] = q->opts.consumer;
    argv[2] = now;
    argv[3] = vis;
    r = run(rq, &heartbeat_script, 4 + (int)rq->nheld, argv);
    free(argv);
    if (r == NULL)
        return -1;
    for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            held_remove(rq, r->element[i]->str);
    freeReplyObject(r);
    return 0;
}

static int rq_cancel(jn_queue_t *q, const char *id, jn_queue_state_t *before)
{
    redis_queue_t *rq = to_rq(q);
    char now[24], ttl[24];
    const char *argv[4];
    redisReply *r;
    int rc = -1, st;

    if (id == NULL || *id == '\0')
        return fail(rq, "cancel", "no job id");
    snprintf(now, sizeof(now), "%" PRId64, jn_queue_now(q));
    snprintf(ttl, sizeof(ttl), "%" PRId64, rq->retention_ms);
    argv[1] = id;
    argv[2] = now;
    argv[3] = ttl;
    if ((r = run(rq, &cancel_script, 4, argv)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER) {
        if (r->element[0]->integer == 0) {
            rc = 1;
        } else {
            st = r->element[1]->type == REDIS_REPLY_STRING
                     ? jn_queue_state_parse(r->element[1]->str)
                     : -1;
            if (before != NULL)
                *before = st < 0 ? JN_QSTATE_DONE : (jn_queue_state_t)st;
            rc = 0;
        }
    } else {
        fail(rq, "cancel", "unexpected reply from the cancel script");
    }
    freeReplyObject(r);
    return rc;
}

static int rq_poll_cancelled(jn_queue_t *q, jn_queue_id_fn fn, void *ud)
{
    redis_queue_t *rq = to_rq(q);
    const char **argv;
    redisReply *r;
    size_t i;

    if (rq->nheld == 0)
        return 0;
    if ((argv = held_argv(rq, 2)) == NULL)
        return fail(rq, "poll_cancelled", "out of memory");
    argv[1] = q->opts.consumer;
    r = run(rq, &cancelled_script, 2 + (int)rq->nheld, argv);
    free(argv);
    if (r == NULL)
        return -1;
    for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING && fn(ud, r->element[i]->str) != 0)
            break;
    freeReplyObject(r);
    return 0;
}

/* Builds "<prefix>jn:job:<id>" or another key into buf. */
static const char *key(redis_queue_t *rq, char *buf, size_t len, const char *a, const char *b)
{
    snprintf(buf, len, "%s%s%s", rq->prefix, a, b ? b : "");
    return buf;
}

static int rq_get(jn_queue_t *q, const char *id, jn_queue_job_t *out)
{
    redis_queue_t *rq = to_rq(q);
    char k[256], err[512];
    const char *argv[2] = {"HGETALL", NULL};
    redisReply *r;
    int rc;

    memset(out, 0, sizeof(*out));
    if (id == NULL || *id == '\0' || strlen(id) > 100)
        return 1;
    argv[1] = key(rq, k, sizeof(k), "jn:job:", id);
    if ((r = jn_redis_block_command(rq->conn, 2, argv, NULL, err, sizeof(err))) == NULL)
        return fail(rq, "get", err);
    rc = job_from_pairs(r, out);
    freeReplyObject(r);
    return rc < 0 ? fail(rq, "get", "out of memory") : rc;
}

/* ARGV: prefix, group. Returns the id of the group's running job or false:
 * the lock names the job a worker claimed (renewed by its heartbeat). */
static jn_redis_block_script_t group_running_script = JN_REDIS_BLOCK_SCRIPT(
    LUA_PRELUDE "local holder = redis.call('GET', P .. 'jn:lock:' .. ARGV[2])\n"
                "if holder and redis.call('HGET', jkey(holder), 'state') == 'running' then\n"
                "  return holder\n"
                "end\n"
                "return false\n");

static int rq_group_running(jn_queue_t *q, const char *group_key, char id[JN_QUEUE_ID_LEN])
{
    redis_queue_t *rq = to_rq(q);
    const char *argv[2];
    redisReply *r;
    int rc = 1;

    id[0] = '\0';
    if (group_key == NULL)
        return fail(rq, "group_running", "no group");
    if (*group_key == '\0')
        return 1; /* a job without a group is in none */
    argv[1] = group_key;
    if ((r = run(rq, &group_running_script, 2, argv)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_STRING) {
        snprintf(id, JN_QUEUE_ID_LEN, "%s", r->str);
        rc = 0;
    }
    freeReplyObject(r);
    return rc;
}

/* Dead letters: the entries of the dead-letter streams, oldest first. */
static int each_dead(redis_queue_t *rq, const char *provider, jn_queue_job_fn fn, void *ud)
{
    static const char *const prio_names[JN_PRIORITY_COUNT] = {"high", "normal", "low"};
    const char *argv[6];
    char k[256], start[64], err[512];
    redisReply *provs = NULL, *r;
    size_t i, e, nprov;
    int p, stop = 0, rc = 0;

    if (provider == NULL) {
        argv[0] = "SMEMBERS";
        argv[1] = key(rq, k, sizeof(k), "jn:providers", NULL);
        if ((provs = jn_redis_block_command(rq->conn, 2, argv, NULL, err, sizeof(err))) == NULL)
            return fail(rq, "dead letters", err);
    }
    nprov = provider ? 1 : provs->elements;
    for (i = 0; i < nprov && !stop && rc == 0; i++) {
        const char *prov = provider ? provider : provs->element[i]->str;
        for (p = 0; p < JN_PRIORITY_COUNT && !stop && rc == 0; p++) {
            char stream[256];
            snprintf(stream, sizeof(stream), "%sintegrations.jobs.%s.%s.dead", rq->prefix, prov,
                     prio_names[p]);
            snprintf(start, sizeof(start), "-");
            for (;;) {
                argv[0] = "XRANGE";
                argv[1] = stream;
                argv[2] = start;
                argv[3] = "+";
                argv[4] = "COUNT";
                argv[5] = "500";
                if ((r = jn_redis_block_command(rq->conn, 6, argv, NULL, err, sizeof(err))) ==
                    NULL) {
                    rc = fail(rq, "dead letters", err);
                    break;
                }
                for (e = 0; e < r->elements && !stop; e++) {
                    redisReply *entry = r->element[e];
                    jn_queue_job_t job;
                    raw_job_t raw = {0};
                    size_t f;
                    redisReply *pairs;
                    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
                        entry->element[0]->type != REDIS_REPLY_STRING ||
                        entry->element[1]->type != REDIS_REPLY_ARRAY)
                        continue;
                    snprintf(start, sizeof(start), "(%s", entry->element[0]->str);
                    pairs = entry->element[1];
                    for (f = 0; f + 1 < pairs->elements; f += 2)
                        if (pairs->element[f]->type == REDIS_REPLY_STRING &&
                            pairs->element[f + 1]->type == REDIS_REPLY_STRING)
                            raw_set(&raw, pairs->element[f]->str, pairs->element[f + 1]->str);
                    raw.prov = prov;
                    raw.prio = p;
                    raw.state = "dead";
                    if (job_fill(&raw, &job) != 0) {
                        rc = fail(rq, "dead letters", "out of memory");
                        break;
                    }
                    stop = fn(ud, &job) != 0;
                    jn_queue_job_clear(&job);
                }
                e = r->elements;
                freeReplyObject(r);
                if (e < 500 || stop || rc != 0)
                    break;
            }
        }
    }
    if (provs != NULL)
        freeReplyObject(provs);
    return rc;
}

static int rq_each(jn_queue_t *q, jn_queue_state_t state, const char *provider, jn_queue_job_fn fn,
                   void *ud)
{
    redis_queue_t *rq = to_rq(q);
    const char *argv[4];
    redisReply *ids;
    jn_queue_job_t job;
    size_t i;
    int rc = 0;

    if (provider != NULL && !valid_provider(provider))
        return 0;
    if (state == JN_QSTATE_DEAD)
        return each_dead(rq, provider, fn, ud);
    if (state != JN_QSTATE_QUEUED && state != JN_QSTATE_RUNNING)
        return fail(rq, "each",
                    "the Redis queue lists queued, running and dead jobs; a finished job is "
                    "kept by id only (jobs show)");
    argv[1] = state == JN_QSTATE_QUEUED ? "queued" : "running";
    argv[2] = provider ? provider : "";
    if ((ids = run(rq, &each_script, 3, argv)) == NULL)
        return -1;
    for (i = 0; ids->type == REDIS_REPLY_ARRAY && i < ids->elements && rc == 0; i++) {
        rc = rq_get(q, ids->element[i]->str, &job);
        if (rc == 1) { /* finished meanwhile */
            rc = 0;
            continue;
        }
        if (rc == 0) {
            if (job.state == state && fn(ud, &job) != 0)
                i = ids->elements;
            jn_queue_job_clear(&job);
        }
    }
    freeReplyObject(ids);
    return rc;
}

static int rq_stats(jn_queue_t *q, jn_queue_stat_fn fn, void *ud)
{
    redis_queue_t *rq = to_rq(q);
    const char *argv[2];
    char now[24];
    redisReply *r;
    size_t i;

    snprintf(now, sizeof(now), "%" PRId64, jn_queue_now(q));
    argv[1] = now;
    if ((r = run(rq, &stats_script, 2, argv)) == NULL)
        return -1;
    for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *row = r->element[i];
        jn_queue_stat_t s;
        if (row->type != REDIS_REPLY_ARRAY || row->elements != 7)
            continue;
        s.provider = row->element[0]->str;
        s.priority = (jn_priority_t)row->element[1]->integer;
        s.queued = row->element[2]->integer;
        s.ready = row->element[3]->integer;
        s.running = row->element[4]->integer;
        s.dead = row->element[5]->integer;
        s.oldest_age_ms = row->element[6]->integer;
        if (fn(ud, &s) != 0)
            break;
    }
    freeReplyObject(r);
    return 0;
}

static const jn_queue_ops_t redis_queue_ops = {
    .name = "redis",
    .destroy = rq_destroy,
    .enqueue = rq_enqueue,
    .claim = rq_claim,
    .ack = rq_ack,
    .nack = rq_nack,
    .release = rq_release,
    .cancel_job = rq_cancel_job,
    .heartbeat = rq_heartbeat,
    .cancel = rq_cancel,
    .poll_cancelled = rq_poll_cancelled,
    .get = rq_get,
    .group_running = rq_group_running,
    .each = rq_each,
    .stats = rq_stats,
};

jn_queue_t *jn_queue_open_redis(const char *url, const jn_queue_redis_opts_t *ropts,
                                const jn_queue_opts_t *opts, char *err, size_t errlen)
{
    jn_queue_redis_opts_t ro = {0};
    redis_queue_t *rq;

    if (ropts != NULL)
        ro = *ropts;
    if (ro.prefix != NULL && strlen(ro.prefix) >= sizeof(rq->prefix)) {
        jn_errorf(err, errlen, "queue: the key prefix is longer than %zu bytes",
                  sizeof(rq->prefix) - 1);
        return NULL;
    }
    if (ro.claim_window < 0 || ro.claim_window > MAX_CLAIM_WINDOW) {
        jn_errorf(err, errlen, "queue: claim_window must be from 1 to %d", MAX_CLAIM_WINDOW);
        return NULL;
    }
    if (ro.retention_ms < 0) {
        jn_errorf(err, errlen, "queue: the retention must not be negative");
        return NULL;
    }
    if ((rq = calloc(1, sizeof(*rq))) == NULL) {
        jn_errorf(err, errlen, "queue: out of memory");
        return NULL;
    }
    jn_queue_init_base(&rq->base, &redis_queue_ops, opts);
    snprintf(rq->prefix, sizeof(rq->prefix), "%s", ro.prefix ? ro.prefix : "");
    rq->retention_ms = ro.retention_ms > 0 ? ro.retention_ms : DEFAULT_RETENTION_MS;
    rq->window = ro.claim_window > 0 ? ro.claim_window : DEFAULT_CLAIM_WINDOW;
    rq->conn = jn_redis_block_open(url, &ro.conn, err, errlen);
    if (rq->conn == NULL) {
        free(rq);
        return NULL;
    }
    return &rq->base;
}

int jn_queue_redis_down(jn_queue_t *q, char *why, size_t len)
{
    if (q == NULL || q->ops != &redis_queue_ops)
        return 0;
    return jn_redis_block_down(to_rq(q)->conn, why, len);
}
