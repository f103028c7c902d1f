/* Integration tests of job control (jobctl.h) against a real redis-server with real agents:
 * in-process agents with C handlers that watch their cancel flag, and `switchboard agent
 * --exec` processes. Every action, the indices it keeps, and the races of the issue (cancel vs
 * finish, delete vs take, retry vs recovery) are driven with concurrent calls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "sb_test_redis.h"
#include "switchboard/agent.h"
#include "switchboard/jobctl.h"
#include "switchboard/switchboard.h"

static sb_test_redis_t srv;

/* ---- helpers ----------------------------------------------------------------------------- */

static long long integer(sb_redis_t *r, const char *fmt, const char *a, const char *b) {
    redisReply *rep = sb_redis_cmd(r, fmt, a, b);
    assert_non_null(rep);
    long long n = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    freeReplyObject(rep);
    return n;
}

static int zscore_exists(sb_redis_t *r, const char *key, const char *id) {
    redisReply *rep = sb_redis_cmd(r, "ZSCORE %s %s", key, id);
    int yes = rep && rep->type == REDIS_REPLY_STRING;
    if (rep) freeReplyObject(rep);
    return yes;
}

static int in_list(sb_redis_t *r, const char *key, const char *id) {
    redisReply *rep = sb_redis_cmd(r, "LPOS %s %s", key, id);
    int yes = rep && rep->type == REDIS_REPLY_INTEGER;
    if (rep) freeReplyObject(rep);
    return yes;
}

static char *status_of(sb_redis_t *r, const char *id) {
    char *json = NULL;
    if (sb_job_get(r, "rebalance", id, &json) != SB_OK) return NULL;
    cJSON *doc = cJSON_Parse(json);
    char *st = strdup(sb_json_str(doc, "status"));
    cJSON_Delete(doc);
    free(json);
    return st;
}

static void expect_status(sb_redis_t *r, const char *id, const char *want) {
    char *st = status_of(r, id);
    assert_non_null(st);
    assert_string_equal(st, want);
    free(st);
}

/* Waits (bounded) until the record's status is want. */
static void wait_status(sb_redis_t *r, const char *id, const char *want) {
    int64_t deadline = sb_mono_ms() + 60000; /* bounded, generous: the machine may be loaded */
    while (sb_mono_ms() < deadline) {
        char *st = status_of(r, id);
        int ok = st && !strcmp(st, want);
        free(st);
        if (ok) return;
        sb_sleep_ms(5, NULL);
    }
    fail_msg("job %s never reached %s", id, want);
}

static void enqueue_as(sb_redis_t *r, const char *pk, const char *payload, char id[SB_JOB_ID_LEN]) {
    cJSON *p = cJSON_Parse(payload);
    sb_user_t u = {.public_key = pk, .id = "u"};
    char err[128];
    assert_int_equal(sb_job_enqueue(r, "rebalance", &u, p, id, err, sizeof err), 0);
    cJSON_Delete(p);
    /* listings order by creation time in ms; jobs of the same ms come in no set order, so the
     * next job of a test gets a later ms */
    int64_t t0 = sb_now_ms();
    while (sb_now_ms() <= t0) sb_sleep_ms(1, NULL);
}

/* A job whose record is gone, as when it expires: its index entries and history stay. */
static void enqueue_gone(sb_redis_t *r, const char *pk, char id[SB_JOB_ID_LEN]) {
    enqueue_as(r, pk, "{}", id);
    integer(r, "DEL agent:rebalance:job:%s%s", id, "");
}

static sb_agent_opts_t fast_opts(void) {
    sb_agent_opts_t o;
    sb_agent_opts_init(&o);
    o.retry_backoff_ms = 10;
    o.retry_backoff_max_ms = 20;
    o.heartbeat_s = 1;
    o.status_ttl_s = 3;
    o.recovery_s = 1;
    o.lease_ms = 1000;
    o.lease_renew_ms = 50; /* cancels reach a handler within this */
    return o;
}

/* Handler: payload {"mode":"ok"|"fail"|"block"}; block runs until its cancel flag is raised. */
typedef struct {
    atomic_int running;   /* a block job is in the handler */
    atomic_int cancelled; /* a handler saw its cancel flag */
} probe_t;

