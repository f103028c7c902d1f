/* The job state machine (SPEC §2, agent loop steps 2-6): a taken job's record is read and
 * parsed, then attempts run until one succeeds (done), the last fails or the handler gives up
 * for good (error: dead-lettered), or the agent shuts down (requeue: back on the queue). Each
 * attempt first writes `processing` (without waiting for the reply); each end is one guarded
 * finish (sb__conn_finish). Records that cannot be run are dead-lettered or dropped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agent_int.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/json.h"
#include "switchboard/log.h"
#include "switchboard/utf8.h"

/* Retry wait before attempt+1: backoff × attempt, capped, plus up to 25 % jitter. */
static int sb_retry_delay_ms(sb__worker_t *w, int attempt) {
    const sb_agent_t *a = w->conn.agent;
    long long d = (long long)a->o.retry_backoff_ms * attempt;
    if (d > a->o.retry_backoff_max_ms) d = a->o.retry_backoff_max_ms;
    long long jitter = d / 4 > 0 ? rand_r(&w->seed) % (d / 4 + 1) : 0;
    return (int)(d + jitter);
}

typedef struct {
    sb__worker_t *w;
    const char *id;
    sb_job_t job;
    int64_t started_ms;  /* monotonic start of the current attempt */
} sb_run_t;

/* Writes the record with its new status, publishes a status message and notes it in the
 * job's history, in one script guarded by our processing list (an operator may have cancelled
 * or deleted the job: nothing is then written), through the group commit (agent_commit.c).
 * With wait = 0 the reply is dropped unread, so the handler starts without waiting a round
 * trip (the finish follows it in the same queue, so it cannot overtake it).
 * Returns 0, SB_ENOTFOUND (wait = 1: the job is not ours any more), or an SB_E* error. */
static int sb_run_update(sb_run_t *r, const char *status, const char *msg_status,
                         const char *details, int wait) {
    sb_agent_t *a = r->w->conn.agent;
    char key[SB_KEY_LEN], hist[SB_KEY_LEN], ttl[SB_FMT_INT_LEN + 1], ts[SB_ISO_LEN];
    int64_t now = sb_now_ms();
    sb_job_set_status(&r->job, status, now);
    if (details) sb_json_set_str(r->job.root, "details", details);
    char *rec = sb_json_print(r->job.root);
    sb_status_t st = {.job_id = r->id, .status = msg_status, .user_id = r->job.public_key,
                      .details = details, .attempts = r->job.attempts};
    char *msg = sb_status_build(&st);
    int rc = rec && msg ? SB_OK : SB_ENOMEM;
    sb_fmt_llz(ttl, SB_JOB_TTL);
    const sb__shard_t *sh = r->w->conn.shard;
    const char *argv[SB__UPD_ARGC] = {
        [SB__UPD_K_PROC] = sh->k_proc,
        [SB__UPD_K_RECORD] = sb_key(key, sizeof key, SB_KEY_JOB, sh->queue, r->id),
        [SB__UPD_K_HISTORY] = sb_key(hist, sizeof hist, SB_KEY_HISTORY, sh->queue, r->id),
        [SB__UPD_A_ID] = r->id, [SB__UPD_A_RECORD] = rec, [SB__UPD_A_TTL] = ttl,
        [SB__UPD_A_CHANNEL] = a->k_status, [SB__UPD_A_MESSAGE] = msg,
        [SB__UPD_A_STATUS] = wait ? "retrying" : status, [SB__UPD_A_BY] = a->id,
        [SB__UPD_A_TS] = sb_iso8601(now, ts), [SB__UPD_A_DETAIL] = details ? details : ""};
    if (!rc) rc = argv[SB__UPD_K_RECORD] && argv[SB__UPD_K_HISTORY] ? SB_OK : SB_EINVAL;
    redisReply *reply = NULL;
    if (!rc) reply = sb__commit_call(r->w->conn.commit, sh, SB__CALL_UPDATE, argv, wait, &rc);
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) rc = SB_ENOTFOUND;
    if (reply) freeReplyObject(reply);
    free(rec);
    free(msg);
    return rc;
}

