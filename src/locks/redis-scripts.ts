/**
 * The Lua scripts of the Redis locks. Each runs atomically on the server, so a check and the write it
 * guards cannot be split by another client. RedisLocker uses QUEUE_ACQUIRE / QUEUE_RELEASE / EXTEND;
 * Redlock runs the same queue on each node, with REDLOCK_ACQUIRE (QUEUE_ACQUIRE with tickets),
 * REDLOCK_YIELD, QUEUE_RELEASE, EXTEND and RAISE_FENCE.
 *
 * Keys, for a lock named K under prefix P (the {…} hash tag keeps all of them in one cluster slot).
 * Every key has an expiry, so what a name leaves on the server is gone one ttl after its last use:
 * memory is bounded by the live locks and waiters, not by every name ever locked.
 *   P{K}            the lock: value = the holder's random token, with a PX expiry
 *   P{K}:fence      the last fence granted (see nextFence), kept a little longer than the granting lock
 *   P{K}:queue      the waiters, in arrival order (ZSET token -> server time in µs; for Redlock, the
 *                   waiter's ticket: see REDLOCK_ACQUIRE)
 *   P{K}:queue:exp  when each waiter's place lapses unless it refreshes it (ZSET token -> server ms);
 *                   both queue keys expire when the last place in them lapses
 *   P{K}:release    the pub/sub channel a release is announced on (waiters subscribe to it)
 */
import { Script } from '../resp/script.js';

/*
 * The fence: a counter that starts from the server's clock. A plain INCR counter is strictly
 * increasing only as long as its key lives, so it could never expire, and every name ever locked kept
 * one key forever. Instead the counter is kept a little longer than the granting lock (KEYS[2] the
 * counter, ARGV[2] the lock's ttl in ms): while it lives, each grant adds 1; when there is none (it
 * expired, or was lost: a restart without persistence, FLUSHALL), it starts again at the server's
 * clock in microseconds, rounded down to a multiple of `stepUs`. That is above every fence handed out
 * before, because the last one was at most its counter's start plus one per grant since (no server
 * grants one name more than once per microsecond: each grant is a script run, and the previous
 * holder's key must go in between), and the counter outlived its last grant by at least a step.
 * It assumes the server's clock has not stepped back since by more than the time the name was idle.
 * While the counter lives no clock is read at all.
 *
 * RedisLocker starts at the microsecond (stepUs 1). Redlock starts at the 100 ms step: its nodes start
 * a fresh name's counters at the same value unless their clocks fall on two sides of a step, so they
 * agree, and the fence step (RAISE_FENCE) costs no round trip; with microseconds they never agreed,
 * and every acquire of a new name paid one. The price: a node that loses its data (restart without
 * persistence, FLUSHALL) less than 100 ms after it last granted a name can start that name's counter
 * below its last fence. docs/redlock.md says how that compares with what such a restart already breaks.
 * TIME in µs is below 2^51 now: exact in Lua's doubles (2^53), and so until the year 2255.
 * Numbers that go back to Redis are formatted with %.0f: how a server turns a Lua number or a ZSET
 * score into a string varies between versions, and some write round ones in exponent form ("1.7e+12"),
 * which PEXPIRE refuses and a reader of the counter would not expect. (PEXPIRE, not PEXPIREAT: the
 * least-privilege ACL of docs/safety.md allows the one, not the other.)
 */
function nextFence(stepUs: number): string {
  const keepMs = Math.max(1, stepUs / 1000); // the counter outlives its lock by a step (at least 1 ms)
  return `local function grant()
  local fence = tonumber(redis.call('GET', KEYS[2]))
  if fence then
    fence = fence + 1
  else
    local t = redis.call('TIME')
    local us = t[1] * 1000000 + t[2]
    fence = us - us % ${stepUs}
  end
  redis.call('SET', KEYS[2], string.format('%.0f', fence), 'PX', tonumber(ARGV[2]) + ${keepMs})
  return {1, fence}
end`;
}

