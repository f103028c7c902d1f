/* Integration tests of the job pipeline against a real redis-server: atomic enqueue, FIFO,
 * the agent runtime (retries, dead letters, bad records, recovery of a dead agent's jobs,
 * graceful shutdown, Redis restart) and the general queue library. The agent runs in-process
 * with C handlers, so each test controls exactly what the handler does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "sb_test_redis.h"
#include "switchboard/agent.h"
#include "cli/settings.h"
#include "switchboard/switchboard.h"
#include "switchboard/utf8.h"

static sb_test_redis_t srv;

/* ---- helpers ----------------------------------------------------------------------------- */

/* Fast settings for tests: short TTLs and intervals, 10 ms retry backoff. */
static sb_agent_opts_t test_config(void) {
    sb_agent_opts_t o;
    sb_agent_opts_init(&o);
    o.retry_backoff_ms = 10;
    o.retry_backoff_max_ms = 50;
    o.heartbeat_s = 1;
    o.status_ttl_s = 3;
    o.recovery_s = 1;
    return o;
}

static long long llen(sb_redis_t *r, const char *key) {
    redisReply *rep = sb_redis_cmd(r, "LLEN %s", key);
    long long n = rep->integer;
    freeReplyObject(rep);
    return n;
}

static char *record_status(sb_redis_t *r, const char *id) {
    char *json = NULL;
    if (sb_job_get(r, "rebalance", id, &json) != SB_OK) return NULL;
    cJSON *doc = cJSON_Parse(json);
    char *st = strdup(sb_json_str(doc, "status"));
    cJSON_Delete(doc);
    free(json);
    return st;
}

/* Waits (bounded) until job id's record has a terminal status; returns it (caller frees). */
/* Waits until the agent has counted done and failed finishes: a record reads "done" as soon as
 * the finish script ran in Redis, before the agent thread has its reply and counts it. */
static void wait_counted(sb_agent_t *a, unsigned long long done, unsigned long long failed) {
    sb_agent_stats_t stats = {0};
    int64_t deadline = sb_mono_ms() + 10000;
    for (;;) {
        sb_agent_stats(a, &stats);
        if ((stats.done >= done && stats.failed >= failed) || sb_mono_ms() > deadline) break;
        sb_sleep_ms(5, NULL);
    }
}

static char *wait_terminal(sb_redis_t *r, const char *id) {
    int64_t deadline = sb_mono_ms() + 15000;
    while (sb_mono_ms() < deadline) {
        char *st = record_status(r, id);
        if (st && (!strcmp(st, "done") || !strcmp(st, "error"))) return st;
        free(st);
        sb_sleep_ms(5, NULL);
    }
    fail_msg("job %s never finished", id);
    return NULL;
}

/* Waits (bounded) until key holds n items. */
static void wait_llen(sb_redis_t *r, const char *key, long long n) {
    int64_t deadline = sb_mono_ms() + 15000;
    while (llen(r, key) != n && sb_mono_ms() < deadline) sb_sleep_ms(5, NULL);
    assert_int_equal(llen(r, key), n);
}

/* The last_heartbeat of an agent's presence record ("" when absent); waits (bounded) until it
 * differs from prev, so a caller can count the agent's heartbeats. */
static void wait_heartbeat(sb_redis_t *r, const char *agent_id, char *prev, size_t len) {
    int64_t deadline = sb_mono_ms() + 15000;
    while (sb_mono_ms() < deadline) {
        redisReply *rep = sb_redis_cmd(r, "GET agent:online:%s", agent_id);
        cJSON *doc = rep && rep->type == REDIS_REPLY_STRING ? cJSON_Parse(rep->str) : NULL;
        const char *hb = sb_json_str(doc, "last_heartbeat");
        int changed = hb && strcmp(hb, prev) != 0;
        if (changed) snprintf(prev, len, "%s", hb);
        cJSON_Delete(doc);
        if (rep) freeReplyObject(rep);
        if (changed) return;
        sb_sleep_ms(5, NULL);
    }
    fail_msg("agent %s never heartbeat", agent_id);
}

static void enqueue(sb_redis_t *r, const char *payload_json, char id[SB_JOB_ID_LEN]) {
    cJSON *payload = cJSON_Parse(payload_json);
    sb_user_t u = {.public_key = "PK1", .id = "u1"};
    char err[128];
    assert_int_equal(sb_job_enqueue(r, "rebalance", &u, payload, id, err, sizeof err), 0);
    cJSON_Delete(payload);
}

/* Handler whose behaviour the payload chooses: {"mode":"ok"|"fail"|"fail_twice"|"permanent"
 * |"block"|"gate"|"latin1"|"bad_error"}. Records the order it saw jobs in. */
typedef struct {
    pthread_mutex_t lock;
    int seen[64];
    int nseen;
    atomic_int blocked;   /* a "block" or "gate" job is running */
    atomic_int release;   /* a "gate" job may finish (done) */
} probe_t;