static sb_handler_rc_t probe(const sb_job_t *job, int attempt, const atomic_int *cancel,
                             sb_handler_out_t *out, void *user) {
    (void)attempt;
    probe_t *p = user;
    const char *mode = sb_json_str(job->payload, "mode");
    if (mode && !strcmp(mode, "fail")) {
        snprintf(out->error, sizeof out->error, "boom");
        return SB_HANDLER_FAIL;
    }
    if (mode && !strcmp(mode, "block")) {
        atomic_store(&p->running, 1);
        while (!atomic_load(cancel)) sb_sleep_ms(5, NULL);
        atomic_store(&p->running, 0);
        atomic_store(&p->cancelled, 1);
        return SB_HANDLER_CANCELED;
    }
    out->result = cJSON_CreateNumber(1);
    return SB_HANDLER_OK;
}

static sb_agent_t *start_agent(sb_agent_opts_t *o, probe_t *p) {
    char err[256];
    sb_agent_t *a = sb_agent_create(&srv.addr, o, probe, p, err, sizeof err);
    assert_non_null(a);
    assert_int_equal(sb_agent_start(a), 0);
    return a;
}

static void stop_agent(sb_agent_t *a) {
    sb_agent_stop(a);
    sb_agent_wait(a, 5);
    sb_agent_free(a);
}

static pid_t exec_agent; /* a `switchboard agent --exec` a test started (0: none) */

static int setup(void **state) {
    (void)state;
    return sb_test_redis_reset(&srv);
}

/* Stops the test's agent process even when the test failed, so that it takes no later job. */
static int teardown(void **state) {
    (void)state;
    if (exec_agent > 0) {
        kill(exec_agent, SIGKILL);
        waitpid(exec_agent, NULL, 0);
        exec_agent = 0;
    }
    return 0;
}

/* ---- listing, counts, detail ------------------------------------------------------------- */

static void test_list_counts_and_detail(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    char a[SB_JOB_ID_LEN], b[SB_JOB_ID_LEN], c[SB_JOB_ID_LEN];
    enqueue_as(r, "PKA", "{\"n\":1}", a);
    enqueue_as(r, "PKB", "{\"n\":2}", b);
    enqueue_as(r, "PKA", "{\"n\":3}", c);
    cJSON *out = NULL;
    sb_jobctl_query_t q = {.type = "rebalance", .limit = 2};
    assert_int_equal(sb_jobctl_list(r, &q, &out), 0);
    cJSON *jobs = cJSON_GetObjectItem(out, "jobs");
    assert_int_equal(cJSON_GetArraySize(jobs), 2);
    assert_string_equal(sb_json_str(cJSON_GetArrayItem(jobs, 0), "jobId"), c); /* newest first */
    double next = -1;
    assert_int_equal(sb_json_num(out, "next", &next), 0);
    cJSON_Delete(out);
    q.cursor = (long)next;
    assert_int_equal(sb_jobctl_list(r, &q, &out), 0);
    jobs = cJSON_GetObjectItem(out, "jobs");
    assert_int_equal(cJSON_GetArraySize(jobs), 1);
    assert_string_equal(sb_json_str(cJSON_GetArrayItem(jobs, 0), "jobId"), a);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(out, "next")));
    cJSON_Delete(out);
    /* by user, by state */
    sb_jobctl_query_t qu = {.type = "rebalance", .user = "PKA", .state = "queued", .limit = 10};
    assert_int_equal(sb_jobctl_list(r, &qu, &out), 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(out, "jobs")), 2);
    cJSON_Delete(out);
    sb_jobctl_query_t qd = {.type = "rebalance", .state = "done", .limit = 10};
    assert_int_equal(sb_jobctl_list(r, &qd, &out), 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(out, "jobs")), 0);
    cJSON_Delete(out);
    sb_jobctl_query_t bad = {.type = "rebalance", .state = "nope", .limit = 10};
    assert_int_equal(sb_jobctl_list(r, &bad, &out), SB_EINVAL);
    /* counts */
    assert_int_equal(sb_jobctl_counts(r, "rebalance", &out), 0);
    double n = 0;
    sb_json_num(cJSON_GetObjectItem(out, "counts"), "queued", &n);
    assert_int_equal((int)n, 3);
    sb_json_num(out, "total", &n);
    assert_int_equal((int)n, 3);
    cJSON_Delete(out);
    /* detail: record and history (the enqueue, by its owner) */
    assert_int_equal(sb_jobctl_detail(r, "rebalance", b, &out), 0);
    assert_string_equal(sb_json_str(out, "state"), "queued");
    cJSON *h = cJSON_GetArrayItem(cJSON_GetObjectItem(out, "history"), 0);
    assert_string_equal(sb_json_str(h, "status"), "queued");
    assert_string_equal(sb_json_str(h, "by"), "PKB");
    cJSON_Delete(out);
    assert_int_equal(sb_jobctl_detail(r, "rebalance", "1-abc", &out), SB_ENOTFOUND);
    sb_redis_free(r);
}

