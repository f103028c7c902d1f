/* Job ids, key names, job records and status messages (SPEC §2). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/clock.h"
#include "switchboard/cluster.h"
#include "switchboard/error.h"
#include "switchboard/job.h"
#include "switchboard/jsonw.h"
#include "switchboard/json.h"
#include "switchboard/random.h"

int sb_job_id_new(char out[SB_JOB_ID_LEN], sb_rand_t *pool) {
    int n = snprintf(out, SB_JOB_ID_LEN, "%lld-", (long long)sb_now_ms());
    if (n < 0 || n + 9 > SB_JOB_ID_LEN) return SB_ERR;
    return sb_random_hex(pool, out + n, 4);
}

/* Counts the leading characters of s accepted by ok(); stops at max + 1. */
static size_t sb_span(const char *s, int (*ok)(int), size_t max) {
    size_t n = 0;
    while (s[n] && ok((unsigned char)s[n]) && n <= max) n++;
    return n;
}

static int sb_is_digit(int c) { return c >= '0' && c <= '9'; }
static int sb_is_lower_alnum(int c) { return sb_is_digit(c) || (c >= 'a' && c <= 'z'); }
static int sb_is_type_char(int c) { return sb_is_lower_alnum(c) || c == '_' || c == '-'; }

int sb_job_id_valid(const char *id) {
    if (!id) return 0;
    size_t a = sb_span(id, sb_is_digit, 16);
    if (a < 1 || a > 16 || id[a] != '-') return 0;
    const char *rest = id + a + 1;
    size_t b = sb_span(rest, sb_is_lower_alnum, 32);
    return b >= 1 && b <= 32 && rest[b] == '\0';
}

int sb_job_type_valid(const char *type) {
    if (!type || !(type[0] >= 'a' && type[0] <= 'z')) return 0;
    size_t n = sb_span(type, sb_is_type_char, SB_TYPE_MAX);
    return n <= SB_TYPE_MAX && type[n] == '\0';
}

int sb_public_key_valid(const char *pk) {
    if (!pk || !*pk) return 0;
    size_t n = 0;
    for (; pk[n]; n++)
        if (pk[n] <= ' ' || pk[n] > '~' || n >= SB_PUBKEY_MAX) return 0;
    return 1;
}

/* ---- queue shards ------------------------------------------------------------------------ */

static int sb_queue_shards_now = 1; /* set once at start (job.h) */

void sb_queue_shards_set(int n) {
    sb_queue_shards_now = n < 1 ? 1 : n > SB_SHARDS_MAX ? SB_SHARDS_MAX : n;
}
int sb_queue_shards(void) { return sb_queue_shards_now; }

char *sb_queue_name(char buf[SB_QUEUE_LEN], const char *type, int s) {
    buf[0] = '\0';
    if (!sb_job_type_valid(type) || s < 0 || s >= SB_SHARDS_MAX) return NULL;
    if (s == 0) snprintf(buf, SB_QUEUE_LEN, "%s", type);
    else snprintf(buf, SB_QUEUE_LEN, "%s.%d", type, s);
    return buf;
}

/* The value of 1..3 decimal digits without a leading zero (s, up to its end), or -1. */
static int sb_shard_digits(const char *s) {
    size_t n = sb_span(s, sb_is_digit, 3);
    if (n < 1 || n > 3 || s[n] || (s[0] == '0' && n > 1)) return -1;
    return atoi(s);
}

int sb_queue_parse(const char *queue, char type[SB_TYPE_MAX + 1], int *shard) {
    const char *dot = queue ? strchr(queue, '.') : NULL;
    size_t tlen = queue ? (dot ? (size_t)(dot - queue) : strlen(queue)) : 0;
    int s = dot ? sb_shard_digits(dot + 1) : 0;
    type[0] = '\0';
    if (!queue || tlen > SB_TYPE_MAX || s < 0 || s >= SB_SHARDS_MAX || (dot && s == 0))
        return SB_EINVAL;
    memcpy(type, queue, tlen);
    type[tlen] = '\0';
    if (!sb_job_type_valid(type)) {
        type[0] = '\0';
        return SB_EINVAL;
    }
    *shard = s;
    return SB_OK;
}

int sb_queue_shard_of_user(const char *public_key, int n) {
    if (n <= 1 || !public_key) return 0;
    return (int)(sb_cluster_crc16(public_key, strlen(public_key)) % (unsigned)n);
}

/* The type of a type or queue name into type; NULL when it is neither. */
static const char *sb_queue_base(const char *queue, char type[SB_TYPE_MAX + 1]) {
    int s;
    return sb_queue_parse(queue, type, &s) == SB_OK ? type : NULL;
}

char *sb_queue_of_user(char buf[SB_QUEUE_LEN], const char *type, const char *public_key) {
    char base[SB_TYPE_MAX + 1];
    buf[0] = '\0';
    if (!sb_queue_base(type, base)) return NULL;
    return sb_queue_name(buf, base, sb_queue_shard_of_user(public_key, sb_queue_shards_now));
}