static sb_handler_rc_t probe_handler(const sb_job_t *job, int attempt, const atomic_int *cancel,
                                     sb_handler_out_t *out, void *user) {
    probe_t *p = user;
    const char *mode = sb_json_str(job->payload, "mode");
    double n = -1;
    sb_json_num(job->payload, "n", &n);
    pthread_mutex_lock(&p->lock);
    if (p->nseen < 64) p->seen[p->nseen++] = (int)n;
    pthread_mutex_unlock(&p->lock);
    if (!mode || !strcmp(mode, "ok")) {
        out->result = cJSON_CreateNumber(n);
        return SB_HANDLER_OK;
    }
    if (!strcmp(mode, "latin1")) { /* a result that is not UTF-8 */
        out->result = cJSON_CreateObject();
        cJSON_AddStringToObject(out->result, "text", "caf\xe9");
        return SB_HANDLER_OK;
    }
    if (!strcmp(mode, "bad_error")) {
        snprintf(out->error, sizeof out->error, "bad \xff\xfe bytes");
        snprintf(out->details, sizeof out->details, "truncated \xe2\x82");
        return SB_HANDLER_FAIL;
    }
    if (!strcmp(mode, "fail_twice") && attempt >= 3) {
        out->result = cJSON_CreateString("third time lucky");
        return SB_HANDLER_OK;
    }
    if (!strcmp(mode, "gate")) {
        atomic_store(&p->blocked, 1);
        while (!atomic_load(&p->release) && !atomic_load(cancel)) sb_sleep_ms(5, NULL);
        out->result = cJSON_CreateString("released");
        return SB_HANDLER_OK;
    }
    if (!strcmp(mode, "block")) {
        atomic_store(&p->blocked, 1);
        while (!atomic_load(cancel)) sb_sleep_ms(5, NULL);
        return SB_HANDLER_CANCELED;
    }
    snprintf(out->error, sizeof out->error, "boom %d", attempt);
    return !strcmp(mode, "permanent") ? SB_HANDLER_FAIL : SB_HANDLER_RETRY;
}

static sb_agent_t *start_agent(const sb_agent_opts_t *cfg, probe_t *p) {
    char err[128];
    sb_agent_t *a = sb_agent_create(&srv.addr, cfg, probe_handler, p, err, sizeof err);
    assert_non_null(a);
    assert_int_equal(sb_agent_start(a), 0);
    return a;
}

/* Starts an agent and waits (bounded) until its handler runs a "block" or "gate" job. */
static sb_agent_t *start_agent_blocked(const sb_agent_opts_t *cfg, probe_t *p) {
    sb_agent_t *a = start_agent(cfg, p);
    int64_t deadline = sb_mono_ms() + 10000;
    while (!atomic_load(&p->blocked) && sb_mono_ms() < deadline) sb_sleep_ms(5, NULL);
    assert_true(atomic_load(&p->blocked));
    return a;
}

/* A schedule clock the tests move ahead: the real monotonic clock plus *ctx ms. */
static int64_t skip_clock(void *ctx) {
    return sb_mono_ms() + atomic_load((atomic_llong *)ctx);
}

/* Waits (bounded) until the agent has looked for dead agents' jobs n times in all. */
static void wait_checks(sb_agent_t *a, unsigned long long n) {
    sb_agent_stats_t st = {0};
    int64_t deadline = sb_mono_ms() + 15000;
    for (sb_agent_stats(a, &st); st.checks < n && sb_mono_ms() < deadline; sb_agent_stats(a, &st))
        sb_sleep_ms(5, NULL);
    assert_true(st.checks >= n);
}

/* Waits (bounded) until Redis has been up for secs seconds. */
static void wait_uptime(sb_redis_t *r, long secs) {
    int64_t deadline = sb_mono_ms() + 15000;
    long up = -1;
    while (up < secs && sb_mono_ms() < deadline) {
        redisReply *rep = sb_redis_cmd(r, "INFO server");
        assert_non_null(rep);
        const char *s = strstr(rep->str, "uptime_in_seconds:");
        up = s ? atol(s + strlen("uptime_in_seconds:")) : -1;
        freeReplyObject(rep);
        if (up < secs) sb_sleep_ms(50, NULL);
    }
    assert_true(up >= secs);
}

/* Enqueues n jobs and moves them into list, as an agent's take would. */
static void enqueue_held(sb_redis_t *r, const char *list, char (*ids)[SB_JOB_ID_LEN], int n) {
    for (int i = 0; i < n; i++) {
        enqueue(r, "{\"n\":1}", ids[i]);
        redisReply *rep = sb_redis_cmd(r, "LMOVE agent:rebalance:jobs %s RIGHT LEFT", list);
        assert_int_equal(rep->type, REDIS_REPLY_STRING);
        freeReplyObject(rep);
    }
}

/* Runs a Redis command (sb_redis_cmd's arguments) and checks that it did not fail. */
#define EXPECT_OK(r, ...)                                              \
    do {                                                              \
        redisReply *rep_ = sb_redis_cmd((r), __VA_ARGS__);            \
        assert_non_null(rep_);                                        \
        assert_int_not_equal(rep_->type, REDIS_REPLY_ERROR);          \
        freeReplyObject(rep_);                                        \
    } while (0)

