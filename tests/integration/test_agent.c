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
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sb_test_expect.h"
#include "sb_test_redis.h"
#include "switchboard/agent.h"
#include "cli/settings.h"
#include "switchboard/switchboard.h"
#include "switchboard/utf8.h"

static sb_test_redis_t srv;

/* ---- helpers ----------------------------------------------------------------------------- */

/* Handler whose behaviour the payload chooses: {"mode":"ok"|"fail"|"fail_twice"|"permanent"
 * |"block"|"gate"|"latin1"|"bad_error"|"slow" (done after 10 ms)}. Records the order it saw
 * jobs in. */
typedef struct {
    pthread_mutex_t lock;
    int seen[64];
    int nseen;
    atomic_int blocked;   /* a "block" or "gate" job is running */
    atomic_int release;   /* a "gate" job may finish (done) */
} probe_t;

enum { MAX_AGENTS = 2 };

/* What a test started, kept in cmocka's state rather than on the test's stack: a failed test
 * is left by longjmp, and teardown then stops and frees what is still here, so that no agent
 * keeps running into the next test and no handler points into a stack frame that is gone. */
typedef struct {
    sb_redis_t *r;                    /* the test's client (setup connects it) */
    sb_redis_t *r2;                   /* a second client (subscriber, script runner) or NULL */
    sb_agent_t *agents[MAX_AGENTS];   /* started and not freed yet */
    int waited[MAX_AGENTS];           /* sb_agent_wait ran: it joins threads, never twice */
    probe_t probes[MAX_AGENTS];       /* agents[i]'s handler state */
    atomic_llong skip;                /* skip_clock's offset (ms) */
    sb_poller_t *poller;              /* a queue poller not stopped yet, or NULL */
    pthread_t busy;                   /* busy_script's thread, while busy_running */
    int busy_running;
    atomic_int busy_reply;            /* the reply type busy_script got (-1: none yet) */
    pthread_t killer;                 /* conn_killer's thread, while killer_running */
    int killer_running;
    atomic_int killer_stop;
    atomic_int kill_rounds;           /* conn_killer's rounds that killed a connection */
    long long spared[2];              /* client ids conn_killer leaves alone */
    void *mem;                        /* one allocation of the test, freed at teardown */
} fixture_t;

/* Setup: an empty server with default settings, a client and fresh probes. */
static int setup(void **state) {
    if (sb_test_redis_reset(&srv) != 0) return -1;
    fixture_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    for (int i = 0; i < MAX_AGENTS; i++)
        f->probes[i] = (probe_t){.lock = PTHREAD_MUTEX_INITIALIZER};
    f->r = sb_test_redis_client(&srv);
    *state = f;
    return f->r ? 0 : -1;
}

static void stop_busy_script(fixture_t *f);
static void stop_conn_killer(fixture_t *f);

/* Teardown: stops what the test left running (a failed test leaves it all), frees it, and
 * puts the server back as setup found it. */
static int teardown(void **state) {
    fixture_t *f = *state;
    if (!f) return sb_test_redis_reset(&srv);
    stop_busy_script(f);
    stop_conn_killer(f);
    for (int i = 0; i < MAX_AGENTS; i++) {
        if (f->agents[i] && !f->waited[i]) sb_agent_wait(f->agents[i], 0);
        sb_agent_free(f->agents[i]);
    }
    sb_poller_stop(f->poller);
    sb_redis_free(f->r);
    sb_redis_free(f->r2);
    free(f->mem);
    free(f);
    return sb_test_redis_reset(&srv);
}

#define WITH_FIXTURE(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

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
    return sb_query_int(r, "LLEN %s", key);
}

enum { STATUS_LEN = 32 }; /* room for any record status */

/* Job id's record status, copied into st; NULL when there is no readable record. */
static const char *record_status(sb_redis_t *r, const char *id, char st[STATUS_LEN]) {
    char *json = NULL;
    if (sb_job_get(r, "rebalance", id, &json) != SB_OK) return NULL;
    cJSON *doc = cJSON_Parse(json);
    const char *s = sb_json_str(doc, "status");
    if (s) snprintf(st, STATUS_LEN, "%s", s);
    cJSON_Delete(doc);
    free(json);
    return s ? st : NULL;
}

/* Checks that job id's record (which must exist) has status want. */
static void expect_status(sb_redis_t *r, const char *id, const char *want) {
    char st[STATUS_LEN];
    if (!record_status(r, id, st)) fail_msg("job %s has no readable record", id);
    if (strcmp(st, want) != 0) fail_msg("job %s is %s, expected %s", id, st, want);
}

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

/* Waits (bounded) until job id's record has a terminal status; fails the test if it never
 * has. */
static void wait_terminal(sb_redis_t *r, const char *id) {
    int64_t deadline = sb_mono_ms() + 15000;
    char st[STATUS_LEN];
    while (sb_mono_ms() < deadline) {
        if (record_status(r, id, st) && (!strcmp(st, "done") || !strcmp(st, "error"))) return;
        sb_sleep_ms(5, NULL);
    }
    fail_msg("job %s never finished", id);
}

