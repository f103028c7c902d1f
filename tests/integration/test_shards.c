/* Integration tests of queue shards (QUEUE_SHARDS=6, job.h) against a real redis-server, in
 * the plain key style of single Redis: the submit script puts each user's jobs in the user's
 * shard (id suffix, record, queue, user index, rate window); an agent takes from every shard
 * (with fewer and with as many workers as shards), fairly (a busy shard does not starve the
 * others), recovers a dead agent's jobs on every shard; lookups by id (get, detail, cancel,
 * retry, delete) go to the id's shard; counts, listings, pause and the metrics summary cover
 * every shard. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sb_test_expect.h"
#include "sb_test_redis.h"
#include "switchboard/agent.h"
#include "switchboard/jobctl.h"
#include "switchboard/switchboard.h"

#define NSHARDS 6
#define MAX_SEEN 256

static sb_test_redis_t srv;

/* The handler's record of the jobs it ran (payload "n"), in order. */
typedef struct {
    pthread_mutex_t lock;
    int seen[MAX_SEEN];
    int nseen;
} probe_t;

typedef struct {
    sb_redis_t *r;
    sb_agent_t *agent;
    probe_t probe;
} fixture_t;

static int setup(void **state) {
    if (sb_test_redis_reset(&srv) != 0) return -1;
    fixture_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->probe = (probe_t){.lock = PTHREAD_MUTEX_INITIALIZER};
    f->r = sb_test_redis_client(&srv);
    *state = f;
    return f->r ? 0 : -1;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    if (f && f->agent) {
        sb_agent_wait(f->agent, 5);
        sb_agent_free(f->agent);
    }
    if (f) sb_redis_free(f->r);
    free(f);
    return sb_test_redis_reset(&srv);
}

#define WITH_FIXTURE(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

static sb_handler_rc_t probe_handler(const sb_job_t *job, int attempt, const atomic_int *cancel,
                                     sb_handler_out_t *out, void *user) {
    (void)attempt, (void)cancel;
    probe_t *p = user;
    double n = -1;
    sb_json_num(job->payload, "n", &n);
    pthread_mutex_lock(&p->lock);
    if (p->nseen < MAX_SEEN) p->seen[p->nseen++] = (int)n;
    pthread_mutex_unlock(&p->lock);
    out->result = cJSON_CreateNumber(n);
    return SB_HANDLER_OK;
}

static sb_agent_t *start_agent(fixture_t *f, int concurrency) {
    sb_agent_opts_t o;
    char err[128];
    sb_agent_opts_init(&o);
    o.concurrency = concurrency;
    o.heartbeat_s = 1;
    o.status_ttl_s = 3;
    o.recovery_s = 1;
    f->agent = sb_agent_create(&srv.addr, &o, probe_handler, &f->probe, err, sizeof err);
    assert_non_null(f->agent);
    assert_int_equal(sb_agent_start(f->agent), 0);
    return f->agent;
}

/* A publicKey whose jobs go to shard s (the first "user-N" that maps there). */
static const char *user_of_shard(int s, char pk[32]) {
    for (int i = 0;; i++) {
        snprintf(pk, 32, "user-%d", i);
        if (sb_queue_shard_of_user(pk, NSHARDS) == s) return pk;
    }
}

static void enqueue(sb_redis_t *r, const char *pk, int n, char id[SB_JOB_ID_LEN]) {
    cJSON *payload = cJSON_CreateObject();
    cJSON_AddNumberToObject(payload, "n", n);
    sb_user_t u = {.public_key = pk};
    char err[128];
    assert_int_equal(sb_job_enqueue(r, "rebalance", &u, payload, id, err, sizeof err), SB_OK);
    cJSON_Delete(payload);
}

/* The record status of job id ("" when none). */
static void status_of(sb_redis_t *r, const char *id, char st[32]) {
    char *json = NULL;
    st[0] = '\0';
    if (sb_job_get(r, "rebalance", id, &json) != SB_OK) return;
    cJSON *doc = cJSON_Parse(json);
    const char *s = sb_json_str(doc, "status");
    snprintf(st, 32, "%s", s ? s : "");
    cJSON_Delete(doc);
    free(json);
}