static int setup(void **state) {
    (void)state;
    sb_test_redis_flush(&srv);
    return 0;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_enqueue_is_atomic_and_complete(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    char id[SB_JOB_ID_LEN];
    enqueue(r, "{\"amount\":5}", id);
    assert_true(sb_job_id_valid(id));
    assert_int_equal(llen(r, "agent:rebalance:jobs"), 1);
    char *st = record_status(r, id);
    assert_string_equal(st, "queued");
    free(st);
    char key[SB_KEY_LEN];
    redisReply *rep = sb_redis_cmd(r, "TTL %s", sb_key(key, sizeof key, SB_KEY_JOB, "rebalance", id));
    assert_true(rep->integer > 86000 && rep->integer <= 86400);
    freeReplyObject(rep);
    rep = sb_redis_cmd(r, "ZSCORE agent:rebalance:user:PK1 %s", id);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    freeReplyObject(rep);
    /* a key of the wrong type makes the transaction fail: the caller is told */
    rep = sb_redis_cmd(r, "DEL agent:rebalance:jobs");
    freeReplyObject(rep);
    rep = sb_redis_cmd(r, "SET agent:rebalance:jobs notalist");
    freeReplyObject(rep);
    cJSON *payload = cJSON_Parse("{}");
    sb_user_t u = {.public_key = "PK1"};
    char err[128];
    assert_int_not_equal(sb_job_enqueue(r, "rebalance", &u, payload, id, err, sizeof err), 0);
    cJSON_Delete(payload);
    /* Redis gone: a clear error, not a crash */
    sb_redis_disconnect(r);
    payload = cJSON_Parse("{}");
    assert_int_equal(sb_job_enqueue(r, "rebalance", &u, payload, id, err, sizeof err), SB_EREDIS);
    cJSON_Delete(payload);
    sb_redis_free(r);
}

static void test_fifo_retry_and_dead_letter(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    char ids[6][SB_JOB_ID_LEN];
    const char *payloads[] = {"{\"n\":0}", "{\"n\":1}", "{\"n\":2,\"mode\":\"fail_twice\"}",
                              "{\"n\":3,\"mode\":\"fail\"}", "{\"n\":4,\"mode\":\"permanent\"}",
                              "{\"n\":5}"};
    for (int i = 0; i < 6; i++) enqueue(r, payloads[i], ids[i]);
    sb_agent_opts_t cfg = test_config();
    probe_t p = {.lock = PTHREAD_MUTEX_INITIALIZER};
    sb_agent_t *a = start_agent(&cfg, &p);
    const char *want[] = {"done", "done", "done", "error", "error", "done"};
    for (int i = 0; i < 6; i++) {
        char *st = wait_terminal(r, ids[i]);
        assert_string_equal(st, want[i]);
        free(st);
    }
    /* FIFO with one worker: first attempts in enqueue order */
    for (int i = 0; i < 3; i++) assert_int_equal(p.seen[i], i);
    /* dead letters: the retried-out job and the permanent failure, nothing else */
    assert_int_equal(llen(r, "agent:rebalance:dead"), 2);
    char *json = NULL;
    assert_int_equal(sb_job_get(r, "rebalance", ids[3], &json), 0);
    cJSON *rec = cJSON_Parse(json);
    double attempts;
    sb_json_num(rec, "attempts", &attempts);
    assert_int_equal((int)attempts, 3);
    assert_string_equal(sb_json_str(rec, "error"), "boom 3");
    cJSON_Delete(rec);
    free(json);
    assert_int_equal(sb_job_get(r, "rebalance", ids[4], &json), 0);
    rec = cJSON_Parse(json);
    sb_json_num(rec, "attempts", &attempts);
    assert_int_equal((int)attempts, 1); /* permanent: no retry */
    cJSON_Delete(rec);
    free(json);
    /* failure stored under metrics, execution times recorded, counters */
    char key[256];
    sb_metrics_key(key, sizeof key, "rebalance", "failed", ids[3]);
    redisReply *rep = sb_redis_cmd(r, "EXISTS %s", key);
    assert_int_equal(rep->integer, 1);
    freeReplyObject(rep);
    rep = sb_redis_cmd(r, "ZCARD metrics:agent:rebalance:execution_times");
    assert_int_equal(rep->integer, 4);
    freeReplyObject(rep);
    sb_metrics_summary_t sum;
    assert_int_equal(sb_metrics_summary(r, "rebalance", 7, sb_now_ms(), &sum), 0);
    assert_int_equal(sum.total_jobs, 6);
    assert_int_equal(sum.failed_jobs, 2);
    assert_int_equal(sum.done_jobs, 4);
    wait_counted(a, 4, 2);
    sb_agent_stats_t stats;
    sb_agent_stats(a, &stats);
    assert_int_equal(stats.done, 4);
    assert_int_equal(stats.failed, 2);
    assert_int_equal(stats.retries, 4); /* 2 for fail_twice, 2 for fail */
    sb_agent_wait(a, 5);
    sb_agent_free(a);
    /* nothing left in any processing list, presence removed */
    rep = sb_redis_cmd(r, "KEYS agent:rebalance:processing:*");
    assert_int_equal(rep->elements, 0);
    freeReplyObject(rep);
    rep = sb_redis_cmd(r, "KEYS agent:online:*");
    assert_int_equal(rep->elements, 0);
    freeReplyObject(rep);
    sb_redis_free(r);
}

static void test_bad_records_are_counted_and_skipped(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    redisReply *rep;
    const char *cmds[][2] = {{"1-badjson", "{not json"},
                             {"2-nouser", "{\"jobId\":\"2-nouser\",\"payload\":{}}"}};
    for (int i = 0; i < 2; i++) {
        rep = sb_redis_cmd(r, "SET agent:rebalance:job:%s %s", cmds[i][0], cmds[i][1]);
        freeReplyObject(rep);
        rep = sb_redis_cmd(r, "LPUSH agent:rebalance:jobs %s", cmds[i][0]);
        freeReplyObject(rep);
    }
    rep = sb_redis_cmd(r, "LPUSH agent:rebalance:jobs 3-expired");
    freeReplyObject(rep);
    char longid[200];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    rep = sb_redis_cmd(r, "LPUSH agent:rebalance:jobs %s", longid);
    freeReplyObject(rep);
    /* a record key of another type: the take script reads it with pcall */
    rep = sb_redis_cmd(r, "HSET agent:rebalance:job:4-hash x y");
    freeReplyObject(rep);
    rep = sb_redis_cmd(r, "LPUSH agent:rebalance:jobs 4-hash");
    freeReplyObject(rep);
    char good[SB_JOB_ID_LEN];
    enqueue(r, "{\"n\":7}", good);
    sb_agent_opts_t cfg = test_config();
    probe_t p = {.lock = PTHREAD_MUTEX_INITIALIZER};
    sb_agent_t *a = start_agent(&cfg, &p);
    char *st = wait_terminal(r, good);
    assert_string_equal(st, "done");
    free(st);
    wait_llen(r, "agent:rebalance:dead", 3); /* the three unreadable records */
    /* the same once the queue is empty: the id comes from BLMOVE, the record from a GET */
    rep = sb_redis_cmd(r, "SADD agent:rebalance:job:5-set x");
    freeReplyObject(rep);
    rep = sb_redis_cmd(r, "LPUSH agent:rebalance:jobs 5-set");
    freeReplyObject(rep);
    wait_llen(r, "agent:rebalance:dead", 4);
    sb_agent_stats_t stats;
    sb_agent_stats(a, &stats);
    assert_int_equal(stats.bad_records, 6);
    rep = sb_redis_cmd(r, "KEYS agent:rebalance:processing:*");
    assert_int_equal(rep->elements, 0); /* nothing stuck, not even the over-long id */
    freeReplyObject(rep);
    sb_agent_wait(a, 5);
    sb_agent_free(a);
    sb_redis_free(r);
}

/* The execution-time sample stays bounded: past the bound by 10 % the excess is evicted. */
static void test_execution_times_stay_bounded(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    sb_batch_t *b = sb_batch_create();
    int extra = SB_METRICS_EXEC_MAX + SB_METRICS_EXEC_MAX / 10;
    for (int i = 0; i < extra; i++)
        assert_int_equal(sb_batch_add(b, "ZADD metrics:agent:rebalance:execution_times %d old-%d",
                                      i % 500, i), 0);
    redisReply **replies = calloc(sb_batch_count(b), sizeof *replies);
    assert_int_equal(sb_redis_pipeline(r, b, replies), 0);
    sb_replies_free(replies, sb_batch_count(b));
    free(replies);
    sb_batch_free(b);
    char id[SB_JOB_ID_LEN];
    enqueue(r, "{\"n\":1}", id);
    sb_agent_opts_t cfg = test_config();
    probe_t p = {.lock = PTHREAD_MUTEX_INITIALIZER};
    sb_agent_t *a = start_agent(&cfg, &p);
    free(wait_terminal(r, id));
    redisReply *rep = sb_redis_cmd(r, "ZCARD metrics:agent:rebalance:execution_times");
    assert_int_equal(rep->integer, SB_METRICS_EXEC_MAX);
    freeReplyObject(rep);
    rep = sb_redis_cmd(r, "TTL metrics:agent:rebalance:execution_times");
    assert_true(rep->integer > 0);
    freeReplyObject(rep);
    sb_agent_wait(a, 5);
    sb_agent_free(a);
    sb_redis_free(r);
}

static void test_recovers_jobs_of_a_dead_agent(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    char ids[3][SB_JOB_ID_LEN];
    for (int i = 0; i < 3; i++) enqueue(r, "{\"n\":1}", ids[i]);
    /* a "crashed" agent took all three: they sit in its processing list, no presence key */
    for (int i = 0; i < 3; i++) {
        redisReply *rep = sb_redis_cmd(r, "LMOVE agent:rebalance:jobs "
                                          "agent:rebalance:processing:dead-1-aa RIGHT LEFT");
        freeReplyObject(rep);
    }
    /* and a live one (presence present) holds another: it must not be touched */
    redisReply *rep = sb_redis_cmd(r, "SET agent:online:alive-2-bb {} EX 60");
    freeReplyObject(rep);
    rep = sb_redis_cmd(r, "LPUSH agent:rebalance:processing:alive-2-bb 9-keep");
    freeReplyObject(rep);
    sb_agent_opts_t cfg = test_config();
    probe_t p = {.lock = PTHREAD_MUTEX_INITIALIZER};
    sb_agent_t *a = start_agent(&cfg, &p);
    for (int i = 0; i < 3; i++) {
        char *st = wait_terminal(r, ids[i]);
        assert_string_equal(st, "done");
        free(st);
    }
    sb_agent_stats_t stats;
    sb_agent_stats(a, &stats);
    assert_int_equal(stats.recovered, 3);
    assert_int_equal(llen(r, "agent:rebalance:processing:dead-1-aa"), 0);
    assert_int_equal(llen(r, "agent:rebalance:processing:alive-2-bb"), 1);
    sb_agent_wait(a, 5);
    sb_agent_free(a);
    sb_redis_free(r);
}

/* Redis ran a take and died before its reply reached us: the id sits in our own processing
 * list and no worker holds it. The agent must notice and put it back, or it is lost. */
static void test_reclaims_ids_orphaned_in_its_own_list(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    sb_agent_opts_t cfg = test_config();
    probe_t p = {.lock = PTHREAD_MUTEX_INITIALIZER};
    sb_agent_t *a = start_agent(&cfg, &p);
    char id[SB_JOB_ID_LEN], key[SB_KEY_LEN], rkey[SB_KEY_LEN];
    /* the record, and its id where a take would have put it: in the agent's own list */
    assert_int_equal(sb_job_id_new(id, NULL), 0);
    sb_user_t u = {.public_key = "PK1"};
    char *json = sb_job_record_text("rebalance", id, &u, NULL, sb_now_ms());
    redisReply *rep = sb_redis_cmd(r, "SET %s %s", sb_key(rkey, sizeof rkey, SB_KEY_JOB,
                                                         "rebalance", id), json);
    freeReplyObject(rep);
    free(json);
    rep = sb_redis_cmd(r, "LPUSH %s %s", sb_key(key, sizeof key, SB_KEY_PROCESSING, "rebalance",
                                                  sb_agent_id(a)), id);
    freeReplyObject(rep);
    char *st = wait_terminal(r, id);
    assert_string_equal(st, "done");
    free(st);
    sb_agent_stats_t stats;
    sb_agent_stats(a, &stats);
    assert_int_equal(stats.recovered, 1);
    assert_int_equal(llen(r, key), 0);
    sb_agent_wait(a, 5);
    sb_agent_free(a);
    sb_redis_free(r);
}

static void test_shutdown_puts_back_unfinished_jobs(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    char id[SB_JOB_ID_LEN];
    enqueue(r, "{\"n\":1,\"mode\":\"block\"}", id);
    sb_agent_opts_t cfg = test_config();
    probe_t p = {.lock = PTHREAD_MUTEX_INITIALIZER};
    sb_agent_t *a = start_agent_blocked(&cfg, &p);
    sb_agent_wait(a, 0); /* no grace: cancel at once */
    sb_agent_stats_t stats;
    sb_agent_stats(a, &stats);
    assert_int_equal(stats.requeued, 1);
    sb_agent_free(a);
    assert_int_equal(llen(r, "agent:rebalance:jobs"), 1);
    char *st = record_status(r, id);
    assert_string_equal(st, "queued");
    free(st);
    sb_redis_free(r);
}

/* A busy worker takes its next job along with each finish; stopping in the middle of a stream
 * leaves every job done or back on the queue untouched, none in a processing list. */
static void test_stop_mid_stream_leaves_no_job_taken(void **state) {
    (void)state;
    enum { N = 400 };
    sb_redis_t *r = sb_test_redis_client(&srv);
    char (*ids)[SB_JOB_ID_LEN] = calloc(N, SB_JOB_ID_LEN);
    for (int i = 0; i < N; i++) enqueue(r, "{\"n\":1}", ids[i]);
    sb_agent_opts_t cfg = test_config();
    cfg.concurrency = 4;
    probe_t p = {.lock = PTHREAD_MUTEX_INITIALIZER};
    sb_agent_t *a = start_agent(&cfg, &p);
    sb_agent_stats_t stats = {0};
    int64_t deadline = sb_mono_ms() + 15000;
    while (stats.done < 50 && sb_mono_ms() < deadline) {
        sb_sleep_ms(1, NULL);
        sb_agent_stats(a, &stats);
    }
    sb_agent_wait(a, 5);
    sb_agent_stats(a, &stats);
    sb_agent_free(a);
    assert_true(stats.done >= 50);
    int done = 0, queued = 0;
    for (int i = 0; i < N; i++) {
        char *st = record_status(r, ids[i]);
        assert_non_null(st);
        if (!strcmp(st, "done")) done++;
        else if (!strcmp(st, "queued")) queued++;
        else fail_msg("job %s is %s after the agent stopped", ids[i], st);
        free(st);
    }
    assert_int_equal(done, (int)stats.done);
    assert_int_equal(done + queued, N);
    assert_int_equal(llen(r, "agent:rebalance:jobs"), queued);
    redisReply *keys = sb_redis_cmd(r, "KEYS agent:rebalance:processing:*");
    for (size_t i = 0; i < keys->elements; i++)
        assert_int_equal(llen(r, keys->element[i]->str), 0);
    freeReplyObject(keys);
    free(ids);
    sb_redis_free(r);
}

static void test_survives_redis_restart(void **state) {
    (void)state;
    sb_agent_opts_t cfg = test_config();
    probe_t p = {.lock = PTHREAD_MUTEX_INITIALIZER};
    sb_agent_t *a = start_agent(&cfg, &p);
    sb_redis_t *r = sb_test_redis_client(&srv);
    char id[SB_JOB_ID_LEN];
    enqueue(r, "{\"n\":1}", id);
    char *st = wait_terminal(r, id);
    free(st);
    sb_redis_free(r);
    assert_int_equal(sb_test_redis_restart(&srv), 0); /* no persistence: a fresh server */
    r = sb_test_redis_client(&srv);
    enqueue(r, "{\"n\":2}", id);
    st = wait_terminal(r, id);
    assert_string_equal(st, "done");
    free(st);
    sb_agent_wait(a, 5);
    sb_agent_free(a);
    sb_redis_free(r);
}

/* Redis refuses the finish for now (BUSY: another script is running; LOADING after a restart
 * is the same case): the agent sends it again once Redis can run it, and the job ends done —
 * not left in the processing list to be run a second time, nor failed. */
static void *busy_script(void *arg) {
    redisReply *rep = sb_redis_cmd(arg, "EVAL %s 0", "while true do end");
    if (rep) freeReplyObject(rep); /* the error of SCRIPT KILL */
    return NULL;
}

static int redis_busy(sb_redis_t *r) {
    redisReply *rep = sb_redis_cmd(r, "PING");
    int busy = rep && rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "BUSY", 4);
    if (rep) freeReplyObject(rep);
    return busy;
}

