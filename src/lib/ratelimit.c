/* Sliding-window rate limit in one Lua script (see include/switchboard/ratelimit.h).
 *
 * Members of the window set must be unique even for two requests in the same microsecond,
 * so each is "{server µs}-{random}" with the random part drawn by the caller. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "switchboard/error.h"
#include "switchboard/metrics.h"
#include "switchboard/ratelimit.h"

/* KEYS: 1 window set, 2 rate_hits counter, 3 rate_blocked counter.
 * ARGV: 1 limit, 2 window ms, 3 member suffix, 4 counter TTL.
 * Returns {allowed 0|1, remaining, retry_ms}. */
static const char SB_RATE_LUA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local limit = tonumber(ARGV[1])\n"
    "local win = tonumber(ARGV[2])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win)\n"
    "local n = redis.call('ZCARD', KEYS[1])\n"
    "redis.call('INCR', KEYS[2])\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[4])\n"
    "if n < limit then\n"
    "  redis.call('ZADD', KEYS[1], now, t[1] .. t[2] .. '-' .. ARGV[3])\n"
    "  redis.call('PEXPIRE', KEYS[1], win)\n"
    "  return {1, limit - n - 1, 0}\n"
    "end\n"
    "redis.call('INCR', KEYS[3])\n"
    "redis.call('EXPIRE', KEYS[3], ARGV[4])\n"
    "local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')\n"
    "local retry = win\n"
    "if oldest[2] then retry = tonumber(oldest[2]) + win - now end\n"
    "if retry < 1 then retry = 1 end\n"
    "return {0, 0, retry}\n";

int sb_ratelimit_batch(sb_batch_t *b, const char *type, const char *user, int limit,
                       int window_s, int64_t now_ms) {
    char kwin[512], khits[256], kblocked[256], member[17];
    unsigned char rnd[8];
    if (!user || !*user || strlen(user) > 128 ||
        !sb_metrics_key(kwin, sizeof kwin, type, "rate", user) ||
        !sb_metrics_counter_key(khits, sizeof khits, type, "rate_hits", now_ms) ||
        !sb_metrics_counter_key(kblocked, sizeof kblocked, type, "rate_blocked", now_ms))
        return SB_EINVAL;
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) return SB_ERR;
    for (int i = 0; i < 8; i++) snprintf(member + 2 * i, 3, "%02x", rnd[i]);
    return sb_batch_add(b, "EVAL %s 3 %s %s %s %d %lld %s %d", SB_RATE_LUA, kwin, khits,
                        kblocked, limit, (long long)window_s * 1000, member, SB_METRICS_TTL);
}

int sb_ratelimit_parse(const redisReply *r, sb_rate_result_t *out) {
    memset(out, 0, sizeof *out);
    if (!r) return SB_EREDIS;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) return SB_EPROTO;
    for (size_t i = 0; i < 3; i++)
        if (r->element[i]->type != REDIS_REPLY_INTEGER) return SB_EPROTO;
    out->allowed = r->element[0]->integer == 1;
    out->remaining = r->element[1]->integer;
    out->retry_ms = r->element[2]->integer;
    return SB_OK;
}