int sb_job_id_shard(const char *id, int n) {
    if (!sb_job_id_valid(id)) return -1;
    const char *rest = strchr(id, '-') + 1, *s = strrchr(rest, 's');
    int shard = s ? sb_shard_digits(s + 1) : 0;
    if (shard < 0) shard = 0; /* an 's' not followed by a shard number: not a suffix */
    return shard < n ? shard : -1;
}

char *sb_queue_of_job(char buf[SB_QUEUE_LEN], const char *type, const char *id) {
    char base[SB_TYPE_MAX + 1];
    int s = sb_job_id_shard(id, sb_queue_shards_now);
    buf[0] = '\0';
    if (!sb_queue_base(type, base) || s < 0) return NULL;
    return sb_queue_name(buf, base, s);
}

int sb_job_id_new_in(char out[SB_JOB_ID_LEN], sb_rand_t *pool, int s) {
    int rc = sb_job_id_new(out, pool);
    if (rc == SB_OK && s > 0) {
        size_t n = strlen(out);
        snprintf(out + n, SB_JOB_ID_LEN - n, "s%d", s);
    }
    return rc;
}

int sb_job_id_new_for(char out[SB_JOB_ID_LEN], sb_rand_t *pool, const char *public_key) {
    return sb_job_id_new_in(out, pool, sb_queue_shard_of_user(public_key, sb_queue_shards_now));
}

/* The key table: every key is agent:{type}:{name}[:{arg}]. */
static const struct {
    const char *name;
    int has_arg;
} sb_key_names[] = {
    [SB_KEY_JOBS] = {"jobs", 0},
    [SB_KEY_JOB] = {"job", 1},
    [SB_KEY_PROCESSING] = {"processing", 1},
    [SB_KEY_DEAD] = {"dead", 0},
    [SB_KEY_USER] = {"user", 1},
    [SB_KEY_STATUS] = {"status", 0},
    [SB_KEY_EVENTS] = {"events", 0},
    [SB_KEY_INDEX] = {"index", 0},
    [SB_KEY_DONE] = {"done", 0},
    [SB_KEY_CANCELLED] = {"cancelled", 0},
    [SB_KEY_HISTORY] = {"hist", 1},
    [SB_KEY_PAUSED] = {"paused", 0},
    [SB_KEY_CANCEL] = {"cancel", 1},
    [SB_KEY_LEASES] = {"leases", 0},
};

static sb_key_style_t sb_key_style_now = SB_KEYS_PLAIN; /* set once at start (job.h) */

void sb_key_style_set(sb_key_style_t style) { sb_key_style_now = style; }
sb_key_style_t sb_key_style(void) { return sb_key_style_now; }

/* The prefix in a style: channels are always plain. */
static int sb_key_prefix_in(char *buf, size_t len, const char *type, sb_key_style_t style) {
    return style == SB_KEYS_CLUSTER ? snprintf(buf, len, "agent:{%s}:", type)
                                    : snprintf(buf, len, "agent:%s:", type);
}

char *sb_key_prefix(char *buf, size_t len, const char *type) {
    int n = sb_key_prefix_in(buf, len, type, sb_key_style_now);
    if (n < 0 || (size_t)n >= len) {
        if (len) buf[0] = '\0';
        return NULL;
    }
    return buf;
}

char *sb_key(char *buf, size_t len, sb_key_kind_t kind, const char *type, const char *arg) {
    int has_arg = sb_key_names[kind].has_arg;
    int channel = kind == SB_KEY_STATUS || kind == SB_KEY_EVENTS;
    char base[SB_TYPE_MAX + 1];
    if (channel && sb_queue_base(type, base)) type = base; /* channels name the type */
    int n = sb_key_prefix_in(buf, len, type, channel ? SB_KEYS_PLAIN : sb_key_style_now);
    if (n >= 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, "%s%s%s", sb_key_names[kind].name,
                      has_arg ? ":" : "", has_arg && arg ? arg : "");
    if (n < 0 || (size_t)n >= len) {
        if (len) buf[0] = '\0';
        return NULL;
    }
    return buf;
}

/* ---- records ----------------------------------------------------------------------------- */

char *sb_job_record_text(const char *type, const char *job_id, const sb_user_t *user,
                         const cJSON *payload, int64_t now_ms) {
    char ts[SB_ISO_LEN];
    sb_iso8601(now_ms, ts);
    sb_jw_t w;
    sb_jw_init(&w);
    sb_jw_member(&w, "{\"jobId\":", job_id);
    sb_jw_member(&w, ",\"type\":", type);
    sb_jw_member(&w, ",\"status\":\"queued\",\"user\":{\"publicKey\":", user->public_key);
    if (user->id) sb_jw_member(&w, ",\"id\":", user->id);
    sb_jw_lit(&w, "},\"payload\":");
    if (payload) sb_jw_value(&w, payload);
    else sb_jw_lit(&w, "{}");
    sb_jw_member(&w, ",\"attempts\":0,\"createdAt\":", ts);
    sb_jw_member(&w, ",\"updatedAt\":", ts);
    sb_jw_lit(&w, "}");
    return sb_jw_take(&w, NULL);
}