/** Redlock's start step, in µs (see above), and how much longer than its lock a raised counter lives. */
export const REDLOCK_FENCE_STEP_US = 100_000;

/**
 * KEYS[1] lock, KEYS[2..] keys that live exactly as long as the lock (an election's leader record);
 * ARGV[1] token, ARGV[2] ttl ms.
 * 1 = extended; 0 = the key is gone (expired); -1 = someone else holds it now (stolen).
 */
export const EXTEND = new Script(
  `local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  for i = 2, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
  return 1
end
if holder then return -1 end
return 0`,
  1,
);

/** EXTEND for a lock with a record that lives as long as it does: KEYS[1] lock, KEYS[2] the record. */
export const EXTEND_WITH_RECORD = new Script(EXTEND.lua, 2);

/*
 * The queue. A plain "everyone retries on release" wait is a race that the same client keeps winning:
 * measured here with 16 contenders, one waited the whole 5 s run while another took the lock 750
 * times. So RedisLocker's waiters stand in line: the lock goes to the head of the queue, and the
 * release message names the head, so only that waiter sends anything. A waiter that crashes keeps its
 * place only until its entry lapses (it refreshes it on every attempt; see RedisLocker), and any script
 * run drops lapsed entries first. If no script runs on the lock again, the queue keys' own expiry (the
 * last lapse time in them) takes the entry away.
 */
const DROP_LAPSED = `local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for _, w in ipairs(lapsed) do redis.call('ZREM', KEYS[3], w) end
if #lapsed > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now) end
local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]`;

/** Where a newcomer joins the queue: at the server's clock in µs, so in arrival order. */
const ARRIVAL = 't[1] * 1000000 + t[2]';

/**
 * Lua (inside an `if`): join the queue as `member` at `score` (arrival order unless told), keeping an
 * earlier place; the place lasts ARGV[3] ms, and both queue keys live until the last place in them lapses.
 */
function joinQueue(member: string, score = ARRIVAL): string {
  return `  redis.call('ZADD', KEYS[3], 'NX', ${score}, ${member})
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[3]), ${member})
  local left = string.format('%.0f', redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')[2] - now)
  redis.call('PEXPIRE', KEYS[3], left)
  redis.call('PEXPIRE', KEYS[4], left)`;
}

/** Lua: `headLeft`, the ms until the queue's head's place lapses, or -1 if the head is `member` or there is none. */
function headLeft(member: string): string {
  return `local headLeft = -1
if head and head ~= ${member} then
  local lapses = redis.call('ZSCORE', KEYS[4], head)
  if lapses then headLeft = tonumber(lapses) - now end
end`;
}

/** Lua: the holders ZSET (KEYS[1]) lives as long as its longest hold (its highest score, server ms). */
function livesAsLongest(indent: string): string {
  return `${indent}local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2]
${indent}redis.call('PEXPIRE', KEYS[1], string.format('%.0f', last - now))`;
}

/**
 * The uncontended case (no queue) costs EXISTS + SET and the fence's GET + SET (and TIME, when the
 * counter has to start again): no key is read or written that a plain SET NX with a counter would not touch.
 * KEYS[1] lock, KEYS[2] fence, KEYS[3] queue, KEYS[4] queue expiries;
 * ARGV[1] token, ARGV[2] ttl ms, ARGV[3] how long our place in the queue lasts (0: do not queue), ARGV[4] channel.
 * Granted: {1, fence}. Not granted: {0, the holder's PTTL (-2 if the lock is free but not our turn),
 * ms until the head's place lapses (-1 if no one else is waiting)}.
 */
export const QUEUE_ACQUIRE = new Script(queueAcquire(1), 4);

/**
 * QUEUE_ACQUIRE's Lua, with the fence started at `stepUs`. Newcomers join at the end (arrival order),
 * or, given `ticket` (the Lua of the score), at their ticket's place, which may be ahead of the
 * head: then a free lock is theirs at once.
 */
