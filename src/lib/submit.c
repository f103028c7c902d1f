/* Job submission script: rate limit + atomic enqueue + announcement in one round trip (see
 * include/switchboard/submit.h). The C side only names keys and arguments; every decision is
 * taken inside the script, on Redis's clock.
 *
 * A script is atomic but not rolled back: a command that fails (a key of the wrong type) stops
 * it with the earlier writes kept. So the job's writes start with LPUSH on the shared queue,
 * the one a misconfigured deployment could break; after it nothing that can fail on type
 * precedes the record.
 *
 * On Redis Cluster the job.created stream (agent:stream:job.created, one key for every type)
 * lives in another slot than the job, so the script cannot write it: the call then names the
 * record key in the audit stream's place (every key of one slot), passes no audit data, and
 * keeps the entry for sb_submit_audit_add, which the caller sends once the job is queued. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sb_lua.h" /* the scripts of scripts/lua/, embedded by the build */
#include "switchboard/clock.h"
#include "switchboard/cluster.h"
#include "switchboard/error.h"
#include "switchboard/events.h"
#include "switchboard/fmt.h"
#include "switchboard/job.h"
#include "switchboard/json.h"
#include "switchboard/jsonw.h"
#include "switchboard/metrics.h"
#include "switchboard/submit.h"

enum { SB_SUBMIT_NKEYS = 10, SB_SUBMIT_NARGS = 16 };

void sb_submit_script_init(sb_script_t *s) { sb_script_init(s, sb_lua_submit); }

/* Key and argument text of one call; argv points into it or into the caller's strings. */
typedef struct {
    char keys[SB_SUBMIT_NKEYS][SB_KEY_LEN];
    char member[SB_RATE_MEMBER_LEN];
    char limit[SB_FMT_INT_LEN + 1], window[SB_FMT_INT_LEN + 1], counter_ttl[SB_FMT_INT_LEN + 1],
        job_ttl[SB_FMT_INT_LEN + 1], created[SB_FMT_INT_LEN + 1], maxlen[SB_FMT_INT_LEN + 1];
    sb_envelope_t env;    /* the job.created audit entry */
    int audit_apart;      /* 1: the entry is not the script's to write (cluster; see above) */
    char *data;           /* its data JSON (owned) */
    char channel[SB_KEY_LEN]; /* agent:{type}:events */
    char *message;        /* the created notification published there (owned) */
    char queue[SB_QUEUE_LEN]; /* the shard's queue name (job.h): every key but the audit stream */
    const char *argv[SB_SUBMIT_NKEYS + SB_SUBMIT_NARGS];
} sb_submit_args_t;

/* Rate keys 1–3 and ARGV 1–4. Without a rate user the keys are empty and the limit is 0. */
static int sb_submit_rate_args(sb_submit_args_t *a, const sb_submit_t *q) {
    a->keys[0][0] = a->keys[1][0] = a->keys[2][0] = a->member[0] = '\0';
    int rc = q->rate_user ? sb_ratelimit_keys(a->queue, q->rate_user, q->now_ms, a->keys[0],
                                              a->keys[1], a->keys[2], a->member, q->rand)
                          : SB_OK;
    if (q->rate_user && q->limit <= 0) rc = SB_EINVAL;
    sb_fmt_llz(a->limit, q->rate_user ? q->limit : 0);
    sb_fmt_llz(a->window, (long long)q->window_s * 1000);
    sb_fmt_llz(a->counter_ttl, SB_METRICS_TTL);
    return rc;
}

/* The job.created envelope {jobId, type, userId} of events.h, into a->env / a->data. */
static int sb_submit_event(sb_submit_args_t *a, const sb_submit_t *q) {
    return sb_events_job_envelope(&a->env, &a->data, SB_EVENT_JOB_CREATED, q->type, q->job_id,
                                  q->public_key, NULL, q->rand);
}

/* The {type}:created notification every gateway relays to room user:{publicKey}:
 * {"event":"{type}:created","room":"user:{publicKey}","data":{"jobId":"…"}}. NULL: no memory. */
static char *sb_submit_created(const sb_submit_t *q) {
    char name[SB_TYPE_MAX + 16], room[SB_PUBKEY_MAX + 8];
    snprintf(name, sizeof name, "%s:created", q->type);
    snprintf(room, sizeof room, "user:%s", q->public_key);
    sb_jw_t w;
    sb_jw_init(&w);
    sb_jw_member(&w, "{\"event\":", name);
    sb_jw_member(&w, ",\"room\":", room);
    sb_jw_member(&w, ",\"data\":{\"jobId\":", q->job_id);
    sb_jw_lit(&w, "}}");
    return sb_jw_take(&w, NULL);
}