static void test_finish_waits_out_a_busy_redis(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv), *blocker = sb_test_redis_client(&srv);
    redisReply *rep = sb_redis_cmd(r, "CONFIG SET busy-reply-threshold 50");
    freeReplyObject(rep);
    char id[SB_JOB_ID_LEN];
    enqueue(r, "{\"n\":1,\"mode\":\"gate\"}", id);
    sb_agent_opts_t cfg = test_config();
    probe_t p = {.lock = PTHREAD_MUTEX_INITIALIZER};
    sb_agent_t *a = start_agent_blocked(&cfg, &p);
    int64_t deadline = sb_mono_ms() + 10000;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, busy_script, blocker), 0);
    while (!redis_busy(r) && sb_mono_ms() < deadline) sb_sleep_ms(5, NULL);
    assert_true(redis_busy(r));
    atomic_store(&p.release, 1); /* the handler returns: the finish meets BUSY */
    sb_agent_stats_t stats = {0};
    while (stats.refused == 0 && sb_mono_ms() < deadline) {
        sb_sleep_ms(5, NULL);
        sb_agent_stats(a, &stats);
    }
    assert_true(stats.refused > 0);
    rep = sb_redis_cmd(r, "SCRIPT KILL");
    freeReplyObject(rep);
    pthread_join(t, NULL);
    char *st = wait_terminal(r, id);
    assert_string_equal(st, "done");
    free(st);
    wait_counted(a, 1, 0);
    sb_agent_stats(a, &stats);
    assert_int_equal(stats.done, 1);
    assert_int_equal(stats.recovered, 0);
    char key[SB_KEY_LEN];
    assert_int_equal(llen(r, sb_key(key, sizeof key, SB_KEY_PROCESSING, "rebalance",
                                    sb_agent_id(a))), 0);
    sb_agent_wait(a, 5);
    sb_agent_free(a);
    rep = sb_redis_cmd(r, "CONFIG SET busy-reply-threshold 5000");
    freeReplyObject(rep);
    sb_redis_free(blocker);
    sb_redis_free(r);
}

