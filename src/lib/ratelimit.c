/* Sliding-window rate limit: key names, window members and the script's reply (see
 * include/switchboard/ratelimit.h; the Lua is in submit.c, which checks and enqueues at once). */
#include <stdio.h>
#include <string.h>
#include "switchboard/error.h"
#include "switchboard/job.h"
#include "switchboard/metrics.h"
#include "switchboard/random.h"
#include "switchboard/ratelimit.h"

int sb_ratelimit_keys(const char *type, const char *user, int64_t now_ms, char *kwin,
                      char *khits, char *kblocked, char member[SB_RATE_MEMBER_LEN],
                      sb_rand_t *pool) {
    if (!user || !*user || strlen(user) > SB_RATE_USER_MAX ||
        !sb_metrics_key(kwin, SB_KEY_LEN, type, "rate", user) ||
        !sb_metrics_counter_key(khits, SB_KEY_LEN, type, "rate_hits", now_ms) ||
        !sb_metrics_counter_key(kblocked, SB_KEY_LEN, type, "rate_blocked", now_ms))
        return SB_EINVAL;
    return sb_random_hex(pool, member, (SB_RATE_MEMBER_LEN - 1) / 2);
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