function queueAcquire(stepUs: number, ticket?: string): string {
  const joined = ticket
    ? `${joinQueue('ARGV[1]', ticket)}
  head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  if head == ARGV[1] and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    redis.call('ZREM', KEYS[3], ARGV[1])
    redis.call('ZREM', KEYS[4], ARGV[1])
    return grant()
  end`
    : `${joinQueue('ARGV[1]')}
  head = head or ARGV[1]`;
  return `${nextFence(stepUs)}
if redis.call('EXISTS', KEYS[3]) == 0 and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return grant()
end
${DROP_LAPSED}
if (not head or head == ARGV[1]) and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if head then
    redis.call('ZREM', KEYS[3], ARGV[1])
    redis.call('ZREM', KEYS[4], ARGV[1])
  end
  return grant()
end
if ARGV[3] ~= '0' then
${joined}
end
local pttl = redis.call('PTTL', KEYS[1])
if #lapsed > 0 and pttl == -2 and head ~= ARGV[1] then
  redis.call('PUBLISH', ARGV[4], head)
end
${headLeft('ARGV[1]')}
return {0, pttl, headLeft}`;
}

/**
 * KEYS as QUEUE_ACQUIRE; ARGV[1] token, ARGV[2] channel.
 * If we hold the lock: delete it and announce the next waiter by name (no one is told if no one waits): 1.
 * Otherwise (an abandoned wait, or an attempt that may have landed): leave the queue, and if the lock
 * is free, wake whoever is at the head now: 0. Never deletes another holder's lock.
 */
export const QUEUE_RELEASE = new Script(
  `local released = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('EXISTS', KEYS[3]) == 0 then return 1 end
  released = 1
else
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
end
${DROP_LAPSED}
if released == 1 then
  redis.call('PUBLISH', ARGV[2], head or '')
elseif head and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('PUBLISH', ARGV[2], head)
end
return released`,
  4,
);

/*
 * Redlock's queue. Each node keeps the same queue as RedisLocker's, but a waiter joins it at its
 * ticket (the wall-clock µs at which its wait began, the same number on every node) rather than at
 * the node's clock, so every node orders the waiters alike, ties broken by token. The head on one
 * node is then the head on all of them once its entries have landed, and two waiters cannot keep
 * splitting the nodes between them.
 *
 * A ticket is the client's clock, so each node takes it as at most TICKET_SKEW_US away from its own:
 * a client whose clock is an hour behind would otherwise go ahead of everyone on every acquire, and
 * one that loops acquires would starve the rest. Within that bound (clocks kept by NTP are ms apart)
 * the ticket is used as it is, so the nodes still agree.
 */

/** How far from a node's clock a Redlock ticket may place a waiter (1 s), in µs. */
export const TICKET_SKEW_US = 1_000_000;

/** Lua: the ticket in `arg`, held within TICKET_SKEW_US of this node's clock (`t`, from DROP_LAPSED). */
function ticketScore(arg: string): string {
  return `math.min(math.max(tonumber(${arg}), ${ARRIVAL} - ${TICKET_SKEW_US}), ${ARRIVAL} + ${TICKET_SKEW_US})`;
}

/**
 * QUEUE_ACQUIRE for one Redlock node: the fence starts at Redlock's 100 ms step, and a waiter joins
 * at its ticket (held within TICKET_SKEW_US of the node's clock). KEYS as QUEUE_ACQUIRE; ARGV[1]
 * token, ARGV[2] ttl ms, ARGV[3] how long our place lasts (0: do not queue), ARGV[4] channel,
 * ARGV[5] ticket. Replies as QUEUE_ACQUIRE.
 */
export const REDLOCK_ACQUIRE = new Script(queueAcquire(REDLOCK_FENCE_STEP_US, ticketScore('ARGV[5]')), 4);