/* Waits (bounded) until every job of ids[0..n) is done. */
static void wait_all_done(sb_redis_t *r, char (*ids)[SB_JOB_ID_LEN], int n) {
    int64_t deadline = sb_mono_ms() + 30000;
    for (int i = 0; i < n; i++) {
        char st[32];
        for (status_of(r, ids[i], st); strcmp(st, "done") && sb_mono_ms() < deadline;
             status_of(r, ids[i], st))
            sb_sleep_ms(5, NULL);
        if (strcmp(st, "done")) fail_msg("job %s is '%s', not done", ids[i], st);
    }
}

/* The agent's counts once they reach done and recovered (bounded wait): a record reads done
 * once the finish script ran, a moment before the agent counts it. */
static sb_agent_stats_t wait_stats(sb_agent_t *a, unsigned long long done,
                                   unsigned long long recovered) {
    sb_agent_stats_t st;
    int64_t deadline = sb_mono_ms() + 10000;
    for (sb_agent_stats(a, &st); (st.done < done || st.recovered < recovered) &&
                                 sb_mono_ms() < deadline; sb_agent_stats(a, &st))
        sb_sleep_ms(5, NULL);
    return st;
}

/* ---- tests ------------------------------------------------------------------------------- */

/* Each user's jobs go to the user's shard: id suffix, record, queue and user index there;
 * sixty users spread over every shard; the rate window counts in the user's shard too. */
static void test_submit_spreads_users_over_shards(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    int per_shard[NSHARDS] = {0};
    for (int u = 0; u < 60; u++) {
        char pk[32], id[SB_JOB_ID_LEN], q[SB_QUEUE_LEN];
        snprintf(pk, sizeof pk, "pk-%d", u);
        enqueue(r, pk, u, id);
        int s = sb_queue_shard_of_user(pk, NSHARDS);
        assert_int_equal(sb_job_id_shard(id, NSHARDS), s);
        sb_queue_name(q, "rebalance", s);
        sb_expect_int(r, 1, "EXISTS agent:%s:job:%s", q, id);
        sb_expect_int(r, 1, "EXISTS agent:%s:user:%s", q, pk);
        sb_expect_int(r, 0, "EXISTS agent:rebalance%s:job:%s", s ? "" : ".1", id);
        per_shard[s]++;
    }
    for (int s = 0; s < NSHARDS; s++) {
        char q[SB_QUEUE_LEN];
        sb_queue_name(q, "rebalance", s);
        assert_true(per_shard[s] > 0);
        sb_expect_int(r, per_shard[s], "LLEN agent:%s:jobs", q);
        sb_expect_int(r, per_shard[s], "ZCARD agent:%s:index", q);
    }
    /* an id naming a shard beyond QUEUE_SHARDS is no job of ours */
    char *json = NULL;
    assert_int_equal(sb_job_get(r, "rebalance", "1700000000000-abcdef01s7", &json), SB_ENOTFOUND);
    /* the rate window of a user lives in the user's shard */
    sb_script_t script;
    sb_submit_script_init(&script);
    char pk[32], q[SB_QUEUE_LEN];
    user_of_shard(4, pk);
    sb_submit_t check = {.type = "rebalance", .rate_user = pk, .public_key = pk, .limit = 5,
                         .window_s = 60, .now_ms = sb_now_ms()};
    sb_rate_result_t res;
    assert_int_equal(sb_submit_run(r, &script, &check, &res), SB_OK);
    assert_true(res.allowed);
    sb_expect_int(r, 1, "ZCARD metrics:agent:%s:rate:%s", sb_queue_name(q, "rebalance", 4), pk);
}

/* An agent with fewer workers than shards takes every shard's jobs (the shards nobody blocks
 * on are looked at every SB__SHARD_POLL_MS). */
static void test_agent_takes_from_every_shard(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    char ids[60][SB_JOB_ID_LEN];
    for (int i = 0; i < 60; i++) {
        char pk[32];
        enqueue(r, user_of_shard(i % NSHARDS, pk), i, ids[i]);
    }
    start_agent(f, 2);
    wait_all_done(r, ids, 60);
    for (int s = 0; s < NSHARDS; s++) {
        char q[SB_QUEUE_LEN];
        sb_expect_int(r, 10, "ZCARD agent:%s:done", sb_queue_name(q, "rebalance", s));
        sb_expect_int(r, 0, "LLEN agent:%s:jobs", q);
    }
}