/* Job keys 4–8 and ARGV 5–15 (all empty for a rate check only). */
static int sb_submit_job_args(sb_submit_args_t *a, const sb_submit_t *q) {
    for (int i = 3; i < SB_SUBMIT_NKEYS; i++) a->keys[i][0] = '\0';
    sb_fmt_llz(a->job_ttl, SB_JOB_TTL);
    sb_fmt_llz(a->created, q->now_ms);
    sb_fmt_llz(a->maxlen, SB_EVENTS_AUDIT_MAXLEN);
    if (!q->job_id) return SB_OK;
    if (!q->public_key || !q->record_json ||
        !sb_key(a->keys[3], SB_KEY_LEN, SB_KEY_JOB, a->queue, q->job_id) ||
        !sb_key(a->keys[4], SB_KEY_LEN, SB_KEY_JOBS, a->queue, NULL) ||
        !sb_key(a->keys[5], SB_KEY_LEN, SB_KEY_USER, a->queue, q->public_key) ||
        !sb_metrics_counter_key(a->keys[6], SB_KEY_LEN, a->queue, "jobs", q->now_ms) ||
        !sb_events_key(a->keys[7], SB_KEY_LEN, SB_EVENT_JOB_CREATED) ||
        !sb_key(a->keys[8], SB_KEY_LEN, SB_KEY_INDEX, a->queue, NULL) ||
        !sb_key(a->keys[9], SB_KEY_LEN, SB_KEY_HISTORY, a->queue, q->job_id) ||
        !sb_key(a->channel, sizeof a->channel, SB_KEY_EVENTS, q->type, NULL))
        return SB_EINVAL;
    if (!(a->message = sb_submit_created(q))) return SB_ENOMEM;
    if (sb_key_style() == SB_KEYS_CLUSTER) /* a stand-in of the job's slot (unused) */
        memcpy(a->keys[7], a->keys[3], sizeof a->keys[7]);
    a->audit_apart = sb_key_style() == SB_KEYS_CLUSTER && !q->no_audit;
    if (!q->no_audit) return sb_submit_event(a, q);
    memset(&a->env, 0, sizeof a->env); /* no audit entry; the history still says when */
    a->env.event_type = "";
    sb_iso8601(sb_now_ms(), a->env.timestamp);
    return SB_OK;
}

/* Fills a for q. Returns 0 or an SB_E* code; a->data must be freed either way. */
static int sb_submit_args(sb_submit_args_t *a, const sb_submit_t *q) {
    a->data = a->message = NULL;
    a->audit_apart = 0;
    /* the job's shard is its id's; a rate check alone counts in the user's shard */
    if (!(q->job_id ? sb_queue_of_job(a->queue, q->type, q->job_id)
                    : sb_queue_of_user(a->queue, q->type, q->public_key ? q->public_key
                                                                        : q->rate_user)))
        return SB_EINVAL;
    int rc = sb_submit_rate_args(a, q);
    if (rc == SB_OK) rc = sb_submit_job_args(a, q);
    if (rc != SB_OK) return rc;
    const char *anchor = a->keys[0][0] ? a->keys[0] : a->keys[3]; /* keys unused stand here, */
    for (int i = 0; i < SB_SUBMIT_NKEYS; i++) /* as "" would name slot 0 on a cluster */
        a->argv[i] = a->keys[i][0] || sb_key_style() != SB_KEYS_CLUSTER ? a->keys[i] : anchor;
    const char *args[SB_SUBMIT_NARGS] = {
        a->limit, a->window, a->member, a->counter_ttl,
        q->job_id ? q->job_id : "", q->job_id ? q->record_json : "", a->job_ttl, a->created,
        a->maxlen, q->job_id ? a->env.event_id : "", q->job_id ? a->env.event_type : "",
        q->job_id ? a->env.timestamp : "", a->data && !a->audit_apart ? a->data : "",
        q->job_id ? a->channel : "", a->message ? a->message : "",
        q->job_id ? q->public_key : ""};
    memcpy(a->argv + SB_SUBMIT_NKEYS, args, sizeof args);
    return SB_OK;
}

/* One prepared call: its arguments, with copies of the caller's strings they point into. */
struct sb_submit_call {
    sb_submit_args_t a;
    char *record, *job_id, *public_key;
};

void sb_submit_call_free(sb_submit_call_t *c) {
    if (!c) return;
    free(c->a.data);
    free(c->a.message);
    free(c->record);
    free(c->job_id);
    free(c->public_key);
    free(c);
}

static char *sb_submit_dup(const char *s, int *ok) {
    char *d = s ? strdup(s) : NULL;
    if (s && !d) *ok = 0;
    return d;
}

