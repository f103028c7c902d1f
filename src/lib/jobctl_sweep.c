/* Index hygiene for job control (include/switchboard/jobctl.h): a periodic, bounded sweep
 * that removes the index entries of jobs whose record is gone (expired after SB_JOB_TTL, or
 * DEAD_RETENTION for failed jobs), so that the indices do not grow without end between
 * listings (a listing drops the expired ids it meets, but nothing else reads the old end).
 *
 * One step looks at:
 *  - up to budget ids of agent:{type}:index, from the rank where the previous step stopped
 *    (the index is ordered by creation, so new ids land after the cursor), wrapping to the
 *    start after the end;
 *  - the user indices agent:{type}:user:{publicKey} returned by one SCAN step (a cursor kept
 *    across steps): up to budget of each one's oldest ids;
 *  - the done / cancelled zsets: entries older than SB_JOB_TTL (their records expired), as the
 *    counts query trims them.
 * Each zset window is one script (SB_SWEEP_LUA): an id whose record does not exist leaves
 * every index (index, done, cancelled; its history too) and the zset it was met in. A job
 * that still has its record is never touched, and the work per step is bounded by budget
 * times the user keys of one SCAN step. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/fmt.h"
#include "switchboard/job.h"
#include "switchboard/jobctl.h"

/* KEYS: the zset; ARGV: prefix, start rank, count, now ms ('': no age trim), job ttl s (the
 * zset as the one key routes the call to its slot's node on Redis Cluster). A gone job
 * loses what forget() (jobctl_lua.h) removes of a job without a record: its history, failure
 * record and index entries, here counted. Returns {next start rank (0: the window reached the
 * end), zset entries removed}. */
static const char SB_SWEEP_LUA[] =
    "local key = KEYS[1]\n"
    "local prefix, start, count, now_ms, ttl = unpack(ARGV)\n"
    "start, count = tonumber(start), tonumber(count)\n"
    "local removed = 0\n"
    "if now_ms ~= '' then\n"
    "  local old = tonumber(now_ms) - tonumber(ttl) * 1000\n"
    "  removed = redis.call('ZREMRANGEBYSCORE', prefix .. 'done', '-inf', old) +\n"
    "    redis.call('ZREMRANGEBYSCORE', prefix .. 'cancelled', '-inf', old)\n"
    "end\n"
    "local ids = redis.call('ZRANGE', key, start, start + count - 1)\n"
    "local zsets = {key, prefix .. 'index', prefix .. 'done', prefix .. 'cancelled'}\n"
    "local here = 0\n" /* ids that left key: the window's next start moves back by them */
    "for _, id in ipairs(ids) do\n"
    "  if redis.call('EXISTS', prefix .. 'job:' .. id) == 0 then\n"
    "    redis.call('DEL', prefix .. 'hist:' .. id, prefix .. 'history:' .. id,\n"
    "                'metrics:' .. prefix .. 'failed:' .. id)\n"
    "    here = here + 1\n"
    "    for _, z in ipairs(zsets) do removed = removed + redis.call('ZREM', z, id) end\n"
    "  end\n"
    "end\n"
    "local next = start + #ids - here\n"
    "if #ids < count then next = 0 end\n"
    "return {next, removed}\n";

static sb_script_t sb_sweep_script; /* immutable after the first init */
static pthread_once_t sb_sweep_once = PTHREAD_ONCE_INIT;
static void sb_sweep_init(void) { sb_script_init(&sb_sweep_script, SB_SWEEP_LUA); }

/* Sweeps the window [start, start + budget) of zset key (trim: also the done / cancelled age
 * trim). *next gets where the next window starts; *removed grows by what went. */
static int sb_sweep_zset(sb_redis_t *r, const char *prefix, const char *key, long start,
                         int budget, int trim, long *next, long *removed) {
    char from[SB_FMT_INT_LEN + 1], count[SB_FMT_INT_LEN + 1], now[SB_FMT_INT_LEN + 1] = "",
         ttl[SB_FMT_INT_LEN + 1];
    sb_fmt_llz(from, start);
    sb_fmt_llz(count, budget);
    if (trim) sb_fmt_llz(now, sb_now_ms());
    sb_fmt_llz(ttl, SB_JOB_TTL);
    const char *argv[] = {key, prefix, from, count, now, ttl};
    pthread_once(&sb_sweep_once, sb_sweep_init);
    redisReply *rep = sb_redis_eval(r, &sb_sweep_script, 1, 6, argv, NULL);
    if (!rep) return SB_EREDIS;
    int ok = rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
             rep->element[0]->type == REDIS_REPLY_INTEGER &&
             rep->element[1]->type == REDIS_REPLY_INTEGER;
    if (ok && next) *next = (long)rep->element[0]->integer;
    if (ok) *removed += (long)rep->element[1]->integer;
    freeReplyObject(rep);
    return ok ? SB_OK : SB_EPROTO;
}

/* One SCAN step over the user indices of the type, each swept from its oldest id. */
static int sb_sweep_users(sb_redis_t *r, const char *prefix, sb_jobctl_sweep_t *s, int budget,
                          long *removed) {
    char pattern[SB_KEY_LEN + 8];
    snprintf(pattern, sizeof pattern, "%suser:*", prefix);
    redisReply *rep = sb_redis_cmd(r, "SCAN %s MATCH %s COUNT %d TYPE zset",
                                   s->scan[0] ? s->scan : "0", pattern, budget);
    if (!rep) return SB_EREDIS;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        return SB_EPROTO;
    }
    int rc = SB_OK;
    const redisReply *keys = rep->element[1];
    for (size_t i = 0; i < keys->elements && rc == SB_OK; i++)
        if (keys->element[i]->type == REDIS_REPLY_STRING)
            rc = sb_sweep_zset(r, prefix, keys->element[i]->str, 0, budget, 0, NULL, removed);
    if (rc == SB_OK) snprintf(s->scan, sizeof s->scan, "%s", rep->element[0]->str);
    freeReplyObject(rep);
    return rc;
}

int sb_jobctl_sweep(sb_redis_t *r, const char *queue, sb_jobctl_sweep_t *s, int budget,
                    long *removed) {
    long gone = 0;
    char prefix[SB_KEY_LEN], index[SB_KEY_LEN + 8], type[SB_TYPE_MAX + 1];
    int shard;
    if (removed) *removed = 0;
    if (sb_queue_parse(queue, type, &shard) != SB_OK || budget < 1 ||
        budget > SB_JOBCTL_SWEEP_MAX || s->index_rank < 0 ||
        !sb_key_prefix(prefix, sizeof prefix, queue))
        return SB_EINVAL;
    snprintf(index, sizeof index, "%sindex", prefix);
    long next = 0;
    int rc = sb_sweep_zset(r, prefix, index, s->index_rank, budget, 1, &next, &gone);
    if (rc == SB_OK) s->index_rank = next;
    if (rc == SB_OK) rc = sb_sweep_users(r, prefix, s, budget, &gone);
    if (removed) *removed = gone;
    return rc;
}