/* Redis restarts from disk after an outage longer than the presence TTL: the presence key of an
 * agent that is alive (and still running its jobs) is gone until its next heartbeat. The agents
 * that reconnect give it a TTL to heartbeat before they recover its jobs. */
static void test_recovery_waits_for_live_agents_after_a_restart(void **state) {
    (void)state;
    const char *alive = "agent:rebalance:processing:a-2-bb";
    sb_redis_t *r = sb_test_redis_client(&srv);
    char ids[2][SB_JOB_ID_LEN], hb[64] = "";
    for (int i = 0; i < 2; i++) {
        enqueue(r, "{\"n\":1}", ids[i]);
        redisReply *rep = sb_redis_cmd(r, "LMOVE agent:rebalance:jobs %s RIGHT LEFT", alive);
        freeReplyObject(rep);
    }
    redisReply *rep = sb_redis_cmd(r, "SET agent:online:a-2-bb {} EX 60");
    freeReplyObject(rep);
    sb_agent_opts_t cfg = test_config();
    cfg.agent_id = "b-1-aa";
    probe_t p = {.lock = PTHREAD_MUTEX_INITIALIZER};
    sb_agent_t *a = start_agent(&cfg, &p);
    wait_heartbeat(r, "b-1-aa", hb, sizeof hb);
    /* a-2-bb's key expires while Redis is down: gone when the snapshot is loaded again */
    int64_t expire_at = sb_now_ms() + 200;
    rep = sb_redis_cmd(r, "PEXPIREAT agent:online:a-2-bb %lld", (long long)expire_at);
    freeReplyObject(rep);
    rep = sb_redis_cmd(r, "SAVE");
    freeReplyObject(rep);
    sb_redis_free(r);
    kill(srv.pid, SIGSTOP); /* down (nothing answers) until the key's time has passed */
    while (sb_now_ms() <= expire_at) sb_sleep_ms(5, NULL);
    assert_int_equal(sb_test_redis_restart(&srv), 0);
    r = sb_test_redis_client(&srv);
    assert_int_equal(llen(r, alive), 2);
    rep = sb_redis_cmd(r, "EXISTS agent:online:a-2-bb");
    assert_int_equal(rep->integer, 0);
    freeReplyObject(rep);
    wait_heartbeat(r, "b-1-aa", hb, sizeof hb); /* b is back; its scans start now */
    rep = sb_redis_cmd(r, "SET agent:online:a-2-bb {} EX 60"); /* a's next heartbeat lands */
    freeReplyObject(rep);
    for (int i = 0; i < 2; i++) wait_heartbeat(r, "b-1-aa", hb, sizeof hb);
    sb_agent_stats_t stats;
    sb_agent_stats(a, &stats);
    assert_int_equal(stats.recovered, 0);
    assert_int_equal(llen(r, alive), 2);
    /* a really dies: its jobs are recovered once the grace is over */
    rep = sb_redis_cmd(r, "DEL agent:online:a-2-bb");
    freeReplyObject(rep);
    for (int i = 0; i < 2; i++) free(wait_terminal(r, ids[i]));
    sb_agent_stats(a, &stats);
    assert_int_equal(stats.recovered, 2);
    sb_agent_wait(a, 5);
    sb_agent_free(a);
    sb_redis_free(r);
}