/* Latency of a job put on each shard while every worker waits: with a worker per shard each
 * shard has a BLMOVE waiting on it; with fewer, a shard without one is looked at within
 * SB__SHARD_POLL_MS. Printed (the figures in README); the bound asserted is generous. */
static void measure_idle_latency(fixture_t *f, int concurrency, int64_t *max_ms) {
    sb_redis_t *r = f->r;
    start_agent(f, concurrency);
    *max_ms = 0;
    int64_t deadline = sb_mono_ms() + 10000;
    sb_agent_stats_t st = {0};
    /* wait until the agent is online (the workers take nothing before) */
    while (sb_query_int(r, "EXISTS agent:online:%s", sb_agent_id(f->agent)) == 0 &&
           sb_mono_ms() < deadline)
        sb_sleep_ms(5, NULL);
    for (int round = 0; round < 3; round++) {
        for (int s = 0; s < NSHARDS; s++) {
            char pk[32], id[SB_JOB_ID_LEN];
            sb_sleep_ms(300, NULL); /* every worker back in its wait */
            int64_t t0 = sb_mono_ms();
            enqueue(r, user_of_shard(s, pk), s, id);
            char one[1][SB_JOB_ID_LEN];
            snprintf(one[0], sizeof one[0], "%s", id);
            wait_all_done(r, one, 1);
            int64_t dt = sb_mono_ms() - t0;
            if (dt > *max_ms) *max_ms = dt;
        }
    }
    st = wait_stats(f->agent, 3 * NSHARDS, 0);
    assert_int_equal(st.done, 3 * NSHARDS);
}

static void test_idle_latency_with_a_worker_per_shard(void **state) {
    int64_t max_ms;
    measure_idle_latency(*state, NSHARDS, &max_ms);
    printf("# queue shards %d, concurrency %d: idle take latency max %lld ms\n", NSHARDS,
           NSHARDS, (long long)max_ms);
    assert_true(max_ms < 5000);
}

static void test_idle_latency_with_fewer_workers(void **state) {
    int64_t max_ms;
    measure_idle_latency(*state, 2, &max_ms);
    printf("# queue shards %d, concurrency 2: idle take latency max %lld ms\n", NSHARDS,
           (long long)max_ms);
    assert_true(max_ms < 5000);
}

/* One worker, 80 jobs queued on one shard and then one on another: the lone job is not kept
 * waiting until the busy shard drains (a worker takes at most SB__SHARD_BURST jobs in a row
 * from one shard, then looks at the others, starting one shard further each time). */
static void test_a_busy_shard_does_not_starve_the_others(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    char ids[81][SB_JOB_ID_LEN], pk[32];
    for (int i = 0; i < 80; i++) enqueue(r, user_of_shard(1, pk), i, ids[i]);
    enqueue(r, user_of_shard(4, pk), 1000, ids[80]);
    start_agent(f, 1);
    wait_all_done(r, ids, 81);
    int pos = -1;
    for (int i = 0; i < f->probe.nseen; i++)
        if (f->probe.seen[i] == 1000) pos = i;
    printf("# the lone job ran %dth of 81\n", pos + 1);
    assert_true(pos >= 0 && pos < NSHARDS * (8 + 1));
    /* one worker: the busy shard's (one user's) jobs ran in the order they were queued */
    for (int i = 0, last = -1; i < f->probe.nseen; i++) {
        if (f->probe.seen[i] == 1000) continue;
        assert_true(f->probe.seen[i] > last);
        last = f->probe.seen[i];
    }
}

/* A crashed agent held jobs on three shards (no presence, no lease): a live agent puts every
 * one back on its own shard's queue and runs it. */
