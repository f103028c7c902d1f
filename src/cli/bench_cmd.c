/* `switchboard bench`: how fast is this installation? Sends --jobs jobs of --type straight to
 * Redis (the atomic enqueue, pipelined 100 per round trip) for whatever agents are running,
 * and follows their status messages until every job is done or failed. Prints progress once a
 * second on stderr, then jobs/s and the enqueue → done latency percentiles on stdout (with
 * --json as one JSON document, see sb_bench_print_json).
 *
 * A second thread reads the status channel (subscribed before the first enqueue) and stamps
 * each final message as it arrives, so latency is not distorted by the sending loop; the two
 * threads share only the job table, whose slots are written once each. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "switchboard/switchboard.h"

#define SB_BENCH_BATCH 100

typedef struct {
    char id[SB_JOB_ID_LEN];
    int64_t sent_ms;              /* monotonic, when its batch was written */
    _Atomic int64_t done_ms;      /* monotonic, when its final status arrived (0: not yet) */
    atomic_int failed;
} sb_bench_job_t;

typedef struct {
    sb_bench_job_t *jobs;         /* sorted by id once all are created */
    size_t n;
    atomic_size_t finished;
    atomic_int stop;
    sb_redis_t *sub;
    char user[64];
} sb_bench_t;

static int sb_bench_cmp(const void *a, const void *b) {
    return strcmp(((const sb_bench_job_t *)a)->id, ((const sb_bench_job_t *)b)->id);
}

static sb_bench_job_t *sb_bench_find(sb_bench_t *b, const char *id) {
    sb_bench_job_t key;
    snprintf(key.id, sizeof key.id, "%s", id);
    return bsearch(&key, b->jobs, b->n, sizeof *b->jobs, sb_bench_cmp);
}

/* The subscriber thread: stamps every job's first done/error message. */
static void *sb_bench_listen(void *arg) {
    sb_bench_t *b = arg;
    while (!atomic_load(&b->stop)) {
        int idle;
        redisReply *msg = sb_redis_read_wait(b->sub, 200, &idle);
        if (!msg) {
            if (!idle) break; /* connection lost: the main loop reports what finished */
            continue;         /* nothing for 200 ms: check stop */
        }
        cJSON *root = NULL;
        sb_status_t st;
        char err[64];
        if (msg->type == REDIS_REPLY_ARRAY && msg->elements == 3 &&
            sb_status_parse(msg->element[2]->str, msg->element[2]->len, &root, &st, err,
                            sizeof err) == SB_OK &&
            strcmp(st.user_id, b->user) == 0 && strcmp(st.status, "processing") != 0) {
            sb_bench_job_t *j = sb_bench_find(b, st.job_id);
            int64_t zero = 0;
            if (j && atomic_compare_exchange_strong(&j->done_ms, &zero, sb_mono_ms())) {
                atomic_store(&j->failed, strcmp(st.status, "error") == 0);
                atomic_fetch_add(&b->finished, 1);
            }
        }
        cJSON_Delete(root);
        freeReplyObject(msg);
    }
    return NULL;
}

/* Creates every job's id and record up front (so the listener can look ids up). */
static int sb_bench_prepare(sb_bench_t *b, size_t n) {
    b->jobs = calloc(n, sizeof *b->jobs);
    if (!b->jobs) return SB_ENOMEM;
    b->n = n;
    for (size_t i = 0; i < n; i++) /* over every queue shard (job.h), one user or not */
        if (sb_job_id_new_in(b->jobs[i].id, NULL, (int)(i % (size_t)sb_queue_shards())) != SB_OK)
            return SB_ERR;
    qsort(b->jobs, n, sizeof *b->jobs, sb_bench_cmp);
    return SB_OK;
}

/* Appends job k's submission (the same script the gateway runs, without a rate limit). */
static int sb_bench_add(sb_bench_t *b, sb_batch_t *batch, const sb_script_t *script,
                        sb_script_mode_t mode, const char *type, const cJSON *payload, size_t k) {
    sb_user_t user = {.public_key = b->user};
    int64_t now = sb_now_ms();
    char *json = sb_job_record_text(type, b->jobs[k].id, &user, payload, now);
    sb_submit_t q = {.type = type, .job_id = b->jobs[k].id, .public_key = b->user,
                     .record_json = json, .now_ms = now};
    int rc = json ? sb_submit_batch(batch, script, mode, &q) : SB_ENOMEM;
    free(json);
    return rc;
}

/* Sends the jobs SB_BENCH_BATCH at a time, one round trip per batch: the first batch as EVAL
 * (it also loads the script), the rest as EVALSHA. Every reply must be a success. */