/* 1 (logged) when the job itself was cancelled or deleted by an operator, not the agent:
 * the run just stops (it is no longer in our list: nothing is written back). */
static int sb_run_withdrawn(sb_run_t *r) {
    sb_agent_t *a = r->w->conn.agent;
    if (!atomic_load(&r->w->cancel) || atomic_load(&a->cancel)) return 0;
    sb_info("agent", "job %s cancelled or deleted by an operator: handler stopped user=%s",
            r->id, r->job.public_key);
    sb__stat_add(a, &a->stats.withdrawn, 1);
    return 1;
}

/* Puts the job back at the consuming end of the queue (shutdown before it could finish). */
static void sb_run_requeue(sb_run_t *r) {
    sb_job_set_status(&r->job, "queued", sb_now_ms());
    char *rec = sb_json_print(r->job.root);
    sb__finish_t f = {.mode = SB__FINISH_REQUEUE, .record = rec};
    int rc = sb__conn_finish(&r->w->conn, r->id, &f);
    if (rc == 1) {
        sb_info("agent", "job %s put back on the queue (shutdown) user=%s", r->id,
                r->job.public_key);
        sb__stat_add(r->w->conn.agent, &r->w->conn.agent->stats.requeued, 1);
    } else if (rc == SB_ECANCELED) {
        sb_warn("agent", "job %s left in the processing list (redis unreachable): it will be "
                "recovered once this agent's job lease lapses", r->id);
    }
    free(rec);
}

static void sb_run_done(sb_run_t *r, cJSON *result) {
    sb_agent_t *a = r->w->conn.agent;
    int64_t ms = sb_mono_ms() - r->started_ms;
    sb_job_set_status(&r->job, "done", sb_now_ms());
    sb_json_set(r->job.root, "result", result ? result : cJSON_CreateNull());
    cJSON_DeleteItemFromObjectCaseSensitive(r->job.root, "error");
    char *rec = sb_json_print(r->job.root);
    sb_status_t st = {.job_id = r->id, .status = "done", .user_id = r->job.public_key,
                      .result = cJSON_GetObjectItemCaseSensitive(r->job.root, "result"),
                      .attempts = r->job.attempts};
    char *msg = sb_status_build(&st);
    sb__finish_t f = {.mode = SB__FINISH_DONE, .record = rec, .message = msg, .exec_ms = ms,
                     .user = r->job.public_key, .attempts = r->job.attempts};
    int rc = rec && msg ? sb__conn_finish(&r->w->conn, r->id, &f) : SB_ENOMEM;
    if (rc == 1) {
        sb_info("agent", "job %s done in %lld ms (attempt %d) user=%s", r->id, (long long)ms,
                r->job.attempts, r->job.public_key);
        sb__stat_add(a, &a->stats.done, 1);
        sb__stat_duration(a, 0, ms / 1000.0);
    } else if (rc == 0) {
        sb_warn("agent", "job %s finished but was no longer ours (recovered elsewhere)", r->id);
    }
    free(rec);
    free(msg);
}