static void test_recovers_a_dead_agent_on_every_shard(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    char ids[3][SB_JOB_ID_LEN];
    const int shards[3] = {0, 2, 5};
    for (int i = 0; i < 3; i++) {
        char pk[32], q[SB_QUEUE_LEN];
        enqueue(r, user_of_shard(shards[i], pk), i, ids[i]);
        sb_queue_name(q, "rebalance", shards[i]);
        sb_expect_str(r, ids[i], "LMOVE agent:%s:jobs agent:%s:processing:dead-1-aa RIGHT LEFT",
                      q, q);
    }
    start_agent(f, 1);
    wait_all_done(r, ids, 3);
    sb_agent_stats_t st = wait_stats(f->agent, 3, 3);
    assert_int_equal(st.recovered, 3);
    for (int i = 0; i < 3; i++) {
        char q[SB_QUEUE_LEN];
        sb_expect_int(r, 0, "LLEN agent:%s:processing:dead-1-aa",
                      sb_queue_name(q, "rebalance", shards[i]));
    }
    /* and it holds a lease on every shard (the others recover its jobs there if it dies) */
    for (int s = 0; s < NSHARDS; s++) {
        char q[SB_QUEUE_LEN];
        sb_expect_type(r, REDIS_REPLY_STRING, "ZSCORE agent:%s:leases %s",
                       sb_queue_name(q, "rebalance", s), sb_agent_id(f->agent));
    }
}

static const char *state_in(const cJSON *o) {
    return sb_json_str(o, "state");
}

/* The jobs waiting on every shard's queue. */
static long long queued_total(sb_redis_t *r) {
    long long n = 0;
    for (int s = 0; s < NSHARDS; s++) {
        char q[SB_QUEUE_LEN];
        n += sb_query_int(r, "LLEN agent:%s:jobs", sb_queue_name(q, "rebalance", s));
    }
    return n;
}

static int num_in(const cJSON *o, const char *name) {
    double v = -1;
    sb_json_num(o, name, &v);
    return (int)v;
}