static int sb_bench_send(sb_bench_t *b, sb_redis_t *r, const char *type) {
    sb_script_t script;
    sb_submit_script_init(&script);
    sb_batch_t *batch = sb_batch_create();
    cJSON *payload = cJSON_Parse("{\"amount\":1000,\"bench\":true}");
    redisReply *replies[2 * SB_BENCH_BATCH]; /* a script, and on a cluster its audit XADD */
    int rc = batch && payload ? SB_OK : SB_ENOMEM;
    for (size_t i = 0; i < b->n && rc == SB_OK; i += SB_BENCH_BATCH) {
        sb_batch_reset(batch);
        sb_script_mode_t mode = i == 0 ? SB_SCRIPT_EVAL : SB_SCRIPT_EVALSHA;
        for (size_t k = i; k < b->n && k < i + SB_BENCH_BATCH && rc == SB_OK; k++)
            rc = sb_bench_add(b, batch, &script, mode, type, payload, k);
        int64_t sent = sb_mono_ms();
        for (size_t k = i; k < b->n && k < i + SB_BENCH_BATCH; k++) b->jobs[k].sent_ms = sent;
        if (rc == SB_OK && (rc = sb_redis_pipeline(r, batch, replies)) == SB_OK) {
            for (size_t k = 0; k < sb_batch_count(batch); k++)
                if (sb_reply_is_error(replies[k])) rc = SB_EPROTO;
            sb_replies_free(replies, sb_batch_count(batch));
        }
    }
    cJSON_Delete(payload);
    sb_batch_free(batch);
    return rc;
}

static int sb_cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* What a run measured: counts, elapsed time, latency percentiles (enqueue → final status). */
typedef struct {
    const char *type;
    size_t sent, finished, failed;
    int64_t elapsed_ms;
    long long jobs_per_s;       /* finished / elapsed, rounded */
    int64_t p50, p95, p99, max; /* ms; meaningful only when finished > 0 */
} sb_bench_result_t;

/* Fills res from the job table; SB_ENOMEM when the latencies could not be sorted. */
static int sb_bench_measure(sb_bench_t *b, int64_t started, int64_t ended,
                            sb_bench_result_t *res) {
    int64_t *lat = malloc((b->n ? b->n : 1) * sizeof *lat);
    if (!lat) return SB_ENOMEM;
    size_t n = 0;
    res->sent = b->n;
    res->failed = 0;
    for (size_t i = 0; i < b->n; i++) {
        int64_t d = atomic_load(&b->jobs[i].done_ms);
        if (!d) continue;
        lat[n++] = d - b->jobs[i].sent_ms;
        res->failed += atomic_load(&b->jobs[i].failed) != 0;
    }
    res->finished = n;
    res->elapsed_ms = ended - started;
    res->jobs_per_s = res->elapsed_ms > 0 ? (long long)(n * 1000.0 / res->elapsed_ms + 0.5) : 0;
    if (n) {
        qsort(lat, n, sizeof *lat, sb_cmp_i64);
        res->p50 = lat[n / 2];
        res->p95 = lat[(n * 95) / 100];
        res->p99 = lat[(n * 99) / 100];
        res->max = lat[n - 1];
    }
    free(lat);
    return SB_OK;
}

static void sb_bench_print_text(const sb_bench_result_t *res) {
    double secs = res->elapsed_ms / 1000.0;
    printf("jobs:       %zu sent, %zu finished (%zu failed), %zu unfinished\n", res->sent,
           res->finished, res->failed, res->sent - res->finished);
    printf("throughput: %lld jobs/s (%.2f s)\n", res->jobs_per_s, secs);
    if (res->finished)
        printf("latency:    p50 %lld ms, p95 %lld ms, p99 %lld ms, max %lld ms (enqueue → final "
               "status)\n", (long long)res->p50, (long long)res->p95, (long long)res->p99,
               (long long)res->max);
}

/* --json: {"type","sent","finished","failed","unfinished","elapsed_ms","jobs_per_second",
 * "latency_ms":{"p50","p95","p99","max"} (null when nothing finished)}. */