/* A count read from JSON as an int: negative → 0, beyond INT_MAX (or NaN) → INT_MAX.
 * (Converting an out-of-range double to int is undefined behaviour.) */
static int sb_clamp_count(double v) {
    if (!(v < (double)INT_MAX)) return INT_MAX;
    return v < 0 ? 0 : (int)v;
}

/* Re-reads the views of job from its root. */
static void sb_job_refresh(sb_job_t *job) {
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(job->root, "user");
    double attempts = 0;
    job->job_id = sb_json_str(job->root, "jobId");
    job->type = sb_json_str(job->root, "type");
    job->status = sb_json_str(job->root, "status");
    job->public_key = sb_json_str(user, "publicKey");
    job->payload = cJSON_GetObjectItemCaseSensitive(job->root, "payload");
    job->attempts = sb_json_num(job->root, "attempts", &attempts) == SB_OK
                        ? sb_clamp_count(attempts) : 0;
}

int sb_job_parse(const char *json, size_t len, sb_job_t *job, char *err, size_t errlen) {
    memset(job, 0, sizeof *job);
    cJSON *root = sb_json_parse(json, len);
    const char *why = NULL;
    if (!root) why = "record is not valid JSON";
    else if (!cJSON_IsObject(root)) why = "record is not a JSON object";
    if (!why) {
        job->root = root;
        sb_job_refresh(job);
        if (!job->job_id) why = "record has no jobId";
        else if (!job->public_key) why = "record has no user.publicKey";
        else if (!job->payload) why = "record has no payload";
    }
    if (why) {
        snprintf(err, errlen, "%s", why);
        cJSON_Delete(root);
        memset(job, 0, sizeof *job);
        return SB_EINVAL;
    }
    return SB_OK;
}

void sb_job_close(sb_job_t *job) {
    if (!job) return;
    cJSON_Delete(job->root);
    memset(job, 0, sizeof *job);
}

int sb_job_set_status(sb_job_t *job, const char *status, int64_t now_ms) {
    char ts[SB_ISO_LEN];
    int rc = sb_json_set_str(job->root, "status", status);
    if (rc == SB_OK) rc = sb_json_set_str(job->root, "updatedAt", sb_iso8601(now_ms, ts));
    sb_job_refresh(job);
    return rc;
}

int sb_job_set_attempts(sb_job_t *job, int attempts) {
    int rc = sb_json_set_num(job->root, "attempts", attempts);
    sb_job_refresh(job);
    return rc;
}

/* ---- status messages --------------------------------------------------------------------- */

int sb_status_valid(const char *s) {
    return s && (!strcmp(s, "processing") || !strcmp(s, "done") || !strcmp(s, "error") ||
                 !strcmp(s, "cancelled"));
}

char *sb_status_build(const sb_status_t *st) {
    char ts[SB_ISO_LEN];
    sb_jw_t w;
    sb_jw_init(&w);
    sb_jw_member(&w, "{\"jobId\":", st->job_id);
    sb_jw_member(&w, ",\"status\":", st->status);
    sb_jw_member(&w, ",\"userId\":", st->user_id);
    sb_jw_member(&w, ",\"timestamp\":", st->timestamp ? st->timestamp : sb_iso8601(sb_now_ms(), ts));
    if (st->result) {
        sb_jw_lit(&w, ",\"result\":");
        sb_jw_value(&w, st->result);
    }
    if (st->error) sb_jw_member(&w, ",\"error\":", st->error);
    if (st->details) sb_jw_member(&w, ",\"details\":", st->details);
    if (st->attempts >= 0) {
        sb_jw_lit(&w, ",\"attempts\":");
        sb_jw_int(&w, st->attempts);
    }
    sb_jw_lit(&w, ",\"recorded\":true}");
    return sb_jw_take(&w, NULL);
}

int sb_status_parse(const char *buf, size_t len, cJSON **root_out, sb_status_t *st, char *err,
                    size_t errlen) {
    memset(st, 0, sizeof *st);
    st->attempts = -1;
    *root_out = NULL;
    cJSON *root = sb_json_parse(buf, len);
    const char *why = NULL;
    if (!root || !cJSON_IsObject(root)) why = "status message is not a JSON object";
    else {
        st->job_id = sb_json_str(root, "jobId");
        st->status = sb_json_str(root, "status");
        st->user_id = sb_json_str(root, "userId");
        st->timestamp = sb_json_str(root, "timestamp");
        st->error = sb_json_str(root, "error");
        st->details = sb_json_str(root, "details");
        st->result = cJSON_GetObjectItemCaseSensitive(root, "result");
        double a;
        if (sb_json_num(root, "attempts", &a) == SB_OK) st->attempts = sb_clamp_count(a);
        if (!st->job_id) why = "status message has no jobId string";
        else if (!sb_status_valid(st->status)) why = "status must be processing, done, error or cancelled";
        else if (!st->user_id || !*st->user_id) why = "status message has no userId string";
    }
    if (why) {
        snprintf(err, errlen, "%s", why);
        cJSON_Delete(root);
        memset(st, 0, sizeof *st);
        return SB_EINVAL;
    }
    *root_out = root;
    return SB_OK;
}