/* Job control by id goes to the id's shard; counts, listings and pause cover every shard. */
static void test_jobctl_by_id_and_over_shards(void **state) {
    fixture_t *f = *state;
    sb_redis_t *r = f->r;
    char ids[12][SB_JOB_ID_LEN], pk[32];
    for (int i = 0; i < 12; i++) enqueue(r, user_of_shard(i % NSHARDS, pk), i, ids[i]);
    cJSON *o = NULL;
    assert_int_equal(sb_jobctl_counts(r, "rebalance", &o), SB_OK);
    assert_int_equal(num_in(cJSON_GetObjectItem(o, "counts"), "queued"), 12);
    assert_int_equal(num_in(o, "total"), 12);
    cJSON_Delete(o);
    /* a listing pages over every shard: each id once */
    int found[12] = {0}, pages = 0;
    long cursor = 0;
    for (;;) {
        sb_jobctl_query_t q = {.type = "rebalance", .cursor = cursor, .limit = 5};
        assert_int_equal(sb_jobctl_list(r, &q, &o), SB_OK);
        const cJSON *j;
        cJSON_ArrayForEach(j, cJSON_GetObjectItem(o, "jobs")) {
            for (int i = 0; i < 12; i++) found[i] += !strcmp(sb_json_str(j, "jobId"), ids[i]);
        }
        const cJSON *next = cJSON_GetObjectItem(o, "next");
        pages++;
        int more = cJSON_IsNumber(next);
        if (more) cursor = (long)next->valuedouble;
        cJSON_Delete(o);
        if (!more || pages > 10) break;
    }
    for (int i = 0; i < 12; i++) assert_int_equal(found[i], 1);
    /* a user's listing: the user's jobs (ids 3 and 9 are of shard 3's user) */
    sb_jobctl_query_t uq = {.type = "rebalance", .user = user_of_shard(3, pk), .limit = 50};
    assert_int_equal(sb_jobctl_list(r, &uq, &o), SB_OK);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "jobs")), 2);
    cJSON_Delete(o);
    /* cancel, detail, retry, delete of a job on shard 5 */
    sb_jobctl_result_t res;
    assert_int_equal(sb_jobctl_cancel(r, "rebalance", ids[5], "test", NULL, &res), SB_OK);
    assert_int_equal(res.outcome, SB_JOBCTL_OK);
    assert_int_equal(queued_total(r), 11);
    sb_expect_int(r, 1, "ZCARD agent:rebalance.5:cancelled");
    assert_int_equal(sb_jobctl_detail(r, "rebalance", ids[5], &o), SB_OK);
    assert_string_equal(state_in(o), "cancelled");
    cJSON_Delete(o);
    assert_int_equal(sb_jobctl_retry(r, "rebalance", ids[5], "test", &res), SB_OK);
    assert_int_equal(res.outcome, SB_JOBCTL_OK);
    sb_expect_int(r, 2, "LLEN agent:rebalance.5:jobs");
    assert_int_equal(sb_jobctl_delete(r, "rebalance", ids[5], "test", &res), SB_OK);
    assert_int_equal(res.outcome, SB_JOBCTL_OK);
    sb_expect_int(r, 0, "EXISTS agent:rebalance.5:job:%s", ids[5]);
    assert_int_equal(sb_jobctl_cancel(r, "rebalance", "1700000000000-abcdef01s9", "test", NULL,
                                      &res), SB_OK);
    assert_int_equal(res.outcome, SB_JOBCTL_NOTFOUND);
    /* pause: every shard's key, so an agent takes nothing; resume: it takes everything */
    int changed = 0;
    assert_int_equal(sb_jobctl_pause(r, "rebalance", "test", 1, &changed), SB_OK);
    assert_true(changed);
    assert_int_equal(sb_jobctl_paused(r, "rebalance"), 1);
    sb_expect_int(r, 1, "EXISTS agent:rebalance.3:paused");
    start_agent(f, 2);
    sb_agent_stats_t st;
    /* online first (an event); then a window in which an unpaused agent takes jobs within
     * milliseconds (test_idle_latency_*): a paused one must take none */
    int64_t until = sb_mono_ms() + 10000;
    while (sb_query_int(r, "EXISTS agent:online:%s", sb_agent_id(f->agent)) == 0 &&
           sb_mono_ms() < until)
        sb_sleep_ms(5, NULL);
    sb_expect_int(r, 1, "EXISTS agent:online:%s", sb_agent_id(f->agent));
    for (until = sb_mono_ms() + 1000; sb_mono_ms() < until;) sb_sleep_ms(50, NULL);
    sb_agent_stats(f->agent, &st);
    assert_int_equal(st.done, 0);
    assert_int_equal(sb_jobctl_pause(r, "rebalance", "test", 0, &changed), SB_OK);
    char left[11][SB_JOB_ID_LEN];
    for (int i = 0, k = 0; i < 12; i++)
        if (i != 5) snprintf(left[k++], SB_JOB_ID_LEN, "%s", ids[i]);
    wait_all_done(r, left, 11);
    /* the metrics summary adds every shard's counters up */
    sb_metrics_summary_t sum;
    assert_int_equal(sb_metrics_summary(r, "rebalance", 1, sb_now_ms(), &sum), SB_OK);
    assert_int_equal(sum.total_jobs, 12);
    assert_int_equal(sum.done_jobs, 11);
    assert_int_equal(sum.daily[0].done, 11);
    assert_int_equal(sum.exec_count, 11);
}

int main(void) {
    if (sb_test_redis_start(&srv) != 0) {
        fprintf(stderr, "could not start redis-server\n");
        return 1;
    }
    sb_log_set_level(SB_LOG_WARN);
    sb_queue_shards_set(NSHARDS); /* process-wide, before any thread (job.h) */
    struct CMUnitTest tests[] = {
        WITH_FIXTURE(test_submit_spreads_users_over_shards),
        WITH_FIXTURE(test_agent_takes_from_every_shard),
        WITH_FIXTURE(test_idle_latency_with_a_worker_per_shard),
        WITH_FIXTURE(test_idle_latency_with_fewer_workers),
        WITH_FIXTURE(test_a_busy_shard_does_not_starve_the_others),
        WITH_FIXTURE(test_recovers_a_dead_agent_on_every_shard),
        WITH_FIXTURE(test_jobctl_by_id_and_over_shards),
    };
    int rc = sb_test_run("integration/test_shards", tests, sizeof tests / sizeof tests[0]);
    sb_test_redis_stop(&srv);
    return rc;
}