static void sb_run_error(sb_run_t *r, const char *error, const char *details) {
    sb_agent_t *a = r->w->conn.agent;
    int64_t now = sb_now_ms();
    int64_t ms = r->started_ms ? sb_mono_ms() - r->started_ms : -1; /* -1: no attempt ran */
    sb_job_set_status(&r->job, "error", now);
    sb_json_set_str(r->job.root, "error", error);
    if (details) sb_json_set_str(r->job.root, "details", details);
    char *rec = sb_json_print(r->job.root);
    sb_status_t st = {.job_id = r->id, .status = "error", .user_id = r->job.public_key,
                      .error = error, .details = details, .attempts = r->job.attempts};
    char *msg = sb_status_build(&st);
    char *failure = NULL;
    cJSON *fo = cJSON_CreateObject();
    char ts[SB_ISO_LEN];
    if (fo) {
        cJSON_AddStringToObject(fo, "jobId", r->id);
        cJSON_AddStringToObject(fo, "error", error);
        if (details) cJSON_AddStringToObject(fo, "details", details);
        cJSON_AddItemToObject(fo, "payload", cJSON_Duplicate(r->job.payload, 1));
        cJSON_AddNumberToObject(fo, "attempts", r->job.attempts);
        cJSON_AddStringToObject(fo, "failedAt", sb_iso8601(now, ts));
        failure = sb_json_print(fo);
        cJSON_Delete(fo);
    }
    sb__finish_t f = {.mode = SB__FINISH_ERROR, .record = rec, .message = msg, .failure = failure,
                     .user = r->job.public_key, .attempts = r->job.attempts, .error = error};
    int rc = rec && msg && failure ? sb__conn_finish(&r->w->conn, r->id, &f) : SB_ENOMEM;
    if (rc == 1) {
        sb_warn("agent", "job %s failed in %lld ms after %d attempt(s): %s user=%s", r->id,
                (long long)(ms < 0 ? 0 : ms), r->job.attempts, error, r->job.public_key);
        sb__stat_add(a, &a->stats.failed, 1);
        if (ms >= 0) sb__stat_duration(a, 1, ms / 1000.0);
    }
    free(rec);
    free(msg);
    free(failure);
}

/* A record that cannot be run: dead-letter the id without touching the record. The texts
 * stored are repaired UTF-8 (anyone can push any bytes as an id). */
static void sb_run_bad_record(sb__worker_t *w, const char *id, const char *reason) {
    sb_agent_t *a = w->conn.agent;
    char ts[SB_ISO_LEN], *failure = NULL, shown[SB_JOB_ID_LEN * 3], why[256];
    sb_utf8_sanitize(shown, sizeof shown, id);
    snprintf(why, sizeof why, "%s", reason);
    sb_utf8_sanitize_buf(why, sizeof why);
    cJSON *fo = cJSON_CreateObject();
    if (fo) {
        cJSON_AddStringToObject(fo, "jobId", shown);
        cJSON_AddStringToObject(fo, "error", why);
        cJSON_AddStringToObject(fo, "failedAt", sb_iso8601(sb_now_ms(), ts));
        failure = sb_json_print(fo);
        cJSON_Delete(fo);
    }
    sb__finish_t f = {.mode = SB__FINISH_ERROR, .failure = failure ? failure : "{}", .error = why};
    if (sb__conn_finish(&w->conn, id, &f) == 1)
        sb_error("agent", "job %s: %s; moved to %s", id, why, w->conn.shard->k_dead);
    sb__stat_add(a, &a->stats.bad_records, 1);
    free(failure);
}

/* Nothing invalid leaves the agent: a result that is not valid UTF-8 fails the attempt (it
 * would be stored, then break the WebSocket text frames that carry it), and error texts
 * (stderr of an --exec program...) are repaired, each bad byte becoming U+FFFD. */
static sb_handler_rc_t sb_run_check_output(sb_handler_rc_t hrc, sb_handler_out_t *out) {
    if (hrc == SB_HANDLER_OK && !sb_utf8_json_valid(out->result)) {
        cJSON_Delete(out->result);
        out->result = NULL;
        snprintf(out->error, sizeof out->error, "handler output is not valid UTF-8");
        out->details[0] = '\0';
        return SB_HANDLER_RETRY;
    }
    sb_utf8_sanitize_buf(out->error, sizeof out->error);
    sb_utf8_sanitize_buf(out->details, sizeof out->details);
    return hrc;
}

