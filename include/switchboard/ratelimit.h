/* Per-user sliding-window rate limit (SPEC §4): keys and the script's answer.
 *
 * The window of a user is the sorted set metrics:agent:{type}:rate:{userId} whose scores are
 * request times (ms, Redis server clock, so every gateway shares one clock). The check runs
 * inside the submission script (submit.h), which drops entries older than the window, counts
 * the rest, and records the request only if the count is under the limit — atomically, so N
 * concurrent requests admit exactly `limit`. It also bumps the day's rate_hits counter (every
 * check) and rate_blocked (refusals); the set expires with its window. Members of the set are
 * "{server s}{server µs}-{16 hex}" so two requests in one microsecond stay distinct. */
#ifndef SB_RATELIMIT_H
#define SB_RATELIMIT_H

#include <stdint.h>
#include "switchboard/random.h"
#include "switchboard/redis.h"

#define SB_RATE_USER_MAX 128
#define SB_RATE_MEMBER_LEN 17 /* 16 hex digits and the NUL */

typedef struct {
    int allowed;         /* 1: recorded and allowed; 0: refused */
    long long remaining; /* requests left in the window after this one (-1: no limit) */
    long long retry_ms;  /* when refused: ms until the oldest request leaves the window */
} sb_rate_result_t;

/* The keys of one check: window set, the day's rate_hits and rate_blocked counters (each
 * buffer SB_KEY_LEN bytes), and a fresh random member suffix (from pool, random.h; NULL:
 * getrandom). now_ms picks the day. Returns 0, SB_EINVAL (empty user, user over
 * SB_RATE_USER_MAX, key too long), SB_ERR (no random). */
int sb_ratelimit_keys(const char *type, const char *user, int64_t now_ms, char *kwin,
                      char *khits, char *kblocked, char member[SB_RATE_MEMBER_LEN],
                      sb_rand_t *pool);
/* Reads the script's reply {allowed, remaining, retry_ms}. Returns 0, or SB_EREDIS (NULL
 * reply) / SB_EPROTO (an error or another shape). */
int sb_ratelimit_parse(const redisReply *reply, sb_rate_result_t *out);

#endif