int sb_submit_prepare(const sb_submit_t *q, sb_submit_call_t **out) {
    *out = NULL;
    sb_submit_call_t *c = calloc(1, sizeof *c);
    if (!c) return SB_ENOMEM;
    int ok = 1;
    sb_submit_t own = *q;
    own.record_json = c->record = sb_submit_dup(q->record_json, &ok);
    own.job_id = c->job_id = sb_submit_dup(q->job_id, &ok);
    own.public_key = c->public_key = sb_submit_dup(q->public_key, &ok);
    int rc = ok ? sb_submit_args(&c->a, &own) : SB_ENOMEM;
    if (rc != SB_OK) {
        sb_submit_call_free(c);
        return rc;
    }
    *out = c;
    return SB_OK;
}

int sb_submit_add(sb_batch_t *b, const sb_script_t *s, sb_script_mode_t mode,
                  sb_submit_call_t *const *calls, size_t n) {
    if (n == 0 || n > SB_SUBMIT_GROUP_MAX) return SB_EINVAL;
    size_t argc = n * (SB_SUBMIT_NKEYS + SB_SUBMIT_NARGS);
    const char **argv = malloc(argc * sizeof *argv);
    if (!argv) return SB_ENOMEM;
    const char **keys = argv, **args = keys + n * SB_SUBMIT_NKEYS;
    for (size_t i = 0; i < n; i++) { /* every job's keys, then every job's arguments */
        memcpy(keys + i * SB_SUBMIT_NKEYS, calls[i]->a.argv, SB_SUBMIT_NKEYS * sizeof *argv);
        memcpy(args + i * SB_SUBMIT_NARGS, calls[i]->a.argv + SB_SUBMIT_NKEYS,
               SB_SUBMIT_NARGS * sizeof *argv);
    }
    int rc = sb_batch_add_script(b, s, mode, (int)(n * SB_SUBMIT_NKEYS), (int)argc, argv, NULL);
    free(argv);
    return rc;
}

int sb_submit_call_slot(const sb_submit_call_t *c) {
    if (sb_key_style() != SB_KEYS_CLUSTER) return 0;
    const char *k = c->a.keys[0][0] ? c->a.keys[0] : c->a.keys[3];
    return sb_cluster_keyslot(k, strlen(k));
}

int sb_submit_audit_add(sb_batch_t *b, const sb_submit_call_t *c) {
    if (!c->a.audit_apart || !c->a.data) return 0;
    sb_envelope_t e = c->a.env;
    e.data = c->a.data;
    char stream[SB_KEY_LEN];
    if (!sb_events_key(stream, sizeof stream, SB_EVENT_JOB_CREATED)) return SB_EINVAL;
    int rc = sb_events_xadd_batch(b, stream, &e, SB_EVENTS_AUDIT_MAXLEN);
    return rc == SB_OK ? 1 : rc;
}

int sb_submit_result(const redisReply *rep, size_t i, size_t n, sb_rate_result_t *out) {
    memset(out, 0, sizeof *out);
    if (!rep) return SB_EREDIS;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 * n || i >= n) return SB_EPROTO;
    for (size_t k = 3 * i; k < 3 * i + 3; k++)
        if (rep->element[k]->type != REDIS_REPLY_INTEGER) return SB_EPROTO;
    out->allowed = rep->element[3 * i]->integer == 1;
    out->remaining = rep->element[3 * i + 1]->integer;
    out->retry_ms = rep->element[3 * i + 2]->integer;
    return SB_OK;
}

int sb_submit_batch(sb_batch_t *b, const sb_script_t *s, sb_script_mode_t mode,
                    const sb_submit_t *q) {
    sb_submit_call_t *c;
    int rc = sb_submit_prepare(q, &c);
    if (rc == SB_OK) rc = sb_submit_add(b, s, mode, &c, 1);
    if (rc == SB_OK && !q->rate_user && sb_submit_audit_add(b, c) < 0) rc = SB_ENOMEM;
    sb_submit_call_free(c);
    return rc;
}

int sb_submit_run(sb_redis_t *r, const sb_script_t *s, const sb_submit_t *q,
                  sb_rate_result_t *out) {
    memset(out, 0, sizeof *out);
    sb_submit_call_t *c;
    int rc = sb_submit_prepare(q, &c);
    if (rc == SB_OK) {
        redisReply *rep = sb_redis_eval(r, s, SB_SUBMIT_NKEYS, SB_SUBMIT_NKEYS + SB_SUBMIT_NARGS,
                                        c->a.argv, NULL);
        rc = sb_ratelimit_parse(rep, out);
        if (rep) freeReplyObject(rep);
        if (rc == SB_OK && out->allowed && c->a.audit_apart && c->a.data) {
            sb_envelope_t e = c->a.env;
            e.data = c->a.data;
            sb_events_audit_apart(r, SB_EVENT_JOB_CREATED, &e);
        }
    }
    sb_submit_call_free(c);
    return rc;
}
