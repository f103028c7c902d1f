/* Moving the records of publish-only agents forward (interop.h).
 *
 * One sb_advance_t per message, owned by the reply callbacks in flight (exactly one at a time):
 * GET → (record behind the message) compare-and-set script (sb_aredis_eval) → done, or GET again when the record
 * changed meanwhile. The service counts what is in flight so that its struct outlives them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/interop.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/json.h"
#include "switchboard/log.h"

/* SET the record to ARGV[2] only if it is still ARGV[1]. */
static const char sb_interop_cas_lua[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')\n"
    "return 1\n";

struct sb_interop {
    sb_aredis_t *redis;
    sb_script_t cas;         /* sb_interop_cas_lua, SHA1 computed once */
    unsigned in_flight;
    int closing;             /* freed by its owner: the last reply frees the struct */
    unsigned long long advanced;
};

typedef struct {
    sb_interop_t *owner;
    char key[SB_KEY_LEN];
    char job_id[SB_JOB_ID_LEN];
    char status[16];
    int64_t at_ms;           /* the message's time (its timestamp, or when it arrived) */
    char *result;            /* printed JSON, or NULL */
    char *error, *details;   /* or NULL */
    char *old;               /* the record text the compare-and-set expects */
    char *next;              /* ... and the one it writes */
    int tries;
} sb_advance_t;

static void sb_advance_free(sb_advance_t *a) {
    free(a->result);
    free(a->error);
    free(a->details);
    free(a->old);
    free(a->next);
    free(a);
}

/* queued < processing < done | error; anything else is final (never overwritten). */
static int sb_interop_rank(const char *status) {
    static const char *const order[] = {"queued", "processing", "done", "error"};
    static const int rank[] = {0, 1, 2, 2};
    for (size_t i = 0; status && i < sizeof order / sizeof order[0]; i++)
        if (!strcmp(status, order[i])) return rank[i];
    return 3;
}

/* The record a's message makes of rec (parsed), printed; NULL when the message is not ahead of
 * it or on ENOMEM. */
static char *sb_interop_next(const sb_advance_t *a, cJSON *rec) {
    const char *updated = sb_json_str(rec, "updatedAt");
    int64_t rec_ms;
    if (sb_interop_rank(a->status) <= sb_interop_rank(sb_json_str(rec, "status"))) return NULL;
    if (updated && sb_iso8601_parse(updated, &rec_ms) == SB_OK && a->at_ms < rec_ms) return NULL;
    char ts[SB_ISO_LEN];
    int ok = sb_json_set_str(rec, "status", a->status) == SB_OK &&
             sb_json_set_str(rec, "updatedAt", sb_iso8601(a->at_ms, ts)) == SB_OK;
    if (ok && a->result) ok = sb_json_set(rec, "result", sb_json_parse(a->result,
                                                                       strlen(a->result))) == SB_OK;
    if (ok && a->error) ok = sb_json_set_str(rec, "error", a->error) == SB_OK;
    if (ok && a->details) ok = sb_json_set_str(rec, "details", a->details) == SB_OK;
    return ok ? sb_json_print(rec) : NULL;
}

static int sb_interop_get(sb_advance_t *a);

/* 1 when the service was freed meanwhile (a freed, and the service with the last one). */
static int sb_interop_reply_done(sb_advance_t *a) {
    sb_interop_t *io = a->owner;
    io->in_flight--;
    if (!io->closing) return 0;
    sb_advance_free(a);
    if (!io->in_flight) free(io);
    return 1;
}

static void sb_interop_cas_cb(redisReply *reply, void *priv) {
    sb_advance_t *a = priv;
    if (sb_interop_reply_done(a)) return;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
        a->owner->advanced++;
        sb_debug("gateway", "job %s: record moved to %s from a status message", a->job_id,
                 a->status);
    } else if (reply && reply->type == REDIS_REPLY_INTEGER && ++a->tries < SB_INTEROP_TRIES &&
               sb_interop_get(a) == SB_OK) {
        return; /* changed meanwhile: read it again */
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        sb_warn("gateway", "job %s: record not moved to %s: %s", a->job_id, a->status, reply->str);
    }
    sb_advance_free(a);
}