/* The history is a list of four elements an entry, kept as long as the record and bounded;
 * a job queued by an older producer has a stream history, which is read first and deleted
 * with the job. */
static void test_history_list_and_legacy_stream(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    char a[SB_JOB_ID_LEN];
    enqueue_as(r, "PKA", "{}", a);
    assert_int_equal(integer(r, "LLEN agent:rebalance:hist:%s%s", a, ""), 4);
    assert_true(integer(r, "TTL agent:rebalance:hist:%s%s", a, "") > 0);
    redisReply *x = sb_redis_cmd(r, "XADD agent:rebalance:history:%s * status queued by old "
                                 "at 2026-01-01T00:00:00.000Z detail enqueued", a);
    assert_non_null(x);
    freeReplyObject(x);
    cJSON *out = NULL;
    assert_int_equal(sb_jobctl_detail(r, "rebalance", a, &out), 0);
    cJSON *hist = cJSON_GetObjectItem(out, "history");
    assert_int_equal(cJSON_GetArraySize(hist), 2);
    assert_string_equal(sb_json_str(cJSON_GetArrayItem(hist, 0), "by"), "old");
    cJSON *e = cJSON_GetArrayItem(hist, 1);
    assert_string_equal(sb_json_str(e, "id"), "1");
    assert_string_equal(sb_json_str(e, "status"), "queued");
    assert_string_equal(sb_json_str(e, "by"), "PKA");
    assert_string_equal(sb_json_str(e, "detail"), "enqueued");
    assert_non_null(sb_json_str(e, "at"));
    cJSON_Delete(out);
    /* bounded: about SB_HISTORY_MAXLEN entries however many state changes */
    for (int i = 0; i < 3 * SB_HISTORY_MAXLEN; i++) {
        sb_jobctl_result_t res;
        assert_int_equal(sb_jobctl_cancel(r, "rebalance", a, "ops", NULL, &res), 0);
        assert_int_equal(sb_jobctl_retry(r, "rebalance", a, "ops", &res), 0);
    }
    long long n = integer(r, "LLEN agent:rebalance:hist:%s%s", a, "");
    assert_true(n >= 4 * SB_HISTORY_MAXLEN && n <= 4 * SB_HISTORY_MAXLEN * 11 / 10);
    sb_jobctl_result_t res;
    assert_int_equal(sb_jobctl_delete(r, "rebalance", a, "ops", &res), 0);
    assert_int_equal(integer(r, "EXISTS agent:rebalance:history:%s%s", a, ""), 0);
    assert_int_equal(integer(r, "EXISTS agent:rebalance:hist:%s%s", a, ""), 0);
    sb_redis_free(r);
}

/* An id whose record expired is dropped from the structure a listing meets it in. */
static void test_expired_ids_leave_the_indices(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    char a[SB_JOB_ID_LEN];
    enqueue_gone(r, "PKA", a);
    cJSON *out = NULL;
    sb_jobctl_query_t q = {.type = "rebalance", .limit = 10};
    assert_int_equal(sb_jobctl_list(r, &q, &out), 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(out, "jobs")), 0);
    cJSON_Delete(out);
    assert_false(zscore_exists(r, "agent:rebalance:index", a));
    sb_redis_free(r);
}

/* ---- index hygiene ----------------------------------------------------------------------- */

static long long zcard(sb_redis_t *r, const char *key) { return integer(r, "ZCARD %s%s", key, ""); }

/* The sweep removes, in bounded steps, the index entries of jobs whose record is gone (every
 * index, the user's too, and their history) and leaves every job that has a record alone. */