/* The default lease is 15 s: a killed agent's jobs come back within seconds, even though its
 * presence key (TTL 300 s) still says it is online. The waits on the way follow the agent's
 * clock, which the test moves ahead: Redis was just started, so leases get a lease of grace
 * (live agents' entries may have been lost with a restart), and the lapsed lease is acted on
 * only once the clock has passed it. A live lease (even without presence) and an agent of an
 * earlier version (presence, no lease) keep their jobs. */
static void test_lapsed_lease_is_recovered_on_the_agent_clock(void **state) {
    (void)state;
    assert_int_equal(sb_test_redis_restart(&srv), 0); /* up for 0 s */
    sb_test_redis_flush(&srv); /* what the last test saved was loaded again */
    sb_redis_t *r = sb_test_redis_client(&srv);
    char dead[2][SB_JOB_ID_LEN], live[1][SB_JOB_ID_LEN], old[1][SB_JOB_ID_LEN];
    const char *k_dead = "agent:rebalance:processing:d-1-aa",
               *k_live = "agent:rebalance:processing:l-2-bb",
               *k_old = "agent:rebalance:processing:o-3-cc";
    enqueue_held(r, k_dead, dead, 2);
    enqueue_held(r, k_live, live, 1);
    enqueue_held(r, k_old, old, 1);
    EXPECT_OK(r, "ZADD agent:rebalance:leases 1 d-1-aa 99999999999999 l-2-bb");
    EXPECT_OK(r, "SET agent:online:d-1-aa {} EX 60"); /* killed a moment ago */
    EXPECT_OK(r, "SET agent:online:o-3-cc {} EX 60"); /* an earlier version: presence only */
    atomic_llong skip = 0;
    sb_agent_opts_t cfg = test_config();
    cfg.clock = skip_clock;
    cfg.clock_ctx = &skip;
    probe_t p = {.lock = PTHREAD_MUTEX_INITIALIZER};
    sb_agent_t *a = start_agent(&cfg, &p);
    wait_checks(a, 1);
    assert_int_equal(llen(r, k_dead), 2); /* redis is young: a lease of grace */
    sb_agent_stats_t stats;
    sb_agent_stats(a, &stats);
    atomic_fetch_add(&skip, 5000); /* a renewal interval: the next lease check */
    wait_checks(a, stats.checks + 2);
    assert_int_equal(llen(r, k_dead), 2); /* still in the grace */
    atomic_fetch_add(&skip, 15000);
    for (int i = 0; i < 2; i++) {
        char *st = wait_terminal(r, dead[i]);
        assert_string_equal(st, "done");
        free(st);
    }
    sb_agent_stats(a, &stats);
    assert_int_equal(stats.recovered, 2);
    redisReply *rep = sb_redis_cmd(r, "ZSCORE agent:rebalance:leases d-1-aa");
    assert_int_equal(rep->type, REDIS_REPLY_NIL); /* the entry goes with the jobs */
    freeReplyObject(rep);
    wait_checks(a, stats.checks + 3); /* presence is judged too by now (3 s TTL, skipped) */
    assert_int_equal(llen(r, k_live), 1);
    assert_int_equal(llen(r, k_old), 1);
    sb_agent_wait(a, 5);
    sb_agent_free(a);
    sb_redis_free(r);
}