static int sb_bench_print_json(const sb_bench_result_t *res) {
    sb_jw_t w;
    sb_jw_init(&w);
    sb_jw_member(&w, "{\"type\":", res->type);
    sb_jw_lit(&w, ",\"sent\":");
    sb_jw_int(&w, (long long)res->sent);
    sb_jw_lit(&w, ",\"finished\":");
    sb_jw_int(&w, (long long)res->finished);
    sb_jw_lit(&w, ",\"failed\":");
    sb_jw_int(&w, (long long)res->failed);
    sb_jw_lit(&w, ",\"unfinished\":");
    sb_jw_int(&w, (long long)(res->sent - res->finished));
    sb_jw_lit(&w, ",\"elapsed_ms\":");
    sb_jw_int(&w, res->elapsed_ms);
    sb_jw_lit(&w, ",\"jobs_per_second\":");
    sb_jw_int(&w, res->jobs_per_s);
    sb_jw_lit(&w, ",\"latency_ms\":");
    if (res->finished) {
        sb_jw_lit(&w, "{\"p50\":");
        sb_jw_int(&w, res->p50);
        sb_jw_lit(&w, ",\"p95\":");
        sb_jw_int(&w, res->p95);
        sb_jw_lit(&w, ",\"p99\":");
        sb_jw_int(&w, res->p99);
        sb_jw_lit(&w, ",\"max\":");
        sb_jw_int(&w, res->max);
        sb_jw_lit(&w, "}}");
    } else {
        sb_jw_lit(&w, "null}");
    }
    const char *text = sb_jw_finish(&w, NULL);
    if (text) printf("%s\n", text);
    sb_jw_close(&w);
    return text ? SB_OK : SB_ENOMEM;
}

/* The report on stdout: text, or one JSON document with --json. */
static int sb_bench_report(const sb_config_t *cfg, sb_bench_t *b, int64_t started,
                           int64_t ended) {
    sb_bench_result_t res = {.type = cfg->job_type};
    int rc = sb_bench_measure(b, started, ended, &res);
    if (rc != SB_OK) return rc;
    if (cfg->json_out) return sb_bench_print_json(&res);
    sb_bench_print_text(&res);
    return SB_OK;
}

int sb_cmd_bench(sb_config_t *cfg) {
    sb_bench_t b = {0};
    snprintf(b.user, sizeof b.user, "bench-%ld", (long)getpid());
    sb_redis_t *r = sb_cli_connect(cfg);
    b.sub = r ? sb_cli_connect(cfg) : NULL;
    char chan[SB_KEY_LEN];
    redisReply *rep = b.sub ? sb_redis_cmd(b.sub, "SUBSCRIBE %s",
                                           sb_key(chan, sizeof chan, SB_KEY_STATUS, cfg->job_type,
                                                  NULL)) : NULL;
    int rc = rep ? sb_bench_prepare(&b, (size_t)cfg->jobs) : SB_EREDIS;
    if (rep) freeReplyObject(rep);
    pthread_t listener;
    int listening = 0;
    if (rc == SB_OK) {
        listening = pthread_create(&listener, NULL, sb_bench_listen, &b) == 0;
        if (!listening) rc = SB_ERR;
    }
    int64_t started = sb_mono_ms(), deadline = started + (int64_t)(cfg->timeout ? cfg->timeout : 300) * 1000;
    if (rc == SB_OK) {
        fprintf(stderr, "bench: sending %d %s jobs as user %s (agents must be running)\n",
                cfg->jobs, cfg->job_type, b.user);
        rc = sb_bench_send(&b, r, cfg->job_type);
    }
    int64_t next = started;
    while (rc == SB_OK && atomic_load(&b.finished) < b.n && sb_mono_ms() < deadline) {
        if (sb_mono_ms() >= next) {
            size_t f = atomic_load(&b.finished);
            double secs = (sb_mono_ms() - started) / 1000.0;
            fprintf(stderr, "\rbench: %zu/%zu finished, %.0f jobs/s   ", f, b.n,
                    secs > 0 ? f / secs : 0.0);
            next += 1000;
        }
        sb_sleep_ms(20, NULL);
    }
    int64_t ended = sb_mono_ms();
    atomic_store(&b.stop, 1);
    if (listening) pthread_join(listener, NULL);
    if (rc == SB_OK) {
        fprintf(stderr, "\n");
        rc = sb_bench_report(cfg, &b, started, ended);
    }
    if (rc == SB_OK) {
        if (atomic_load(&b.finished) < b.n)
            fprintf(stderr, "bench: timed out; are agents running for type %s?\n", cfg->job_type);
    } else {
        fprintf(stderr, "switchboard bench: %s\n", sb_strerror(rc));
    }
    int finished_all = atomic_load(&b.finished) == b.n;
    free(b.jobs);
    sb_redis_free(b.sub);
    sb_redis_free(r);
    if (rc != SB_OK) return rc == SB_ERR || rc == SB_ENOMEM ? SB_EXIT_FAIL : SB_EXIT_REDIS;
    return finished_all ? SB_EXIT_OK : SB_EXIT_TIMEOUT;
}