static void test_sweep_removes_entries_of_gone_jobs(void **state) {
    (void)state;
    enum { N = 12 };
    sb_redis_t *r = sb_test_redis_client(&srv);
    char ids[N][SB_JOB_ID_LEN];
    /* ids 0..7 lose their record (as when it expires); one of them was done, one cancelled */
    for (int i = 0; i < N; i++) {
        if (i < 8) enqueue_gone(r, i % 2 ? "PKA" : "PKB", ids[i]);
        else enqueue_as(r, i % 2 ? "PKA" : "PKB", "{}", ids[i]);
    }
    integer(r, "ZADD agent:rebalance:done 1 %s%s", ids[2], "");
    integer(r, "ZADD agent:rebalance:cancelled 1 %s%s", ids[3], "");
    integer(r, "ZADD agent:rebalance:done %s %s", "9999999999999", ids[9]); /* live, done */
    assert_int_equal(zcard(r, "agent:rebalance:index"), N);
    /* budget 3: the index is swept 3 ids a step, the cursor going on from where it stopped */
    sb_jobctl_sweep_t s = {0};
    long removed = 0, total = 0;
    assert_int_equal(sb_jobctl_sweep(r, "rebalance", &s, 3, &removed), 0);
    assert_true(removed >= 3); /* three from the index (and what the same ids left elsewhere) */
    /* the index's window took 3 (a user index's window may have taken more of the same) */
    assert_true(zcard(r, "agent:rebalance:index") <= N - 3);
    total += removed;
    /* the user indices are reached as a SCAN (COUNT 3) passes over them: a few more steps */
    for (int step = 0; step < 200 && (zcard(r, "agent:rebalance:index") != N - 8 ||
                                      zcard(r, "agent:rebalance:user:PKA") != 2 ||
                                      zcard(r, "agent:rebalance:user:PKB") != 2); step++) {
        assert_int_equal(sb_jobctl_sweep(r, "rebalance", &s, 3, &removed), 0);
        assert_true(removed <= 3 + 3 * 2 + 2); /* bounded: a window of each index, the trims */
        total += removed;
    }
    assert_int_equal(zcard(r, "agent:rebalance:index"), N - 8);
    assert_int_equal(zcard(r, "agent:rebalance:user:PKA"), 2); /* ids 9, 11 */
    assert_int_equal(zcard(r, "agent:rebalance:user:PKB"), 2); /* ids 8, 10 */
    for (int i = 0; i < N; i++) {
        assert_int_equal(zscore_exists(r, "agent:rebalance:index", ids[i]), i >= 8);
        assert_int_equal(integer(r, "EXISTS agent:rebalance:hist:%s%s", ids[i], ""), i >= 8);
    }
    assert_false(zscore_exists(r, "agent:rebalance:done", ids[2]));
    assert_false(zscore_exists(r, "agent:rebalance:cancelled", ids[3]));
    assert_true(zscore_exists(r, "agent:rebalance:done", ids[9]));
    /* 8 from the index, 8 from the user indices, 1 done, 1 cancelled */
    assert_int_equal(total, 18);
    /* nothing left to do: a step changes nothing */
    assert_int_equal(sb_jobctl_sweep(r, "rebalance", &s, 3, &removed), 0);
    assert_int_equal(removed, 0);
    assert_int_equal(sb_jobctl_sweep(r, "bad type!", &s, 3, &removed), SB_EINVAL);
    assert_int_equal(sb_jobctl_sweep(r, "rebalance", &s, 0, &removed), SB_EINVAL);
    sb_redis_free(r);
}

/* A running agent sweeps on its own, every recovery interval. */
static void test_agent_sweeps_the_indices(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    char gone[SB_JOB_ID_LEN];
    enqueue_gone(r, "PKA", gone);
    integer(r, "LREM agent:rebalance:jobs 0 %s%s", gone, ""); /* so that no take meets it */
    sb_agent_opts_t o = fast_opts();
    probe_t p = {0};
    sb_agent_t *ag = start_agent(&o, &p);
    int64_t deadline = sb_mono_ms() + 60000;
    while (sb_mono_ms() < deadline && (zcard(r, "agent:rebalance:index") ||
                                       zcard(r, "agent:rebalance:user:PKA")))
        sb_sleep_ms(20, NULL);
    stop_agent(ag); /* before the checks: a failed one must not leave it running */
    assert_int_equal(zcard(r, "agent:rebalance:index"), 0);
    assert_int_equal(zcard(r, "agent:rebalance:user:PKA"), 0);
    sb_redis_free(r);
}

/* ---- cancel ------------------------------------------------------------------------------ */