/**
 * After a round that did not win a quorum: gives this node's grant back but keeps our place, at our
 * ticket, and wakes the head if that is someone else. KEYS as QUEUE_ACQUIRE; ARGV[1] token,
 * ARGV[2] channel, ARGV[3] how long our place lasts, ARGV[4] ticket.
 * 1 = it was ours and is free now; 0 = it was not ours (nothing changed). Never deletes another holder's lock.
 */
export const REDLOCK_YIELD = new Script(
  `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
${DROP_LAPSED}
${joinQueue('ARGV[1]', ticketScore('ARGV[4]'))}
head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
if head ~= ARGV[1] then redis.call('PUBLISH', ARGV[2], head) end
return 1`,
  4,
);

/*
 * Semaphores (RedisSemaphore): the same queue and fence, with the lock's single holder replaced by a
 * set of permits. For a semaphore named K under prefix P, in one slot:
 *   P{K}:sem            ZSET token -> when that permit expires (server ms). The key itself lives as
 *                       long as its longest permit; expired permits are dropped by every script run.
 *   P{K}:sem:fence, P{K}:sem:queue, P{K}:sem:queue:exp, P{K}:sem:release   as for a lock
 * A permit expires by the server's clock (TIME), never the client's: that is what the score is.
 */

/**
 * KEYS[1] permits, KEYS[2] fence, KEYS[3] queue, KEYS[4] queue expiries; ARGV[1] token, ARGV[2] ttl ms,
 * ARGV[3] how long our place in the queue lasts (0: do not queue), ARGV[4] channel, ARGV[5] limit.
 * First come, first served: with F permits free, the first F waiters in the queue may take them, and a
 * newcomer only if fewer than F wait. Granted: {1, fence}. Not granted: {0, ms until the soonest permit
 * expires (-2 if one is free but promised to a waiter ahead of us), ms until the head's place lapses
 * (-1 if no one else waits)}, the same shape as QUEUE_ACQUIRE's, so the waiting code is the lock's.
 */
export const SEMAPHORE_ACQUIRE = new Script(
  `${nextFence(1)}
${DROP_LAPSED}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local free = tonumber(ARGV[5]) - redis.call('ZCARD', KEYS[1])
local rank = redis.call('ZRANK', KEYS[3], ARGV[1])
local ahead = rank or redis.call('ZCARD', KEYS[3])
if free > 0 and ahead < free then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  if rank then
    redis.call('ZREM', KEYS[3], ARGV[1])
    redis.call('ZREM', KEYS[4], ARGV[1])
  end
${livesAsLongest('  ')}
  return grant()
end
if ARGV[3] ~= '0' then
${joinQueue('ARGV[1]')}
  head = head or ARGV[1]
end
if #lapsed > 0 and free > 0 then
  local admit = redis.call('ZRANGE', KEYS[3], 0, free - 1)
  if #admit > 0 then redis.call('PUBLISH', ARGV[4], table.concat(admit, ' ')) end
end
local soonest = -2
if free <= 0 then soonest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2] - now end
${headLeft('ARGV[1]')}
return {0, soonest, headLeft}`,
  4,
);

/**
 * KEYS as SEMAPHORE_ACQUIRE; ARGV[1] token, ARGV[2] channel, ARGV[3] limit.
 * Takes our permit back (only ours: it is removed by its token) or our place in the queue, then names
 * the waiters the free permits now admit, in one message of space-separated tokens, so only they send
 * anything. 1 = a live permit was released; 0 = we held none (it had expired, or this was a wait).
 */
export const SEMAPHORE_RELEASE = new Script(
  `${DROP_LAPSED}
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
local released = 0
if score and tonumber(score) > now then released = 1 end
if score then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
  head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local free = tonumber(ARGV[3]) - redis.call('ZCARD', KEYS[1])
if head and free > 0 then
  redis.call('PUBLISH', ARGV[2], table.concat(redis.call('ZRANGE', KEYS[3], 0, free - 1), ' '))
end
return released`,
  4,
);

