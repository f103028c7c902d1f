/* Per-user sliding-window rate limit (SPEC §4), checked and recorded in one Lua script.
 *
 * The window of a user is the sorted set metrics:agent:{type}:rate:{userId} whose scores are
 * request times (ms, Redis server clock, so every gateway shares one clock). The script drops
 * entries older than the window, counts the rest, and records the request only if the count
 * is under the limit — atomically, so N concurrent requests admit exactly `limit`. It also
 * bumps the day's rate_hits counter (every check) and rate_blocked (refusals), and the set
 * expires with its window. The call is appended to a batch, so the blocking client and the
 * gateway's async client send the same bytes. */
#ifndef SB_RATELIMIT_H
#define SB_RATELIMIT_H

#include <stdint.h>
#include "switchboard/redis.h"

typedef struct {
    int allowed;         /* 1: recorded and allowed; 0: refused */
    long long remaining; /* requests left in the window after this one */
    long long retry_ms;  /* when refused: ms until the oldest request leaves the window */
} sb_rate_result_t;

/* Appends the check for user (≤ 128 chars) to b: `limit` requests per `window_s` seconds.
 * now_ms only picks the day of the counters. Returns 0, SB_EINVAL (bad key), SB_ENOMEM. */
int sb_ratelimit_batch(sb_batch_t *b, const char *type, const char *user, int limit,
                       int window_s, int64_t now_ms);
/* Reads the script's reply. Returns 0, or SB_EREDIS (NULL reply) / SB_EPROTO. */
int sb_ratelimit_parse(const redisReply *reply, sb_rate_result_t *out);

#endif