/* Runs attempts until done, final error, or cancel. */
static void sb_run_attempts(sb_run_t *r) {
    sb_agent_t *a = r->w->conn.agent;
    char details[1200];
    if (r->job.attempts >= a->o.max_attempts) {
        snprintf(details, sizeof details, "%d attempts already made (agents running it stopped "
                 "before finishing)", r->job.attempts);
        sb_run_error(r, "gave up: the job never finished", details);
        return;
    }
    for (;;) {
        int attempt = r->job.attempts + 1;
        sb_job_set_attempts(&r->job, attempt);
        snprintf(details, sizeof details, "attempt %d of %d by %s", attempt, a->o.max_attempts, a->id);
        if (sb_run_update(r, "processing", "processing", details, 0) != SB_OK) {
            sb_run_requeue(r);
            return;
        }
        /* the start of an attempt is logged at debug: done / error / retry lines say how it went */
        sb_debug("agent", "job %s processing (attempt %d/%d) user=%s", r->id, attempt,
                a->o.max_attempts, r->job.public_key);
        sb_handler_out_t out = {0};
        r->started_ms = sb_mono_ms();
        sb_handler_rc_t hrc =
            sb_run_check_output(a->cb(&r->job, attempt, &r->w->cancel, &out, a->user), &out);
        if (hrc == SB_HANDLER_OK) {
            sb_run_done(r, out.result);
            return;
        }
        cJSON_Delete(out.result);
        if (hrc == SB_HANDLER_CANCELED) {
            if (!sb_run_withdrawn(r)) sb_run_requeue(r);
            return;
        }
        const char *err = out.error[0] ? out.error : "handler failed";
        if (hrc == SB_HANDLER_FAIL || attempt >= a->o.max_attempts) {
            sb_run_error(r, err, out.details[0] ? out.details : NULL);
            return;
        }
        int delay = sb_retry_delay_ms(r->w, attempt);
        snprintf(details, sizeof details, "attempt %d of %d failed: %s; retrying in %d ms",
                 attempt, a->o.max_attempts, err, delay);
        sb_warn("agent", "job %s: %s user=%s", r->id, details, r->job.public_key);
        sb__stat_add(a, &a->stats.retries, 1);
        sb_json_set_str(r->job.root, "error", err);
        int rc = sb_run_update(r, "queued", "processing", details, 1);
        if (rc == SB_ENOTFOUND) {
            sb_info("agent", "job %s no longer ours (cancelled or deleted): not retried", r->id);
            return;
        }
        if (rc != SB_OK || sb_sleep_ms(delay, &r->w->cancel) != SB_OK) {
            if (!sb_run_withdrawn(r)) sb_run_requeue(r);
            return;
        }
    }
}


void sb__job_process(sb__worker_t *w, sb__taken_t *t) {
    sb_agent_t *a = w->conn.agent;
    const char *id = t->id;
    char why[256];
    int too_long = strlen(id) >= SB_JOB_ID_LEN; /* no job of ours has such an id */
    int rc;
    if (too_long) rc = SB_ENOTFOUND;
    else if (t->error) {
        snprintf(why, sizeof why, "record unreadable: %s", t->error); /* as sb_record_reply */
        rc = SB_EPROTO;
    } else if (t->have_record) rc = t->record ? SB_OK : SB_ENOTFOUND;
    else rc = sb__conn_get_record(&w->conn, id, &t->record, why, sizeof why);
    if (rc == SB_ENOTFOUND) {
        /* nothing to run and nobody to tell: just forget the id */
        redisReply *rep = sb_redis_cmd(w->conn.redis, "LREM %s 1 %s", w->conn.shard->k_proc, id);
        if (rep) freeReplyObject(rep);
        sb_warn("agent", "job %.64s: %s; id dropped", id,
                too_long ? "id longer than any job id" : "record expired or missing");
        sb__stat_add(a, &a->stats.bad_records, 1);
        return;
    }
    if (rc == SB_EPROTO) {
        sb_run_bad_record(w, id, why); /* the key holds something else: dead-letter the id */
        return;
    }
    if (rc != SB_OK) return; /* canceled while Redis was down: recovery will requeue it */
    sb_run_t r = {.w = w, .id = id};
    if (sb_job_parse(t->record, strlen(t->record), &r.job, why, sizeof why) != SB_OK) {
        sb_run_bad_record(w, id, why);
    } else {
        sb_run_attempts(&r);
        sb_job_close(&r.job);
    }
}