/**
 * KEYS[1] permits; ARGV[1] token, ARGV[2] ttl ms. Moves our permit's expiry to now + ttl (server
 * clock) if it is still live. 1 = extended; 0 = it is gone (expired, or released).
 */
export const SEMAPHORE_EXTEND = new Script(
  `local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then
  if score then redis.call('ZREM', KEYS[1], ARGV[1]) end
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
${livesAsLongest('')}
return 1`,
  1,
);

/*
 * Read-write locks (RedisRWLock): the queue and the fence again, with holders that are readers or a
 * writer. For a lock named K under prefix P, in one slot:
 *   P{K}:rw             ZSET "r:<token>" or "w:<token>" -> when that hold expires (server ms)
 *   P{K}:rw:fence, P{K}:rw:queue (members "r:<token>", "w:<token>"), P{K}:rw:queue:exp, P{K}:rw:release
 * One fence counter serves both modes, so a writer's fence is above every reader it waited for.
 * Writer-preferring and FIFO: a request is granted only if nothing ahead of it in the queue would
 * conflict with it, so a waiting writer stops every reader that comes after it.
 */

/** Lua: the live holders (after dropping expired ones): is a writer among them, and how many readers. */
const RW_HOLDERS = `redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local writer, readers = false, 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(m, 1, 1) == 'w' then writer = true else readers = readers + 1 end
end`;

/**
 * Lua: the tokens the queue's head may take now, given the holders: the head writer when nothing is
 * held, else the run of readers at the head when no writer holds; nobody while a writer holds.
 */
const RW_ADMISSIBLE = `local function admissible()
  local admit = {}
  if writer then return admit end
  for _, m in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    if string.sub(m, 1, 1) == 'w' then
      if #admit == 0 and readers == 0 then admit[1] = string.sub(m, 3) end
      return admit
    end
    admit[#admit + 1] = string.sub(m, 3)
  end
  return admit
end`;

/**
 * KEYS[1] holders, KEYS[2] fence, KEYS[3] queue, KEYS[4] queue expiries; ARGV[1] token, ARGV[2] ttl ms,
 * ARGV[3] how long our place in the queue lasts (0: do not queue), ARGV[4] channel, ARGV[5] 'r' or 'w'.
 * A writer is granted when nothing is held and no one waits ahead of it; a reader when no writer
 * holds and no writer waits ahead of it. Replies as QUEUE_ACQUIRE: {1, fence}, or {0, ms until the
 * soonest hold expires (-2 if none does: it is free but promised), ms until the head's place lapses}.
 */
export const RW_ACQUIRE = new Script(
  `${nextFence(1)}
${DROP_LAPSED}
${RW_HOLDERS}
${RW_ADMISSIBLE}
local me = ARGV[5] .. ':' .. ARGV[1]
local rank = redis.call('ZRANK', KEYS[3], me)
local before = rank or redis.call('ZCARD', KEYS[3])
local ahead = {}
if before > 0 then ahead = redis.call('ZRANGE', KEYS[3], 0, before - 1) end
local ok = not writer
if ARGV[5] == 'w' then
  ok = ok and readers == 0 and #ahead == 0
else
  for _, m in ipairs(ahead) do
    if string.sub(m, 1, 1) == 'w' then ok = false break end
  end
end
if ok then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), me)
  if rank then
    redis.call('ZREM', KEYS[3], me)
    redis.call('ZREM', KEYS[4], me)
  end
${livesAsLongest('  ')}
  return grant()
end
if ARGV[3] ~= '0' then
${joinQueue('me')}
  head = head or me
end
if #lapsed > 0 then
  local admit = admissible()
  if #admit > 0 then redis.call('PUBLISH', ARGV[4], table.concat(admit, ' ')) end
end
local soonest = -2
if writer or readers > 0 then soonest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2] - now end
${headLeft('me')}
return {0, soonest, headLeft}`,
  4,
);