/* The compare-and-set call of a (an sb_aredis_build_fn). */
static int sb_interop_cas_build(sb_batch_t *b, sb_script_mode_t mode, void *priv) {
    const sb_advance_t *a = priv;
    const char *argv[] = {a->key, a->old, a->next};
    return sb_batch_add_script(b, &a->owner->cas, mode, 1, 3, argv, NULL);
}

/* Sends the compare-and-set of the record from a->old to a->next. Returns 0 or a SB_E* code. */
static int sb_interop_cas(sb_advance_t *a) {
    int rc = sb_aredis_eval(a->owner->redis, sb_interop_cas_build, sb_interop_cas_cb, a);
    if (rc == SB_OK) a->owner->in_flight++;
    return rc;
}

static void sb_interop_get_cb(redisReply *reply, void *priv) {
    sb_advance_t *a = priv;
    if (sb_interop_reply_done(a)) return;
    free(a->old);
    free(a->next);
    a->old = a->next = NULL;
    if (reply && reply->type == REDIS_REPLY_STRING) {
        cJSON *rec = sb_json_parse(reply->str, reply->len);
        a->next = rec ? sb_interop_next(a, rec) : NULL;
        cJSON_Delete(rec);
        a->old = a->next ? strndup(reply->str, reply->len) : NULL;
    }
    if (!a->next || !a->old || sb_interop_cas(a) != SB_OK) sb_advance_free(a);
}

static int sb_interop_get(sb_advance_t *a) {
    const char *argv[] = {"GET", a->key};
    sb_batch_t *b = sb_batch_create();
    int rc = b ? sb_batch_addargv(b, 2, argv, NULL) : SB_ENOMEM;
    if (rc == SB_OK) rc = sb_aredis_send(a->owner->redis, b, sb_interop_get_cb, a);
    sb_batch_free(b);
    if (rc == SB_OK) a->owner->in_flight++;
    return rc;
}

/* A copy of s, or NULL for NULL; *ok is cleared on ENOMEM. */
static char *sb_interop_dup(const char *s, int *ok) {
    char *d = s ? strdup(s) : NULL;
    if (s && !d) *ok = 0;
    return d;
}

int sb_interop_advance(sb_interop_t *io, const char *type, const sb_status_t *st) {
    if (!sb_aredis_up(io->redis)) return SB_EREDIS;
    if (!sb_job_id_valid(st->job_id)) return SB_EINVAL;
    sb_advance_t *a = calloc(1, sizeof *a);
    if (!a) return SB_ENOMEM;
    a->owner = io;
    char queue[SB_QUEUE_LEN]; /* the shard the id names (job.h) */
    if (!sb_queue_of_job(queue, type, st->job_id) ||
        !sb_key(a->key, sizeof a->key, SB_KEY_JOB, queue, st->job_id)) {
        sb_advance_free(a);
        return SB_EINVAL;
    }
    snprintf(a->job_id, sizeof a->job_id, "%s", st->job_id);
    snprintf(a->status, sizeof a->status, "%s", st->status);
    if (!st->timestamp || sb_iso8601_parse(st->timestamp, &a->at_ms) != SB_OK)
        a->at_ms = sb_now_ms();
    int ok = 1;
    a->result = st->result ? sb_json_print(st->result) : NULL;
    if (st->result && !a->result) ok = 0;
    a->error = sb_interop_dup(st->error, &ok);
    a->details = sb_interop_dup(st->details, &ok);
    int rc = ok ? sb_interop_get(a) : SB_ENOMEM;
    if (rc != SB_OK) sb_advance_free(a);
    return rc;
}

sb_interop_t *sb_interop_create(sb_aredis_t *redis) {
    sb_interop_t *io = calloc(1, sizeof *io);
    if (!io) return NULL;
    io->redis = redis;
    sb_script_init(&io->cas, sb_interop_cas_lua);
    return io;
}

void sb_interop_free(sb_interop_t *io) {
    if (!io) return;
    io->closing = 1;
    if (!io->in_flight) free(io);
}

unsigned long long sb_interop_advanced(const sb_interop_t *io) { return io->advanced; }