/* An agent whose job runs for several leases keeps it: the lease is renewed by the
 * maintenance thread whatever the worker does. A second agent that looks for lapsed leases
 * every third of a lease (and recovers a really dead agent's job meanwhile) leaves it alone,
 * and the job runs and finishes once. */
static void test_live_agent_keeps_a_job_longer_than_its_lease(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    wait_uptime(r, 2); /* a 1 s lease is acted on once Redis has been up that long */
    char id[SB_JOB_ID_LEN], dead[1][SB_JOB_ID_LEN], key[SB_KEY_LEN];
    enqueue(r, "{\"n\":1,\"mode\":\"gate\"}", id);
    sb_agent_opts_t cfg = test_config();
    cfg.lease_ms = 1000;
    cfg.agent_id = "a-1-aa";
    probe_t p = {.lock = PTHREAD_MUTEX_INITIALIZER}, q = {.lock = PTHREAD_MUTEX_INITIALIZER};
    sb_agent_t *a = start_agent_blocked(&cfg, &p);
    enqueue_held(r, "agent:rebalance:processing:d-9-zz", dead, 1);
    EXPECT_OK(r, "ZADD agent:rebalance:leases 1 d-9-zz");
    cfg.agent_id = "b-2-bb";
    sb_agent_t *b = start_agent(&cfg, &q);
    free(wait_terminal(r, dead[0]));
    wait_checks(b, 12); /* about 4 s: 12 looks at 333 ms, and scans every second */
    sb_key(key, sizeof key, SB_KEY_PROCESSING, "rebalance", "a-1-aa");
    assert_int_equal(llen(r, key), 1);
    atomic_store(&p.release, 1);
    char *st = wait_terminal(r, id);
    assert_string_equal(st, "done");
    free(st);
    sb_agent_wait(b, 5);
    sb_agent_wait(a, 5); /* its stats are final once its workers have stopped */
    sb_agent_stats_t sa, sb;
    sb_agent_stats(a, &sa);
    sb_agent_stats(b, &sb);
    assert_int_equal(sa.done, 1);
    assert_int_equal(sb.recovered, 1); /* the dead agent's job only */
    assert_int_equal(p.nseen, 1);
    assert_int_equal(q.nseen, 1);
    sb_agent_free(b);
    sb_agent_free(a);
    redisReply *rep = sb_redis_cmd(r, "ZCARD agent:rebalance:leases");
    assert_int_equal(rep->integer, 0); /* a clean stop drops the entry */
    freeReplyObject(rep);
    sb_redis_free(r);
}

/* The raw text of key, which must be valid UTF-8 (caller frees). */
static char *get_utf8(sb_redis_t *r, const char *key) {
    redisReply *rep = sb_redis_cmd(r, "GET %s", key);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_true(sb_utf8_valid(rep->str, rep->len));
    char *s = strdup(rep->str);
    freeReplyObject(rep);
    return s;
}

/* Nothing that is not UTF-8 is stored or published: a result that is not fails the attempt
 * (and the job, once attempts run out); error texts are repaired with U+FFFD. */