/**
 * KEYS as RW_ACQUIRE; ARGV[1] token, ARGV[2] channel, ARGV[3] 'r' or 'w'.
 * Takes our hold back (only ours: it is removed by its token) or our place in the queue, then names
 * the waiters who may go now in one message of space-separated tokens. 1 = a live hold was released;
 * 0 = none was (it had expired, or this was a wait).
 */
export const RW_RELEASE = new Script(
  `${DROP_LAPSED}
local me = ARGV[3] .. ':' .. ARGV[1]
local score = redis.call('ZSCORE', KEYS[1], me)
local released = 0
if score and tonumber(score) > now then released = 1 end
if score then
  redis.call('ZREM', KEYS[1], me)
else
  redis.call('ZREM', KEYS[3], me)
  redis.call('ZREM', KEYS[4], me)
end
${RW_HOLDERS}
${RW_ADMISSIBLE}
local admit = admissible()
if #admit > 0 then redis.call('PUBLISH', ARGV[2], table.concat(admit, ' ')) end
return released`,
  4,
);

/**
 * KEYS[1] holders; ARGV[1] token, ARGV[2] ttl ms. Moves our hold's expiry (read or write, whichever
 * the token holds) to now + ttl by the server's clock, if it is still live. 1 = extended; 0 = gone.
 */
export const RW_EXTEND = new Script(
  `local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for _, mode in ipairs({'w', 'r'}) do
  local me = mode .. ':' .. ARGV[1]
  local score = redis.call('ZSCORE', KEYS[1], me)
  if score and tonumber(score) > now then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), me)
${livesAsLongest('    ')}
    return 1
  end
  if score then redis.call('ZREM', KEYS[1], me) end
end
return 0`,
  1,
);

export interface RedisKeys {
  lock: string;
  fence: string;
  queue: string;
  queueExpiry: string;
  channel: string;
}

export function redisKeys(prefix: string, key: string): RedisKeys {
  return keysUnder(`${prefix}{${key}}`);
}

/** The KEYS of the queued scripts (QUEUE_*, REDLOCK_*, SEMAPHORE_*, RW_* acquire and release), in their order. */
export function queueKeys(keys: RedisKeys): string[] {
  return [keys.lock, keys.fence, keys.queue, keys.queueExpiry];
}

/** A semaphore's keys: the lock's layout under `P{K}:sem`, so a lock and a semaphore of one name never share a key. */
export function semaphoreKeys(prefix: string, key: string): RedisKeys {
  return keysUnder(`${prefix}{${key}}:sem`);
}

/** A read-write lock's keys: the lock's layout under `P{K}:rw`. */
export function rwKeys(prefix: string, key: string): RedisKeys {
  return keysUnder(`${prefix}{${key}}:rw`);
}

function keysUnder(lock: string): RedisKeys {
  return { lock, fence: `${lock}:fence`, queue: `${lock}:queue`, queueExpiry: `${lock}:queue:exp`, channel: `${lock}:release` };
}

/**
 * Redlock only. KEYS[1] lock, KEYS[2] fence counter; ARGV[1] token, ARGV[2] fence.
 * Raises the counter to ARGV[2] (never lowers it), but only while the lock still holds our token: the
 * raise then lands before any later holder's grant on this node. 1 = the counter is >= ARGV[2] now,
 * 0 = the lock is not ours here any more. Redlock uses it to bring the granting nodes that were behind
 * up to the lock's fence, so that a quorum carries it (see docs/redlock.md, "Fencing"). The raised
 * counter lives as long as our lock does on this node, plus a start step (a plain SET would drop its
 * expiry for good).
 */
export const RAISE_FENCE = new Script(
  `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if (tonumber(redis.call('GET', KEYS[2])) or 0) < tonumber(ARGV[2]) then
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl < 1 then pttl = 1 end
  redis.call('SET', KEYS[2], ARGV[2], 'PX', pttl + ${REDLOCK_FENCE_STEP_US / 1000})
end
return 1`,
  2,
);