/* Waits (bounded) until job id's record has a terminal status, and checks that it is want. */
static void expect_terminal(sb_redis_t *r, const char *id, const char *want) {
    wait_terminal(r, id);
    expect_status(r, id, want);
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
        assert_non_null(rep);
        if (rep->type != REDIS_REPLY_NIL) assert_int_equal(rep->type, REDIS_REPLY_STRING);
        cJSON *doc = rep->type == REDIS_REPLY_STRING ? cJSON_Parse(rep->str) : NULL;
        const char *hb = sb_json_str(doc, "last_heartbeat");
        int changed = hb && strcmp(hb, prev) != 0;
        if (changed) snprintf(prev, len, "%s", hb);
        cJSON_Delete(doc);
        freeReplyObject(rep);
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

static sb_handler_rc_t probe_handler(const sb_job_t *job, int attempt, const atomic_int *cancel,
                                     sb_handler_out_t *out, void *user) {
    probe_t *p = user;
    const char *mode = sb_json_str(job->payload, "mode");
    double n = -1;
    sb_json_num(job->payload, "n", &n);
    pthread_mutex_lock(&p->lock);
    if (p->nseen < 64) p->seen[p->nseen++] = (int)n;
    pthread_mutex_unlock(&p->lock);
    if (mode && !strcmp(mode, "slow")) sb_sleep_ms(10, NULL);
    if (!mode || !strcmp(mode, "ok") || !strcmp(mode, "slow")) {
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

/* The slot of agent a in f (it must be there). */
static int agent_slot(const fixture_t *f, const sb_agent_t *a) {
    for (int i = 0; i < MAX_AGENTS; i++)
        if (f->agents[i] == a) return i;
    fail_msg("agent not in the fixture");
    return -1;
}

/* Starts an agent in f's first free slot; its handler's state is f->probes[slot]. */
static sb_agent_t *start_agent(fixture_t *f, const sb_agent_opts_t *cfg) {
    char err[128];
    int i = agent_slot(f, NULL);
    f->agents[i] = sb_agent_create(&srv.addr, cfg, probe_handler, &f->probes[i], err, sizeof err);
    assert_non_null(f->agents[i]);
    f->waited[i] = 0;
    assert_int_equal(sb_agent_start(f->agents[i]), 0);
    return f->agents[i];
}

/* Starts an agent and waits (bounded) until its handler runs a "block" or "gate" job. */
static sb_agent_t *start_agent_blocked(fixture_t *f, const sb_agent_opts_t *cfg) {
    sb_agent_t *a = start_agent(f, cfg);
    probe_t *p = &f->probes[agent_slot(f, a)];
    int64_t deadline = sb_mono_ms() + 10000;
    while (!atomic_load(&p->blocked) && sb_mono_ms() < deadline) sb_sleep_ms(5, NULL);
    assert_true(atomic_load(&p->blocked));
    return a;
}

/* sb_agent_wait, noted in f so that teardown does not wait (join) again. */
static void wait_agent(fixture_t *f, sb_agent_t *a, int grace_s) {
    int i = agent_slot(f, a);
    sb_agent_wait(a, grace_s);
    f->waited[i] = 1;
}

/* Waits for the agent (grace 5 s) unless done already, and frees it. */
static void free_agent(fixture_t *f, sb_agent_t *a) {
    int i = agent_slot(f, a);
    if (!f->waited[i]) sb_agent_wait(a, 5);
    sb_agent_free(a);
    f->agents[i] = NULL;
    f->waited[i] = 0;
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
        redisReply *rep = sb_expect_reply(r, REDIS_REPLY_STRING, "INFO server");
        const char *s = strstr(rep->str, "uptime_in_seconds:");
        up = s ? atol(s + strlen("uptime_in_seconds:")) : -1;
        freeReplyObject(rep);
        if (up < secs) sb_sleep_ms(50, NULL);
    }
    assert_true(up >= secs);
}

/* Enqueues n jobs and moves each into list, as an agent's take would (the queue must hold
 * nothing else). */
static void enqueue_held(sb_redis_t *r, const char *list, char (*ids)[SB_JOB_ID_LEN], int n) {
    for (int i = 0; i < n; i++) {
        enqueue(r, "{\"n\":1}", ids[i]);
        sb_expect_str(r, ids[i], "LMOVE agent:rebalance:jobs %s RIGHT LEFT", list);
    }
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_enqueue_is_atomic_and_complete(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    char id[SB_JOB_ID_LEN];
    enqueue(r, "{\"amount\":5}", id);
    assert_true(sb_job_id_valid(id));
    assert_int_equal(llen(r, "agent:rebalance:jobs"), 1);
    expect_status(r, id, "queued");
    char key[SB_KEY_LEN];
    long long ttl = sb_query_int(r, "TTL %s", sb_key(key, sizeof key, SB_KEY_JOB, "rebalance", id));
    assert_true(ttl > 86000 && ttl <= 86400);
    sb_expect_type(r, REDIS_REPLY_STRING, "ZSCORE agent:rebalance:user:PK1 %s", id);
    /* a key of the wrong type makes the transaction fail: the caller is told */
    sb_expect_int(r, 1, "DEL agent:rebalance:jobs");
    sb_expect_ok(r, "SET agent:rebalance:jobs notalist");
    cJSON *payload = cJSON_Parse("{}");
    sb_user_t u = {.public_key = "PK1"};
    char err[128];
    int rc = sb_job_enqueue(r, "rebalance", &u, payload, id, err, sizeof err);
    cJSON_Delete(payload);
    assert_int_not_equal(rc, 0);
    /* Redis gone: a clear error, not a crash */
    sb_redis_disconnect(r);
    payload = cJSON_Parse("{}");
    rc = sb_job_enqueue(r, "rebalance", &u, payload, id, err, sizeof err);
    cJSON_Delete(payload);
    assert_int_equal(rc, SB_EREDIS);
}

static void test_fifo_retry_and_dead_letter(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    char ids[6][SB_JOB_ID_LEN];
    const char *payloads[] = {"{\"n\":0}", "{\"n\":1}", "{\"n\":2,\"mode\":\"fail_twice\"}",
                              "{\"n\":3,\"mode\":\"fail\"}", "{\"n\":4,\"mode\":\"permanent\"}",
                              "{\"n\":5}"};
    for (int i = 0; i < 6; i++) enqueue(r, payloads[i], ids[i]);
    sb_agent_opts_t cfg = test_config();
    sb_agent_t *a = start_agent(f, &cfg);
    probe_t *p = &f->probes[0];
    const char *want[] = {"done", "done", "done", "error", "error", "done"};
    for (int i = 0; i < 6; i++) {
        expect_terminal(r, ids[i], want[i]);
    }
    /* FIFO with one worker: first attempts in enqueue order */
    for (int i = 0; i < 3; i++) assert_int_equal(p->seen[i], i);
    /* dead letters: the retried-out job and the permanent failure, nothing else */
    assert_int_equal(llen(r, "agent:rebalance:dead"), 2);
    char *json = NULL;
    assert_int_equal(sb_job_get(r, "rebalance", ids[3], &json), 0);
    cJSON *rec = cJSON_Parse(json);
    free(json);
    double attempts = 0;
    sb_json_num(rec, "attempts", &attempts);
    char error[64];
    snprintf(error, sizeof error, "%s", sb_json_str(rec, "error") ? sb_json_str(rec, "error") : "");
    cJSON_Delete(rec);
    assert_int_equal((int)attempts, 3);
    assert_string_equal(error, "boom 3");
    assert_int_equal(sb_job_get(r, "rebalance", ids[4], &json), 0);
    rec = cJSON_Parse(json);
    free(json);
    attempts = 0;
    sb_json_num(rec, "attempts", &attempts);
    cJSON_Delete(rec);
    assert_int_equal((int)attempts, 1); /* permanent: no retry */
    /* failure stored under metrics, execution times recorded, counters */
    char key[256];
    sb_metrics_key(key, sizeof key, "rebalance", "failed", ids[3]);
    sb_expect_int(r, 1, "EXISTS %s", key);
    sb_expect_int(r, 4, "ZCARD metrics:agent:rebalance:execution_times");
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
    free_agent(f, a);
    /* nothing left in any processing list, presence removed */
    sb_expect_len(r, 0, "KEYS agent:rebalance:processing:*");
    sb_expect_len(r, 0, "KEYS agent:online:*");
}

static void test_bad_records_are_counted_and_skipped(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    const char *cmds[][2] = {{"1-badjson", "{not json"},
                             {"2-nouser", "{\"jobId\":\"2-nouser\",\"payload\":{}}"}};
    for (int i = 0; i < 2; i++) {
        sb_expect_ok(r, "SET agent:rebalance:job:%s %s", cmds[i][0], cmds[i][1]);
        sb_expect_int(r, i + 1, "LPUSH agent:rebalance:jobs %s", cmds[i][0]);
    }
    sb_expect_int(r, 3, "LPUSH agent:rebalance:jobs 3-expired");
    char longid[200];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    sb_expect_int(r, 4, "LPUSH agent:rebalance:jobs %s", longid);
    /* a record key of another type: the take script reads it with pcall */
    sb_expect_int(r, 1, "HSET agent:rebalance:job:4-hash x y");
    sb_expect_int(r, 5, "LPUSH agent:rebalance:jobs 4-hash");
    char good[SB_JOB_ID_LEN];
    enqueue(r, "{\"n\":7}", good);
    sb_agent_opts_t cfg = test_config();
    sb_agent_t *a = start_agent(f, &cfg);
    expect_terminal(r, good, "done");
    wait_llen(r, "agent:rebalance:dead", 3); /* the three unreadable records */
    /* the same once the queue is empty: the id comes from BLMOVE, the record from a GET */
    sb_expect_int(r, 1, "SADD agent:rebalance:job:5-set x");
    sb_expect_type(r, REDIS_REPLY_INTEGER, "LPUSH agent:rebalance:jobs 5-set");
    wait_llen(r, "agent:rebalance:dead", 4);
    sb_agent_stats_t stats;
    sb_agent_stats(a, &stats);
    assert_int_equal(stats.bad_records, 6);
    sb_expect_len(r, 0, "KEYS agent:rebalance:processing:*"); /* nothing stuck, not even the
                                                                 over-long id */
    free_agent(f, a);
}

/* The execution-time sample stays bounded: past the bound by 10 % the excess is evicted. */
static void test_execution_times_stay_bounded(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    sb_batch_t *b = sb_batch_create();
    int extra = SB_METRICS_EXEC_MAX + SB_METRICS_EXEC_MAX / 10, added = 0;
    for (int i = 0; i < extra; i++)
        added += sb_batch_add(b, "ZADD metrics:agent:rebalance:execution_times %d old-%d",
                              i % 500, i) == 0;
    redisReply **replies = calloc(sb_batch_count(b), sizeof *replies);
    int rc = sb_redis_pipeline(r, b, replies);
    int ints = 0;
    for (size_t i = 0; rc == 0 && i < sb_batch_count(b); i++)
        ints += replies[i] && replies[i]->type == REDIS_REPLY_INTEGER && replies[i]->integer == 1;
    sb_replies_free(replies, sb_batch_count(b));
    free(replies);
    sb_batch_free(b);
    assert_int_equal(added, extra);
    assert_int_equal(rc, 0);
    assert_int_equal(ints, extra);
    char id[SB_JOB_ID_LEN];
    enqueue(r, "{\"n\":1}", id);
    sb_agent_opts_t cfg = test_config();
    sb_agent_t *a = start_agent(f, &cfg);
    wait_terminal(r, id);
    sb_expect_int(r, SB_METRICS_EXEC_MAX, "ZCARD metrics:agent:rebalance:execution_times");
    assert_true(sb_query_int(r, "TTL metrics:agent:rebalance:execution_times") > 0);
    free_agent(f, a);
}

static void test_recovers_jobs_of_a_dead_agent(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    char ids[3][SB_JOB_ID_LEN];
    for (int i = 0; i < 3; i++) enqueue(r, "{\"n\":1}", ids[i]);
    /* a "crashed" agent took all three: they sit in its processing list, no presence key */
    for (int i = 0; i < 3; i++)
        sb_expect_str(r, ids[i], "LMOVE agent:rebalance:jobs "
                                 "agent:rebalance:processing:dead-1-aa RIGHT LEFT");
    /* and a live one (presence present) holds another: it must not be touched */
    sb_expect_ok(r, "SET agent:online:alive-2-bb {} EX 60");
    sb_expect_int(r, 1, "LPUSH agent:rebalance:processing:alive-2-bb 9-keep");
    sb_agent_opts_t cfg = test_config();
    sb_agent_t *a = start_agent(f, &cfg);
    for (int i = 0; i < 3; i++) {
        expect_terminal(r, ids[i], "done");
    }
    sb_agent_stats_t stats;
    sb_agent_stats(a, &stats);
    assert_int_equal(stats.recovered, 3);
    assert_int_equal(llen(r, "agent:rebalance:processing:dead-1-aa"), 0);
    assert_int_equal(llen(r, "agent:rebalance:processing:alive-2-bb"), 1);
    free_agent(f, a);
}

/* 1 if job id's history holds an entry of status st. */
static int history_has(sb_redis_t *r, const char *id, const char *st) {
    redisReply *rep = sb_redis_cmd(r, "LRANGE agent:rebalance:hist:%s 0 -1", id);
    assert_non_null(rep);
    int found = 0;
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i + 3 < rep->elements; i += 4)
        found |= !strcmp(rep->element[i]->str, st);
    freeReplyObject(rep);
    return found;
}

/* Runs one job to its end (the agent must be idle) and checks its history says processing. */
static void run_one(sb_redis_t *r, char id[SB_JOB_ID_LEN], int want_processing) {
    enqueue(r, "{}", id);
    expect_terminal(r, id, "done");
    if (want_processing) assert_true(history_has(r, id, "processing"));
}

/* The `processing` update, whose reply is read only with the finish, goes by SHA1 once the
 * connection has loaded it (EVAL once per connection, not per job), and after a SCRIPT FLUSH
 * the update is loaded again with the next job. */
static void test_update_by_sha1_and_after_script_flush(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    sb_agent_opts_t cfg = test_config();
    sb_agent_t *a = start_agent(f, &cfg);
    char id[SB_JOB_ID_LEN];
    run_one(r, id, 1);
    sb_expect_ok(r, "CONFIG RESETSTAT");
    for (int i = 0; i < 5; i++) run_one(r, id, 1);
    redisReply *info = sb_redis_cmd(r, "INFO commandstats");
    assert_non_null(info);
    assert_null(strstr(info->str, "cmdstat_eval:")); /* EVALSHA only */
    freeReplyObject(info);
    sb_expect_int(r, 6, "XLEN agent:stream:job.completed"); /* AUDIT_EVENTS defaults to on */
    sb_expect_ok(r, "SCRIPT FLUSH");
    run_one(r, id, 0); /* its update may be refused (NOSCRIPT): the job still ends done */
    wait_counted(a, 7, 0);
    run_one(r, id, 1);
    run_one(r, id, 1);
    free_agent(f, a);
}

/* Group commit: 8 workers on a full queue share script calls (a worker alone spends two a job:
 * its processing update and its finish), and every job still ends done with its history in
 * order: queued, processing, done. */
static void test_workers_share_script_calls(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    enum { N = 400 };
    char(*ids)[SB_JOB_ID_LEN] = f->mem = calloc(N, SB_JOB_ID_LEN);
    assert_non_null(ids);
    for (int i = 0; i < N; i++) enqueue(r, "{\"n\":1}", ids[i]);
    sb_expect_ok(r, "CONFIG RESETSTAT");
    sb_agent_opts_t cfg = test_config();
    cfg.concurrency = 8;
    sb_agent_t *a = start_agent(f, &cfg);
    wait_counted(a, N, 0);
    sb_agent_stats_t st;
    sb_agent_stats(a, &st);
    assert_int_equal(st.done, N);
    long long calls = sb_cmdstat_calls(r, "evalsha") + sb_cmdstat_calls(r, "eval");
    for (int i = 0; i < N; i++) {
        expect_status(r, ids[i], "done");
        redisReply *h =
            sb_expect_reply(r, REDIS_REPLY_ARRAY, "LRANGE agent:rebalance:hist:%s 0 -1", ids[i]);
        int ok = h->elements == 12 && !strcmp(h->element[0]->str, "queued") &&
                 !strcmp(h->element[4]->str, "processing") && !strcmp(h->element[8]->str, "done");
        freeReplyObject(h);
        if (!ok) fail_msg("job %s: history is not queued, processing, done", ids[i]);
    }
    /* one a call: 2N, plus heartbeats and lease renewals; grouped: at most 3/4 of that */
    if (calls * 4 > 2 * N * 3)
        fail_msg("%lld script calls for %d jobs (%d updates and finishes): no group commit",
                 calls, N, 2 * N);
    free_agent(f, a);
}

/* Kills every client connection but the test's two (f->spared) every 1.1 s, until told to
 * stop: the agent's workers, its group commit and its maintenance connection all lose theirs
 * in the middle of their calls. (More often, and the agent's connections count as flapping:
 * they back off up to 5 s before reconnecting, redis.c.) */
static void *conn_killer(void *arg) {
    fixture_t *f = arg;
    while (!atomic_load(&f->killer_stop)) {
        int killed = 0;
        redisReply *list = sb_redis_cmd(f->r2, "CLIENT LIST TYPE normal");
        for (const char *p = list && list->type == REDIS_REPLY_STRING ? list->str : NULL; p;
             p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
            long long id = strncmp(p, "id=", 3) == 0 ? atoll(p + 3) : -1;
            if (id < 0 || id == f->spared[0] || id == f->spared[1]) continue;
            redisReply *rep = sb_redis_cmd(f->r2, "CLIENT KILL ID %lld", id);
            killed |= rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
            if (rep) freeReplyObject(rep);
        }
        if (list) freeReplyObject(list);
        atomic_fetch_add(&f->kill_rounds, killed);
        sb_sleep_ms(1100, &f->killer_stop);
    }
    return NULL;
}

static void start_conn_killer(fixture_t *f) {
    f->r2 = sb_test_redis_client(&srv);
    assert_non_null(f->r2);
    f->spared[0] = sb_query_int(f->r, "CLIENT ID");
    f->spared[1] = sb_query_int(f->r2, "CLIENT ID");
    atomic_store(&f->killer_stop, 0);
    assert_int_equal(pthread_create(&f->killer, NULL, conn_killer, f), 0);
    f->killer_running = 1;
}

static void stop_conn_killer(fixture_t *f) {
    if (!f->killer_running) return;
    atomic_store(&f->killer_stop, 1);
    pthread_join(f->killer, NULL);
    f->killer_running = 0;
}

/* Connections lost in the middle of group calls (resent whole once reconnected) and of takes:
 * every job still ends done, its finish written once (one `done` in its history), and nothing
 * is left in the queue, the processing list or the dead list. */
static void test_connections_killed_mid_stream(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    enum { N = 4000 };
    char(*ids)[SB_JOB_ID_LEN] = f->mem = calloc(N, SB_JOB_ID_LEN);
    assert_non_null(ids);
    for (int i = 0; i < N; i++) enqueue(r, "{\"n\":1,\"mode\":\"slow\"}", ids[i]);
    sb_agent_opts_t cfg = test_config();
    cfg.concurrency = 8;
    sb_agent_t *a = start_agent(f, &cfg);
    wait_terminal(r, ids[0]); /* the agent's connections are up */
    start_conn_killer(f);
    for (int i = 0; i < N; i++) wait_terminal(r, ids[i]);
    stop_conn_killer(f);
    if (atomic_load(&f->kill_rounds) < 3) /* the stream ran through kills, not around them */
        fail_msg("connections killed in %d rounds only while %d jobs ran",
                 atomic_load(&f->kill_rounds), N);
    for (int i = 0; i < N; i++) {
        expect_status(r, ids[i], "done");
        redisReply *h =
            sb_expect_reply(r, REDIS_REPLY_ARRAY, "LRANGE agent:rebalance:hist:%s 0 -1", ids[i]);
        int done = 0;
        for (size_t e = 0; e < h->elements; e += 4) done += !strcmp(h->element[e]->str, "done");
        freeReplyObject(h);
        if (done != 1) fail_msg("job %s: %d done entries in its history", ids[i], done);
    }
    char key[SB_KEY_LEN];
    wait_llen(r, sb_key(key, sizeof key, SB_KEY_PROCESSING, "rebalance", sb_agent_id(a)), 0);
    assert_int_equal(llen(r, "agent:rebalance:jobs"), 0);
    assert_int_equal(llen(r, "agent:rebalance:dead"), 0);
    free_agent(f, a);
}

/* AUDIT_EVENTS=0 (no_audit): jobs finish without job.completed entries. */
static void test_no_audit_events(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    sb_agent_opts_t cfg = test_config();
    cfg.no_audit = 1;
    sb_agent_t *a = start_agent(f, &cfg);
    char id[SB_JOB_ID_LEN];
    run_one(r, id, 1);
    run_one(r, id, 1);
    sb_expect_int(r, 0, "EXISTS agent:stream:job.completed");
    free_agent(f, a);
}

/* Redis ran a take and died before its reply reached us: the id sits in our own processing
 * list and no worker holds it. The agent must notice and put it back, or it is lost. */
static void test_reclaims_ids_orphaned_in_its_own_list(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    sb_agent_opts_t cfg = test_config();
    sb_agent_t *a = start_agent(f, &cfg);
    char id[SB_JOB_ID_LEN], key[SB_KEY_LEN], rkey[SB_KEY_LEN];
    /* the record, and its id where a take would have put it: in the agent's own list */
    assert_int_equal(sb_job_id_new(id, NULL), 0);
    sb_user_t u = {.public_key = "PK1"};
    char *json = sb_job_record_text("rebalance", id, &u, NULL, sb_now_ms());
    f->mem = json; /* freed at teardown */
    sb_expect_ok(r, "SET %s %s", sb_key(rkey, sizeof rkey, SB_KEY_JOB, "rebalance", id), json);
    sb_expect_int(r, 1, "LPUSH %s %s",
                  sb_key(key, sizeof key, SB_KEY_PROCESSING, "rebalance", sb_agent_id(a)), id);
    expect_terminal(r, id, "done");
    sb_agent_stats_t stats;
    sb_agent_stats(a, &stats);
    assert_int_equal(stats.recovered, 1);
    assert_int_equal(llen(r, key), 0);
    free_agent(f, a);
}

static void test_shutdown_puts_back_unfinished_jobs(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    char id[SB_JOB_ID_LEN];
    enqueue(r, "{\"n\":1,\"mode\":\"block\"}", id);
    sb_agent_opts_t cfg = test_config();
    sb_agent_t *a = start_agent_blocked(f, &cfg);
    wait_agent(f, a, 0); /* no grace: cancel at once */
    sb_agent_stats_t stats;
    sb_agent_stats(a, &stats);
    free_agent(f, a);
    assert_int_equal(stats.requeued, 1);
    assert_int_equal(llen(r, "agent:rebalance:jobs"), 1);
    expect_status(r, id, "queued");
}

/* A busy worker takes its next job along with each finish; stopping in the middle of a stream
 * leaves every job done or back on the queue untouched, none in a processing list. */
static void test_stop_mid_stream_leaves_no_job_taken(void **state) {
    enum { N = 400 };
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    char (*ids)[SB_JOB_ID_LEN] = f->mem = calloc(N, SB_JOB_ID_LEN);
    assert_non_null(ids);
    for (int i = 0; i < N; i++) enqueue(r, "{\"n\":1}", ids[i]);
    sb_agent_opts_t cfg = test_config();
    cfg.concurrency = 4;
    sb_agent_t *a = start_agent(f, &cfg);
    sb_agent_stats_t stats = {0};
    int64_t deadline = sb_mono_ms() + 15000;
    while (stats.done < 50 && sb_mono_ms() < deadline) {
        sb_sleep_ms(1, NULL);
        sb_agent_stats(a, &stats);
    }
    wait_agent(f, a, 5);
    sb_agent_stats(a, &stats);
    free_agent(f, a);
    assert_true(stats.done >= 50);
    int done = 0, queued = 0;
    for (int i = 0; i < N; i++) {
        char st[STATUS_LEN];
        if (!record_status(r, ids[i], st)) fail_msg("job %s has no record", ids[i]);
        if (!strcmp(st, "done")) done++;
        else if (!strcmp(st, "queued")) queued++;
        else fail_msg("job %s is %s after the agent stopped", ids[i], st);
    }
    assert_int_equal(done, (int)stats.done);
    assert_int_equal(done + queued, N);
    assert_int_equal(llen(r, "agent:rebalance:jobs"), queued);
    redisReply *keys = sb_expect_reply(r, REDIS_REPLY_ARRAY, "KEYS agent:rebalance:processing:*");
    long long held = 0;
    for (size_t i = 0; i < keys->elements; i++) held += llen(r, keys->element[i]->str);
    freeReplyObject(keys);
    assert_int_equal(held, 0);
}

static void test_survives_redis_restart(void **state) {
    fixture_t *f = *state;
    sb_agent_opts_t cfg = test_config();
    sb_agent_t *a = start_agent(f, &cfg);
    char id[SB_JOB_ID_LEN];
    enqueue(f->r, "{\"n\":1}", id);
    wait_terminal(f->r, id);
    sb_redis_free(f->r);
    f->r = NULL;
    assert_int_equal(sb_test_redis_restart(&srv), 0); /* no persistence: a fresh server */
    f->r = sb_test_redis_client(&srv);
    /* the first job's record went with the old server (the agent may already have written
     * its presence and leases to the new one, so the keyspace need not be empty) */
    sb_expect_int(f->r, 0, "EXISTS agent:rebalance:job:%s", id);
    enqueue(f->r, "{\"n\":2}", id);
    expect_terminal(f->r, id, "done");
    free_agent(f, a);
}

/* Redis refuses the finish for now (BUSY: another script is running; LOADING after a restart
 * is the same case): the agent sends it again once Redis can run it, and the job ends done —
 * not left in the processing list to be run a second time, nor failed. The script runs on
 * f->r2 in a thread of its own until SCRIPT KILL; its reply (an error) is kept for the test. */
static void *busy_script(void *arg) {
    fixture_t *f = arg;
    redisReply *rep = sb_redis_cmd(f->r2, "EVAL %s 0", "while true do end");
    atomic_store(&f->busy_reply, rep ? rep->type : 0);
    if (rep) freeReplyObject(rep);
    return NULL;
}

static void start_busy_script(fixture_t *f) {
    f->r2 = sb_test_redis_client(&srv);
    assert_non_null(f->r2);
    atomic_store(&f->busy_reply, -1);
    assert_int_equal(pthread_create(&f->busy, NULL, busy_script, f), 0);
    f->busy_running = 1;
}

/* Kills the script (if it still runs) and joins its thread; nothing to do when none runs. */
static void stop_busy_script(fixture_t *f) {
    if (!f->busy_running) return;
    sb_redis_t *k = sb_test_redis_client(&srv);
    redisReply *rep = k ? sb_redis_cmd(k, "SCRIPT KILL") : NULL; /* OK, or NOTBUSY */
    if (rep) freeReplyObject(rep);
    sb_redis_free(k);
    pthread_join(f->busy, NULL);
    f->busy_running = 0;
}

/* Redis answers BUSY while the script runs (PING's reply is either PONG or that error). */
static int redis_busy(sb_redis_t *r) {
    redisReply *rep = sb_redis_cmd(r, "PING");
    assert_non_null(rep);
    int busy = rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "BUSY", 4);
    int pong = rep->type == REDIS_REPLY_STATUS && !strcmp(rep->str, "PONG");
    freeReplyObject(rep);
    assert_true(busy || pong);
    return busy;
}

/* Waits (bounded) until the agent has met a refusal of Redis (sb_reply_is_transient) and is
 * waiting it out. */
static void wait_refused(sb_agent_t *a) {
    sb_agent_stats_t stats = {0};
    int64_t deadline = sb_mono_ms() + 10000;
    while (stats.refused == 0 && sb_mono_ms() < deadline) {
        sb_sleep_ms(5, NULL);
        sb_agent_stats(a, &stats);
    }
    assert_true(stats.refused > 0);
}

/* Job id, refused for a while, ends done by its first finish: counted once, never recovered,
 * nothing left in the agent's processing list. Frees the agent. */
static void expect_done_after_refusals(fixture_t *f, sb_agent_t *a, const char *id) {
    sb_redis_t *r = f->r;
    sb_agent_stats_t stats;
    expect_terminal(r, id, "done");
    wait_counted(a, 1, 0);
    sb_agent_stats(a, &stats);
    assert_int_equal(stats.done, 1);
    assert_int_equal(stats.recovered, 0);
    char key[SB_KEY_LEN];
    assert_int_equal(llen(r, sb_key(key, sizeof key, SB_KEY_PROCESSING, "rebalance",
                                    sb_agent_id(a))), 0);
    free_agent(f, a);
}

/* Redis refuses writes inside the script (READONLY: the master was demoted; OOM and MASTERDOWN
 * are the same case): the refusal comes back as the whole group call's error, which the agent
 * waits out and sends again, and the job ends done — not left in the processing list, to be
 * run a second time once recovered. (The refusal is made here by pointing the server at a
 * master on a port where nothing listens.) */
static void test_finish_waits_out_a_read_only_redis(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    char id[SB_JOB_ID_LEN];
    enqueue(r, "{\"n\":1,\"mode\":\"gate\"}", id);
    sb_agent_opts_t cfg = test_config();
    sb_agent_t *a = start_agent_blocked(f, &cfg);
    sb_expect_ok(r, "REPLICAOF 127.0.0.1 1");
    atomic_store(&f->probes[0].release, 1); /* the handler returns: the finish meets READONLY */
    wait_refused(a);
    expect_status(r, id, "processing"); /* nothing of the finish was written */
    sb_expect_ok(r, "REPLICAOF NO ONE");
    expect_done_after_refusals(f, a, id);
}

static void test_finish_waits_out_a_busy_redis(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    sb_expect_ok(r, "CONFIG SET busy-reply-threshold 50");
    char id[SB_JOB_ID_LEN];
    enqueue(r, "{\"n\":1,\"mode\":\"gate\"}", id);
    sb_agent_opts_t cfg = test_config();
    sb_agent_t *a = start_agent_blocked(f, &cfg);
    int64_t deadline = sb_mono_ms() + 10000;
    start_busy_script(f);
    while (!redis_busy(r) && sb_mono_ms() < deadline) sb_sleep_ms(5, NULL);
    assert_true(redis_busy(r));
    atomic_store(&f->probes[0].release, 1); /* the handler returns: the finish meets BUSY */
    wait_refused(a);
    sb_expect_ok(r, "SCRIPT KILL");
    stop_busy_script(f);
    assert_int_equal(atomic_load(&f->busy_reply), REDIS_REPLY_ERROR); /* killed */
    expect_done_after_refusals(f, a, id);
}

/* Redis restarts from disk after an outage longer than the presence TTL: the presence key of an
 * agent that is alive (and still running its jobs) is gone until its next heartbeat. The agents
 * that reconnect give it a TTL to heartbeat before they recover its jobs. */
static void test_recovery_waits_for_live_agents_after_a_restart(void **state) {
    fixture_t *f = *state;
    const char *alive = "agent:rebalance:processing:a-2-bb";
    char ids[2][SB_JOB_ID_LEN], hb[64] = "";
    enqueue_held(f->r, alive, ids, 2);
    sb_expect_ok(f->r, "SET agent:online:a-2-bb {} EX 60");
    sb_agent_opts_t cfg = test_config();
    cfg.agent_id = "b-1-aa";
    sb_agent_t *a = start_agent(f, &cfg);
    wait_heartbeat(f->r, "b-1-aa", hb, sizeof hb);
    /* a-2-bb's key expires while Redis is down: gone when the snapshot is loaded again */
    int64_t expire_at = sb_now_ms() + 200;
    sb_expect_int(f->r, 1, "PEXPIREAT agent:online:a-2-bb %lld", (long long)expire_at);
    sb_expect_ok(f->r, "SAVE");
    sb_redis_free(f->r);
    f->r = NULL;
    kill(srv.pid, SIGSTOP); /* down (nothing answers) until the key's time has passed */
    while (sb_now_ms() <= expire_at) sb_sleep_ms(5, NULL);
    assert_int_equal(sb_test_redis_restart(&srv), 0);
    sb_redis_t *r = f->r = sb_test_redis_client(&srv);
    assert_int_equal(llen(r, alive), 2);
    sb_expect_int(r, 0, "EXISTS agent:online:a-2-bb");
    wait_heartbeat(r, "b-1-aa", hb, sizeof hb); /* b is back; its scans start now */
    sb_expect_ok(r, "SET agent:online:a-2-bb {} EX 60"); /* a's next heartbeat lands */
    for (int i = 0; i < 2; i++) wait_heartbeat(r, "b-1-aa", hb, sizeof hb);
    sb_agent_stats_t stats;
    sb_agent_stats(a, &stats);
    assert_int_equal(stats.recovered, 0);
    assert_int_equal(llen(r, alive), 2);
    /* a really dies: its jobs are recovered once the grace is over */
    sb_expect_int(r, 1, "DEL agent:online:a-2-bb");
    for (int i = 0; i < 2; i++) wait_terminal(r, ids[i]);
    sb_agent_stats(a, &stats);
    assert_int_equal(stats.recovered, 2);
    free_agent(f, a);
}

/* The default lease is 15 s: a killed agent's jobs come back within seconds, even though its
 * presence key (TTL 300 s) still says it is online. The waits on the way follow the agent's
 * clock, which the test moves ahead: Redis was just started, so leases get a lease of grace
 * (live agents' entries may have been lost with a restart), and the lapsed lease is acted on
 * only once the clock has passed it. A live lease (even without presence) and an agent of an
 * earlier version (presence, no lease) keep their jobs. */
static void test_lapsed_lease_is_recovered_on_the_agent_clock(void **state) {
    fixture_t *f = *state;
    sb_redis_free(f->r);
    f->r = NULL;
    assert_int_equal(sb_test_redis_restart(&srv), 0); /* up for 0 s */
    sb_redis_t *r = f->r = sb_test_redis_client(&srv);
    sb_expect_len(r, 0, "KEYS *"); /* nothing saved before was loaded again */
    char dead[2][SB_JOB_ID_LEN], live[1][SB_JOB_ID_LEN], old[1][SB_JOB_ID_LEN];
    const char *k_dead = "agent:rebalance:processing:d-1-aa",
               *k_live = "agent:rebalance:processing:l-2-bb",
               *k_old = "agent:rebalance:processing:o-3-cc";
    enqueue_held(r, k_dead, dead, 2);
    enqueue_held(r, k_live, live, 1);
    enqueue_held(r, k_old, old, 1);
    sb_expect_int(r, 2, "ZADD agent:rebalance:leases 1 d-1-aa 99999999999999 l-2-bb");
    sb_expect_ok(r, "SET agent:online:d-1-aa {} EX 60"); /* killed a moment ago */
    sb_expect_ok(r, "SET agent:online:o-3-cc {} EX 60"); /* an earlier version: presence only */
    sb_agent_opts_t cfg = test_config();
    cfg.clock = skip_clock;
    cfg.clock_ctx = &f->skip;
    sb_agent_t *a = start_agent(f, &cfg);
    wait_checks(a, 1);
    assert_int_equal(llen(r, k_dead), 2); /* redis is young: a lease of grace */
    sb_agent_stats_t stats;
    sb_agent_stats(a, &stats);
    atomic_fetch_add(&f->skip, 5000); /* a renewal interval: the next lease check */
    wait_checks(a, stats.checks + 2);
    assert_int_equal(llen(r, k_dead), 2); /* still in the grace */
    atomic_fetch_add(&f->skip, 15000);
    for (int i = 0; i < 2; i++) {
        expect_terminal(r, dead[i], "done");
    }
    sb_agent_stats(a, &stats);
    assert_int_equal(stats.recovered, 2);
    sb_expect_str(r, NULL, "ZSCORE agent:rebalance:leases d-1-aa"); /* the entry goes with the
                                                                       jobs */
    wait_checks(a, stats.checks + 3); /* presence is judged too by now (3 s TTL, skipped) */
    assert_int_equal(llen(r, k_live), 1);
    assert_int_equal(llen(r, k_old), 1);
    free_agent(f, a);
}

/* An agent whose job runs for several leases keeps it: the lease is renewed by the
 * maintenance thread whatever the worker does. A second agent that looks for lapsed leases
 * every third of a lease (and recovers a really dead agent's job meanwhile) leaves it alone,
 * and the job runs and finishes once. */
static void test_live_agent_keeps_a_job_longer_than_its_lease(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    wait_uptime(r, 2); /* a 1 s lease is acted on once Redis has been up that long */
    char id[SB_JOB_ID_LEN], dead[1][SB_JOB_ID_LEN], key[SB_KEY_LEN];
    enqueue(r, "{\"n\":1,\"mode\":\"gate\"}", id);
    sb_agent_opts_t cfg = test_config();
    cfg.lease_ms = 1000;
    cfg.agent_id = "a-1-aa";
    sb_agent_t *a = start_agent_blocked(f, &cfg);
    enqueue_held(r, "agent:rebalance:processing:d-9-zz", dead, 1);
    sb_expect_int(r, 1, "ZADD agent:rebalance:leases 1 d-9-zz");
    cfg.agent_id = "b-2-bb";
    sb_agent_t *b = start_agent(f, &cfg);
    wait_terminal(r, dead[0]);
    wait_checks(b, 12); /* about 4 s: 12 looks at 333 ms, and scans every second */
    sb_key(key, sizeof key, SB_KEY_PROCESSING, "rebalance", "a-1-aa");
    assert_int_equal(llen(r, key), 1);
    atomic_store(&f->probes[0].release, 1);
    expect_terminal(r, id, "done");
    wait_agent(f, b, 5);
    wait_agent(f, a, 5); /* its stats are final once its workers have stopped */
    sb_agent_stats_t sa, sb;
    sb_agent_stats(a, &sa);
    sb_agent_stats(b, &sb);
    assert_int_equal(sa.done, 1);
    assert_int_equal(sb.recovered, 1); /* the dead agent's job only */
    assert_int_equal(f->probes[0].nseen, 1);
    assert_int_equal(f->probes[1].nseen, 1);
    free_agent(f, b);
    free_agent(f, a);
    sb_expect_int(r, 0, "ZCARD agent:rebalance:leases"); /* a clean stop drops the entry */
}

/* The raw text of key, which must be valid UTF-8 (caller frees). */
static char *get_utf8(sb_redis_t *r, const char *key) {
    redisReply *rep = sb_expect_reply(r, REDIS_REPLY_STRING, "GET %s", key);
    int valid = sb_utf8_valid(rep->str, rep->len);
    char *s = valid ? strdup(rep->str) : NULL;
    freeReplyObject(rep);
    assert_true(valid);
    return s;
}

/* Nothing that is not UTF-8 is stored or published: a result that is not fails the attempt
 * (and the job, once attempts run out); error texts are repaired with U+FFFD. */
static void test_output_that_is_not_utf8(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r, *sub = f->r2 = sb_test_redis_client(&srv);
    sb_expect_type(sub, REDIS_REPLY_ARRAY, "SUBSCRIBE agent:rebalance:status");
    char ids[2][SB_JOB_ID_LEN], key[SB_KEY_LEN];
    enqueue(r, "{\"n\":1,\"mode\":\"latin1\"}", ids[0]);
    enqueue(r, "{\"n\":2,\"mode\":\"bad_error\"}", ids[1]);
    sb_agent_opts_t cfg = test_config();
    sb_agent_t *a = start_agent(f, &cfg);
    const char *want[2][2] = {{"handler output is not valid UTF-8", NULL},
                              {"bad \xef\xbf\xbd\xef\xbf\xbd bytes", "truncated \xef\xbf\xbd"}};
    for (int i = 0; i < 2; i++) {
        expect_terminal(r, ids[i], "error");
        char *json = get_utf8(r, sb_key(key, sizeof key, SB_KEY_JOB, "rebalance", ids[i]));
        cJSON *rec = cJSON_Parse(json);
        free(json);
        char error[128], details[128];
        const char *e = sb_json_str(rec, "error"), *d = sb_json_str(rec, "details");
        snprintf(error, sizeof error, "%s", e ? e : "(none)");
        snprintf(details, sizeof details, "%s", d ? d : "(none)");
        int has_result = cJSON_GetObjectItem(rec, "result") != NULL;
        cJSON_Delete(rec);
        assert_string_equal(error, want[i][0]);
        if (want[i][1]) assert_string_equal(details, want[i][1]);
        assert_false(has_result);
        sb_metrics_key(key, sizeof key, "rebalance", "failed", ids[i]);
        free(get_utf8(r, key));
    }
    double attempts = 0;
    char *json = NULL;
    assert_int_equal(sb_job_get(r, "rebalance", ids[0], &json), 0);
    cJSON *rec = cJSON_Parse(json);
    free(json);
    sb_json_num(rec, "attempts", &attempts);
    cJSON_Delete(rec);
    assert_int_equal((int)attempts, 3); /* each attempt failed */
    free_agent(f, a);
    /* every status message published was UTF-8 (two jobs: 3 + 1 processing, 2 errors, and
     * the retries' processing updates) */
    int n = 0, timed_out = 0, bad = 0;
    redisReply *rep;
    while ((rep = sb_redis_read_wait(sub, 200, &timed_out)) != NULL) {
        bad += rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
               !sb_utf8_valid(rep->element[2]->str, rep->element[2]->len);
        freeReplyObject(rep);
        n++;
    }
    assert_int_equal(bad, 0);
    assert_true(timed_out);
    assert_true(n >= 6);
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
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    char id[SB_JOB_ID_LEN];
    for (int v = 0; v < 3; v++) {
        char json[32];
        snprintf(json, sizeof json, "{\"v\":%d}", v);
        cJSON *pl = cJSON_Parse(json);
        int rc = sb_queue_enqueue(r, "queue:test", pl, id);
        cJSON_Delete(pl);
        assert_int_equal(rc, 0);
    }
    cJSON *item = NULL;
    assert_int_equal(sb_queue_dequeue(r, "queue:test", 1, &item), 0);
    double v = -1;
    int v_rc = sb_json_num(sb_json_obj(item, "payload"), "v", &v);
    int has_id = sb_json_str(item, "id") != NULL;
    int has_enqueued = sb_json_str(item, "enqueuedAt") != NULL;
    cJSON_Delete(item);
    assert_int_equal(v_rc, 0);
    assert_int_equal((int)v, 0); /* FIFO */
    assert_true(has_id);
    assert_true(has_enqueued);
    /* polling worker: v=1 is requeued once (goes behind v=2), then everything is handled. The
     * probe lives in the fixture: teardown stops a poller a failed test left running. */
    poll_probe_t *pp = f->mem = calloc(1, sizeof *pp);
    assert_non_null(pp);
    pp->requeue_first = 1;
    sb_poll_opts_t o = {.interval_ms = 10, .max_interval_ms = 20, .backoff = 1.5};
    f->poller = sb_poller_start(&srv.addr, "queue:test", &o, poll_handler, pp);
    assert_non_null(f->poller);
    int64_t deadline = sb_mono_ms() + 10000;
    while (llen(r, "queue:test") > 0 && sb_mono_ms() < deadline) sb_sleep_ms(5, NULL);
    sb_poller_stop(f->poller);
    f->poller = NULL;
    assert_int_equal(pp->n, 2);
    assert_int_equal(pp->handled[0], 2);
    assert_int_equal(pp->handled[1], 1);
    assert_int_equal(sb_queue_dequeue(r, "queue:test", 1, &item), SB_ETIMEOUT);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN); /* as every hiredis user must (see redis.h) */
    if (sb_test_redis_start(&srv) != 0) {
        fprintf(stderr, "could not start redis-server\n");
        return 1;
    }
    sb_log_set_level(SB_LOG_WARN);
    struct CMUnitTest tests[] = {
        WITH_FIXTURE(test_enqueue_is_atomic_and_complete),
        WITH_FIXTURE(test_fifo_retry_and_dead_letter),
        WITH_FIXTURE(test_bad_records_are_counted_and_skipped),
        WITH_FIXTURE(test_execution_times_stay_bounded),
        WITH_FIXTURE(test_recovers_jobs_of_a_dead_agent),
        WITH_FIXTURE(test_reclaims_ids_orphaned_in_its_own_list),
        WITH_FIXTURE(test_update_by_sha1_and_after_script_flush),
        WITH_FIXTURE(test_workers_share_script_calls),
        WITH_FIXTURE(test_connections_killed_mid_stream),
        WITH_FIXTURE(test_no_audit_events),
        WITH_FIXTURE(test_shutdown_puts_back_unfinished_jobs),
        WITH_FIXTURE(test_stop_mid_stream_leaves_no_job_taken),
        WITH_FIXTURE(test_survives_redis_restart),
        WITH_FIXTURE(test_finish_waits_out_a_busy_redis),
        WITH_FIXTURE(test_finish_waits_out_a_read_only_redis),
        WITH_FIXTURE(test_recovery_waits_for_live_agents_after_a_restart),
        WITH_FIXTURE(test_lapsed_lease_is_recovered_on_the_agent_clock),
        WITH_FIXTURE(test_live_agent_keeps_a_job_longer_than_its_lease),
        WITH_FIXTURE(test_output_that_is_not_utf8),
        WITH_FIXTURE(test_queue_library),
    };
    int rc = sb_test_run("integration/test_agent", tests, sizeof tests / sizeof tests[0]);
    sb_test_redis_stop(&srv);
    return rc;
}