static void test_output_that_is_not_utf8(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv), *sub = sb_test_redis_client(&srv);
    redisReply *rep = sb_redis_cmd(sub, "SUBSCRIBE agent:rebalance:status");
    freeReplyObject(rep);
    char ids[2][SB_JOB_ID_LEN], key[SB_KEY_LEN];
    enqueue(r, "{\"n\":1,\"mode\":\"latin1\"}", ids[0]);
    enqueue(r, "{\"n\":2,\"mode\":\"bad_error\"}", ids[1]);
    sb_agent_opts_t cfg = test_config();
    probe_t p = {.lock = PTHREAD_MUTEX_INITIALIZER};
    sb_agent_t *a = start_agent(&cfg, &p);
    const char *want[2][2] = {{"handler output is not valid UTF-8", NULL},
                              {"bad \xef\xbf\xbd\xef\xbf\xbd bytes", "truncated \xef\xbf\xbd"}};
    for (int i = 0; i < 2; i++) {
        char *st = wait_terminal(r, ids[i]);
        assert_string_equal(st, "error");
        free(st);
        char *json = get_utf8(r, sb_key(key, sizeof key, SB_KEY_JOB, "rebalance", ids[i]));
        cJSON *rec = cJSON_Parse(json);
        assert_string_equal(sb_json_str(rec, "error"), want[i][0]);
        if (want[i][1]) assert_string_equal(sb_json_str(rec, "details"), want[i][1]);
        assert_null(cJSON_GetObjectItem(rec, "result"));
        cJSON_Delete(rec);
        free(json);
        sb_metrics_key(key, sizeof key, "rebalance", "failed", ids[i]);
        free(get_utf8(r, key));
    }
    double attempts = 0;
    char *json = NULL;
    assert_int_equal(sb_job_get(r, "rebalance", ids[0], &json), 0);
    cJSON *rec = cJSON_Parse(json);
    sb_json_num(rec, "attempts", &attempts);
    assert_int_equal((int)attempts, 3); /* each attempt failed */
    cJSON_Delete(rec);
    free(json);
    sb_agent_wait(a, 5);
    sb_agent_free(a);
    /* every status message published was UTF-8 (two jobs: 3 + 1 processing, 2 errors, and
     * the retries' processing updates) */
    int n = 0, timed_out = 0;
    while ((rep = sb_redis_read_wait(sub, 200, &timed_out)) != NULL) {
        assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
        assert_true(sb_utf8_valid(rep->element[2]->str, rep->element[2]->len));
        freeReplyObject(rep);
        n++;
    }
    assert_true(timed_out);
    assert_true(n >= 6);
    sb_redis_free(sub);
    sb_redis_free(r);
}

/* ---- the general queue library ----------------------------------------------------------- */

typedef struct {
    int handled[8];
    int n;
    int requeue_first; /* requeue the first item once */
} poll_probe_t;

static sb_queue_verdict_t poll_handler(const cJSON *item, void *ctx) {
    poll_probe_t *p = ctx;
    double v = -1;
    sb_json_num(sb_json_obj(item, "payload"), "v", &v);
    if (p->requeue_first) {
        p->requeue_first = 0;
        return SB_QUEUE_REQUEUE;
    }
    if (p->n < 8) p->handled[p->n++] = (int)v;
    return SB_QUEUE_HANDLED;
}

static void test_queue_library(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    char id[SB_JOB_ID_LEN];
    for (int v = 0; v < 3; v++) {
        char json[32];
        snprintf(json, sizeof json, "{\"v\":%d}", v);
        cJSON *pl = cJSON_Parse(json);
        assert_int_equal(sb_queue_enqueue(r, "queue:test", pl, id), 0);
        cJSON_Delete(pl);
    }
    cJSON *item = NULL;
    assert_int_equal(sb_queue_dequeue(r, "queue:test", 1, &item), 0);
    double v;
    assert_int_equal(sb_json_num(sb_json_obj(item, "payload"), "v", &v), 0);
    assert_int_equal((int)v, 0); /* FIFO */
    assert_non_null(sb_json_str(item, "id"));
    assert_non_null(sb_json_str(item, "enqueuedAt"));
    cJSON_Delete(item);
    /* polling worker: v=1 is requeued once (goes behind v=2), then everything is handled */
    poll_probe_t pp = {.requeue_first = 1};
    sb_poll_opts_t o = {.interval_ms = 10, .max_interval_ms = 20, .backoff = 1.5};
    sb_poller_t *poller = sb_poller_start(&srv.addr, "queue:test", &o, poll_handler, &pp);
    assert_non_null(poller);
    int64_t deadline = sb_mono_ms() + 10000;
    while (llen(r, "queue:test") > 0 && sb_mono_ms() < deadline) sb_sleep_ms(5, NULL);
    sb_poller_stop(poller);
    assert_int_equal(pp.n, 2);
    assert_int_equal(pp.handled[0], 2);
    assert_int_equal(pp.handled[1], 1);
    assert_int_equal(sb_queue_dequeue(r, "queue:test", 1, &item), SB_ETIMEOUT);
    sb_redis_free(r);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN); /* as every hiredis user must (see redis.h) */
    if (sb_test_redis_start(&srv) != 0) {
        fprintf(stderr, "could not start redis-server\n");
        return 1;
    }
    sb_log_set_level(SB_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_enqueue_is_atomic_and_complete, setup),
        cmocka_unit_test_setup(test_fifo_retry_and_dead_letter, setup),
        cmocka_unit_test_setup(test_bad_records_are_counted_and_skipped, setup),
        cmocka_unit_test_setup(test_execution_times_stay_bounded, setup),
        cmocka_unit_test_setup(test_recovers_jobs_of_a_dead_agent, setup),
        cmocka_unit_test_setup(test_reclaims_ids_orphaned_in_its_own_list, setup),
        cmocka_unit_test_setup(test_shutdown_puts_back_unfinished_jobs, setup),
        cmocka_unit_test_setup(test_stop_mid_stream_leaves_no_job_taken, setup),
        cmocka_unit_test_setup(test_survives_redis_restart, setup),
        cmocka_unit_test_setup(test_finish_waits_out_a_busy_redis, setup),
        cmocka_unit_test_setup(test_recovery_waits_for_live_agents_after_a_restart, setup),
        cmocka_unit_test_setup(test_lapsed_lease_is_recovered_on_the_agent_clock, setup),
        cmocka_unit_test_setup(test_live_agent_keeps_a_job_longer_than_its_lease, setup),
        cmocka_unit_test_setup(test_output_that_is_not_utf8, setup),
        cmocka_unit_test_setup(test_queue_library, setup),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sb_test_redis_stop(&srv);
    return rc;
}