/*
 * Elections (RedisElection). The leader is the holder of the election's lock (RedisLocker, queue and
 * fence included); the term is the lock's fence. Two more keys, in the same slot:
 *   P{N}:leader   HASH token, fence, value: the leader's record. It expires with the lock (PROCLAIM
 *                 sets its PTTL to the lock's, EXTEND_WITH_RECORD extends both), and it only counts
 *                 while its token is the lock's holder: a record left by a resigned or expired leader
 *                 reads as "no leader".
 *   P{N}:terms    LIST of "<fence>:<value>", the first proclamation of each of the last TERMS_KEPT
 *                 terms, so an observer that reads late still sees every leader in order. It expires
 *                 two lease lengths after the last proclamation.
 *   P{N}:elected  the pub/sub channel a proclamation is announced on (the lock's release channel
 *                 announces the end of a term).
 */
export const TERMS_KEPT = 32;

/**
 * KEYS[1] lock, KEYS[2] leader record, KEYS[3] terms; ARGV[1] token, ARGV[2] fence, ARGV[3] value,
 * ARGV[4] channel, ARGV[5] how long the terms list lives (ms).
 * 1 = proclaimed (and announced); 0 = the lock is not ours: we do not lead.
 */
export const PROCLAIM = new Script(
  `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local pttl = redis.call('PTTL', KEYS[1])
if pttl < 1 then pttl = 1 end
local term = redis.call('HGET', KEYS[2], 'fence')
redis.call('HSET', KEYS[2], 'token', ARGV[1], 'fence', ARGV[2], 'value', ARGV[3])
redis.call('PEXPIRE', KEYS[2], pttl)
if term ~= ARGV[2] then
  redis.call('RPUSH', KEYS[3], ARGV[2] .. ':' .. ARGV[3])
  redis.call('LTRIM', KEYS[3], -${TERMS_KEPT}, -1)
end
redis.call('PEXPIRE', KEYS[3], ARGV[5])
redis.call('PUBLISH', ARGV[4], ARGV[2])
return 1`,
  3,
);

/**
 * KEYS as PROCLAIM; ARGV[1] the last term the reader has seen (-1: only the present).
 * {the lock's PTTL, the leader's fence or nil, its value in hex or nil, {"<fence>:<value in hex>" of
 * each term after ARGV[1] and before the leader's, oldest first}, the newest term in the list}.
 * Values travel in hex: a reply's strings are decoded as UTF-8, and a value may be any bytes. The
 * token never leaves the server.
 */
export const READ_LEADER = new Script(
  `local function hex(s) return (string.gsub(s, '.', function(c) return string.format('%02x', string.byte(c)) end)) end
local holder = redis.call('GET', KEYS[1])
local pttl = redis.call('PTTL', KEYS[1])
local rec = redis.call('HMGET', KEYS[2], 'token', 'fence', 'value')
local fence, value = false, false
if holder and rec[1] == holder then fence, value = rec[2], hex(rec[3]) end
local now = fence and tonumber(fence)
local seen = tonumber(ARGV[1])
local newest = 0
local missed = {}
for _, e in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  local f, v = string.match(e, '^(%d+):(.*)$')
  f = tonumber(f)
  if f then
    if f > newest then newest = f end
    if seen >= 0 and f > seen and (not now or f < now) then missed[#missed + 1] = string.format('%.0f', f) .. ':' .. hex(v) end
  end
end
return {pttl, fence, value, missed, string.format('%.0f', newest)}`,
  3,
);

export interface ElectionKeys extends RedisKeys {
  record: string;
  terms: string;
  elected: string;
}

export function electionKeys(prefix: string, name: string): ElectionKeys {
  const keys = redisKeys(prefix, name);
  return { ...keys, record: `${keys.lock}:leader`, terms: `${keys.lock}:terms`, elected: `${keys.lock}:elected` };
}