static void test_cancel_queued(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    char a[SB_JOB_ID_LEN];
    enqueue_as(r, "PKA", "{}", a);
    sb_jobctl_result_t res;
    /* another user's job is not found; the owner may cancel it */
    assert_int_equal(sb_jobctl_cancel(r, "rebalance", a, "PKB", "PKB", &res), 0);
    assert_int_equal(res.outcome, SB_JOBCTL_NOTFOUND);
    assert_int_equal(sb_jobctl_cancel(r, "rebalance", a, "PKA", "PKA", &res), 0);
    assert_int_equal(res.outcome, SB_JOBCTL_OK);
    expect_status(r, a, "cancelled");
    assert_false(in_list(r, "agent:rebalance:jobs", a));
    assert_true(zscore_exists(r, "agent:rebalance:cancelled", a));
    /* again: 409 with the state named */
    assert_int_equal(sb_jobctl_cancel(r, "rebalance", a, "admin", NULL, &res), 0);
    assert_int_equal(res.outcome, SB_JOBCTL_CONFLICT);
    assert_string_equal(res.state, "cancelled");
    assert_int_equal(sb_jobctl_cancel(r, "rebalance", "1-zz", "admin", NULL, &res), 0);
    assert_int_equal(res.outcome, SB_JOBCTL_NOTFOUND);
    assert_int_equal(sb_jobctl_cancel(r, "rebalance", "../x", "admin", NULL, &res), SB_EINVAL);
    /* the history says who */
    cJSON *out = NULL;
    assert_int_equal(sb_jobctl_detail(r, "rebalance", a, &out), 0);
    cJSON *hist = cJSON_GetObjectItem(out, "history");
    cJSON *last = cJSON_GetArrayItem(hist, cJSON_GetArraySize(hist) - 1);
    assert_string_equal(sb_json_str(last, "status"), "cancelled");
    assert_string_equal(sb_json_str(last, "by"), "PKA");
    cJSON_Delete(out);
    sb_redis_free(r);
}

static void test_cancel_running_stops_the_handler(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    probe_t p = {0};
    sb_agent_opts_t o = fast_opts();
    sb_agent_t *ag = start_agent(&o, &p);
    char a[SB_JOB_ID_LEN];
    enqueue_as(r, "PKA", "{\"mode\":\"block\"}", a);
    while (!atomic_load(&p.running)) sb_sleep_ms(5, NULL);
    sb_jobctl_result_t res;
    /* a user may not cancel a running job */
    assert_int_equal(sb_jobctl_cancel(r, "rebalance", a, "PKA", "PKA", &res), 0);
    assert_int_equal(res.outcome, SB_JOBCTL_CONFLICT);
    assert_string_equal(res.state, "processing");
    assert_int_equal(sb_jobctl_cancel(r, "rebalance", a, "ops", NULL, &res), 0);
    assert_int_equal(res.outcome, SB_JOBCTL_OK);
    assert_string_equal(res.agent, sb_agent_id(ag));
    while (!atomic_load(&p.cancelled)) sb_sleep_ms(5, NULL);
    /* retry is refused until the handler has returned and the agent let go */
    sb_agent_stats_t st;
    do {
        sb_agent_stats(ag, &st);
        sb_sleep_ms(5, NULL);
    } while (st.withdrawn < 1);
    stop_agent(ag);
    expect_status(r, a, "cancelled"); /* nothing written back */
    assert_false(in_list(r, "agent:rebalance:jobs", a));
    sb_redis_free(r);
}

/* `switchboard agent --exec`: the handler's process group gets SIGTERM on cancel. */
static void test_cancel_running_exec_gets_sigterm(void **state) {
    (void)state;
    char dir[] = "/tmp/sbjcXXXXXX", mark[300], cmd[800];
    assert_non_null(mkdtemp(dir));
    snprintf(mark, sizeof mark, "%s/term", dir);
    snprintf(cmd, sizeof cmd, "trap 'echo term > %s; exit 7' TERM; touch %s/started; "
             "while :; do sleep 0.05; done", mark, dir);
    pid_t pid = exec_agent = fork();
    if (pid == 0) {
        setenv("REDIS_URL", srv.url, 1);
        execl(getenv("SB_BIN"), "switchboard", "agent", "--exec", cmd, "--job-lease", "1",
              "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    sb_redis_t *r = sb_test_redis_client(&srv); /* after the fork: the child owns no copy */
    char a[SB_JOB_ID_LEN], started[320];
    enqueue_as(r, "PKA", "{}", a);
    snprintf(started, sizeof started, "%s/started", dir);
    int64_t deadline = sb_mono_ms() + 60000;
    while (access(started, F_OK) != 0 && sb_mono_ms() < deadline) sb_sleep_ms(10, NULL);
    assert_int_equal(access(started, F_OK), 0);
    sb_jobctl_result_t res;
    assert_int_equal(sb_jobctl_cancel(r, "rebalance", a, "ops", NULL, &res), 0);
    assert_int_equal(res.outcome, SB_JOBCTL_OK);
    while (access(mark, F_OK) != 0 && sb_mono_ms() < deadline) sb_sleep_ms(10, NULL);
    assert_int_equal(access(mark, F_OK), 0); /* SIGTERM reached the handler's trap */
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    exec_agent = 0;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    expect_status(r, a, "cancelled");
    char rm[400];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    assert_int_equal(system(rm), 0);
    sb_redis_free(r);
}

/* ---- retry, delete, pause ---------------------------------------------------------------- */

static void test_retry_dead_and_conflicts(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    probe_t p = {0};
    sb_agent_opts_t o = fast_opts();
    sb_agent_t *ag = start_agent(&o, &p);
    char a[SB_JOB_ID_LEN], b[SB_JOB_ID_LEN], c[SB_JOB_ID_LEN];
    enqueue_as(r, "PKA", "{\"mode\":\"fail\"}", a);
    enqueue_as(r, "PKA", "{\"mode\":\"fail\"}", b);
    enqueue_as(r, "PKA", "{}", c);
    wait_status(r, a, "error");
    wait_status(r, b, "error");
    wait_status(r, c, "done");
    /* failed records keep DEAD_RETENTION, not 24 h */
    assert_true(integer(r, "TTL agent:rebalance:job:%s%s", a, "") > SB_JOB_TTL);
    sb_jobctl_result_t res;
    assert_int_equal(sb_jobctl_retry(r, "rebalance", c, "ops", &res), 0);
    assert_int_equal(res.outcome, SB_JOBCTL_CONFLICT);
    assert_string_equal(res.state, "done");
    stop_agent(ag);
    assert_int_equal(sb_jobctl_retry(r, "rebalance", a, "ops", &res), 0);
    assert_int_equal(res.outcome, SB_JOBCTL_OK);
    expect_status(r, a, "queued");
    assert_false(in_list(r, "agent:rebalance:dead", a));
    assert_true(in_list(r, "agent:rebalance:jobs", a));
    assert_int_equal(sb_jobctl_retry(r, "rebalance", a, "ops", &res), 0); /* safe to repeat */
    assert_int_equal(res.outcome, SB_JOBCTL_CONFLICT);
    assert_string_equal(res.state, "queued");
    assert_int_equal(integer(r, "LLEN %s%s", "agent:rebalance:jobs", ""), 1);
    int n = 0;
    assert_int_equal(sb_jobctl_retry_dead(r, "rebalance", "ops", 100, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(integer(r, "LLEN %s%s", "agent:rebalance:dead", ""), 0);
    assert_int_equal(integer(r, "LLEN %s%s", "agent:rebalance:jobs", ""), 2);
    cJSON *out = NULL; /* attempts reset, history kept */
    assert_int_equal(sb_jobctl_detail(r, "rebalance", b, &out), 0);
    double att = -1;
    sb_json_num(cJSON_GetObjectItem(out, "job"), "attempts", &att);
    assert_int_equal((int)att, 0);
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(out, "history")) >= 4);
    cJSON_Delete(out);
    sb_redis_free(r);
}

static void test_delete_removes_everything(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    char a[SB_JOB_ID_LEN];
    enqueue_as(r, "PKA", "{}", a);
    sb_jobctl_result_t res;
    assert_int_equal(sb_jobctl_delete(r, "rebalance", a, "ops", &res), 0);
    assert_int_equal(res.outcome, SB_JOBCTL_OK);
    assert_int_equal(integer(r, "EXISTS agent:rebalance:job:%s%s", a, ""), 0);
    assert_int_equal(integer(r, "EXISTS agent:rebalance:hist:%s%s", a, ""), 0);
    assert_false(zscore_exists(r, "agent:rebalance:index", a));
    assert_false(zscore_exists(r, "agent:rebalance:user:PKA", a));
    assert_false(in_list(r, "agent:rebalance:jobs", a));
    assert_int_equal(sb_jobctl_delete(r, "rebalance", a, "ops", &res), 0);
    assert_int_equal(res.outcome, SB_JOBCTL_NOTFOUND);
    sb_redis_free(r);
}

static void test_pause_stops_takes(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    int changed = 0;
    assert_int_equal(sb_jobctl_pause(r, "rebalance", "ops", 1, &changed), 0);
    assert_true(changed);
    assert_int_equal(sb_jobctl_paused(r, "rebalance"), 1);
    probe_t p = {0};
    sb_agent_opts_t o = fast_opts();
    sb_agent_t *ag = start_agent(&o, &p);
    char a[SB_JOB_ID_LEN];
    enqueue_as(r, "PKA", "{}", a);
    /* the agent renews its lease (and would have taken the job) several times */
    sb_agent_stats_t st;
    unsigned long long c0;
    sb_agent_stats(ag, &st);
    c0 = st.checks;
    do {
        sb_sleep_ms(20, NULL);
        sb_agent_stats(ag, &st);
    } while (st.checks < c0 + 3);
    sb_sleep_ms(1200, NULL); /* a worker looks again every second while paused */
    expect_status(r, a, "queued");
    assert_int_equal(sb_jobctl_pause(r, "rebalance", "ops", 0, &changed), 0);
    assert_true(changed);
    wait_status(r, a, "done");
    stop_agent(ag);
    sb_redis_free(r);
}

/* DEAD_MAX: the oldest dead jobs are deleted with their records and index entries. */
static void test_dead_list_is_bounded(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    probe_t p = {0};
    sb_agent_opts_t o = fast_opts();
    o.dead_max = 2;
    sb_agent_t *ag = start_agent(&o, &p);
    char ids[3][SB_JOB_ID_LEN];
    for (int i = 0; i < 3; i++) {
        enqueue_as(r, "PKA", "{\"mode\":\"fail\"}", ids[i]);
        wait_status(r, ids[i], "error");
    }
    stop_agent(ag);
    assert_int_equal(integer(r, "LLEN %s%s", "agent:rebalance:dead", ""), 2);
    assert_int_equal(integer(r, "EXISTS agent:rebalance:job:%s%s", ids[0], ""), 0);
    assert_false(zscore_exists(r, "agent:rebalance:index", ids[0]));
    assert_false(zscore_exists(r, "agent:rebalance:user:PKA", ids[0]));
    sb_redis_free(r);
}

/* ---- races ------------------------------------------------------------------------------- */

typedef struct {
    const char *id;
    sb_jobctl_result_t res;
    int rc;
    int action; /* 0 cancel, 1 delete */
} racer_t;

static void *racer_main(void *arg) {
    racer_t *x = arg;
    sb_redis_t *r = sb_test_redis_client(&srv);
    x->rc = x->action ? sb_jobctl_delete(r, "rebalance", x->id, "ops", &x->res)
                      : sb_jobctl_cancel(r, "rebalance", x->id, "ops", NULL, &x->res);
    sb_redis_free(r);
    return NULL;
}

/* Cancel racing the agent's finish (and delete racing a take): each job ends in exactly one
 * consistent state. */
static void race(int action) {
    sb_redis_t *r = sb_test_redis_client(&srv);
    probe_t p = {0};
    sb_agent_opts_t o = fast_opts();
    o.concurrency = 4;
    sb_agent_t *ag = start_agent(&o, &p);
    enum { N = 60 };
    char ids[N][SB_JOB_ID_LEN];
    racer_t x[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        enqueue_as(r, "PKA", "{}", ids[i]);
        x[i] = (racer_t){.id = ids[i], .action = action};
        pthread_create(&t[i], NULL, racer_main, &x[i]);
    }
    for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
    sb_sleep_ms(200, NULL);
    stop_agent(ag);
    int won = 0, lost = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(x[i].rc, 0);
        char *st = status_of(r, ids[i]);
        int in_done = zscore_exists(r, "agent:rebalance:done", ids[i]);
        if (action == 1) { /* delete: gone everywhere, never written back */
            assert_int_equal(x[i].res.outcome, SB_JOBCTL_OK);
            assert_null(st);
            assert_false(zscore_exists(r, "agent:rebalance:index", ids[i]));
            assert_false(in_done);
            assert_false(in_list(r, "agent:rebalance:jobs", ids[i]));
            won++;
        } else if (x[i].res.outcome == SB_JOBCTL_OK) {
            assert_string_equal(st, "cancelled");
            assert_false(in_done);
            assert_true(zscore_exists(r, "agent:rebalance:cancelled", ids[i]));
            won++;
        } else {
            assert_int_equal(x[i].res.outcome, SB_JOBCTL_CONFLICT);
            assert_string_equal(x[i].res.state, "done");
            assert_string_equal(st, "done");
            assert_true(in_done);
            assert_false(zscore_exists(r, "agent:rebalance:cancelled", ids[i]));
            lost++;
        }
        free(st);
    }
    assert_int_equal(won + lost, N);
    assert_int_equal(integer(r, "LLEN %s%s", "agent:rebalance:jobs", ""), 0);
    sb_redis_free(r);
}

static void test_cancel_races_finish(void **state) {
    (void)state;
    race(0);
}

static void test_delete_races_take(void **state) {
    (void)state;
    race(1);
}

/* Retry racing recovery: a dead agent's processing list is recovered while its dead-lettered
 * jobs are retried; every job ends queued exactly once. */
static void test_retry_races_recovery(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    enum { N = 20 };
    char held[N][SB_JOB_ID_LEN], dead[N][SB_JOB_ID_LEN];
    for (int i = 0; i < N; i++) {
        enqueue_as(r, "PKA", "{}", held[i]);
        integer(r, "LMOVE agent:rebalance:jobs agent:rebalance:processing:%s%s RIGHT LEFT", "ghost", "");
        enqueue_as(r, "PKA", "{}", dead[i]);
        integer(r, "LMOVE agent:rebalance:jobs %s%s RIGHT LEFT", "agent:rebalance:dead", "");
        redisReply *rep = sb_redis_cmd(r, "GET agent:rebalance:job:%s", dead[i]);
        cJSON *doc = cJSON_Parse(rep->str);
        freeReplyObject(rep);
        sb_json_set_str(doc, "status", "error");
        char *txt = cJSON_PrintUnformatted(doc);
        rep = sb_redis_cmd(r, "SET agent:rebalance:job:%s %s", dead[i], txt);
        freeReplyObject(rep);
        free(txt);
        cJSON_Delete(doc);
    }
    integer(r, "ZADD agent:rebalance:leases 1 %s%s", "ghost", ""); /* lapsed long ago */
    probe_t p = {0};
    sb_agent_opts_t o = fast_opts();
    o.concurrency = 2;
    sb_agent_t *ag = start_agent(&o, &p); /* recovers the ghost's list while we retry */
    int n = 0;
    assert_int_equal(sb_jobctl_retry_dead(r, "rebalance", "ops", 100, &n), 0);
    assert_int_equal(n, N);
    for (int i = 0; i < N; i++) {
        wait_status(r, held[i], "done");
        wait_status(r, dead[i], "done");
    }
    stop_agent(ag);
    assert_int_equal(integer(r, "LLEN %s%s", "agent:rebalance:jobs", ""), 0);
    assert_int_equal(integer(r, "LLEN %s%s", "agent:rebalance:dead", ""), 0);
    assert_int_equal(integer(r, "ZCARD %s%s", "agent:rebalance:done", ""), 2 * N);
    sb_redis_free(r);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    if (sb_test_redis_start(&srv) != 0) {
        fprintf(stderr, "could not start redis-server\n");
        return 1;
    }
    sb_log_set_level(SB_LOG_ERROR);
    struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_list_counts_and_detail, setup),
        cmocka_unit_test_setup(test_expired_ids_leave_the_indices, setup),
        cmocka_unit_test_setup(test_sweep_removes_entries_of_gone_jobs, setup),
        cmocka_unit_test_setup(test_agent_sweeps_the_indices, setup),
        cmocka_unit_test_setup(test_cancel_queued, setup),
        cmocka_unit_test_setup(test_cancel_running_stops_the_handler, setup),
        cmocka_unit_test_setup_teardown(test_cancel_running_exec_gets_sigterm, setup, teardown),
        cmocka_unit_test_setup(test_retry_dead_and_conflicts, setup),
        cmocka_unit_test_setup(test_delete_removes_everything, setup),
        cmocka_unit_test_setup(test_pause_stops_takes, setup),
        cmocka_unit_test_setup(test_dead_list_is_bounded, setup),
        cmocka_unit_test_setup(test_cancel_races_finish, setup),
        cmocka_unit_test_setup(test_delete_races_take, setup),
        cmocka_unit_test_setup(test_retry_races_recovery, setup),
        cmocka_unit_test_setup(test_history_list_and_legacy_stream, setup),
    };
    int rc = sb_test_run("jobctl", tests, sizeof tests / sizeof tests[0]);
    sb_test_redis_stop(&srv);
    return rc;
}
