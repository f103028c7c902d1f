/* Tests of the --worker process pool (src/lib/workerpool.c) against real handler processes:
 * a small Python program (Debian's /usr/bin/python3) whose behaviour each job's payload
 * picks, and shell one-liners. Every failure mode of the protocol is driven for real: an
 * exit, a line that is not JSON or not UTF-8, another jobId, a line over the cap (with and
 * without its newline), a timeout, a cancel, output between jobs, and the permanent failure
 * (retry:false). After each break the process must be a new one and the old group gone.
 *
 * The binary makes itself a child subreaper so the killed handlers' orphans come back to it
 * and "gone" can be checked (dead and reaped, with a deadline that only turns a hang into a
 * failure). Nothing sleeps to let something happen: the one wait for output between jobs
 * waits for a file the handler creates after writing it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "switchboard/clock.h"
#include "switchboard/json.h"
#include "switchboard/workerpool.h"

#define GONE_WITHIN_MS 10000

static char dir[] = "/tmp/sb-wp-XXXXXX";
static char handler_cmd[512];

static const char HANDLER_PY[] =
    "import json, os, sys, threading, time\n"
    "def out(o):\n"
    "    sys.stdout.write(json.dumps(o) + '\\n'); sys.stdout.flush()\n"
    "for line in sys.stdin:\n"
    "    job = json.loads(line)\n"
    "    p = job['payload'] or {}\n"
    "    m, jid = p.get('mode', 'ok'), job['jobId']\n"
    "    if m == 'ok':\n"
    "        out({'jobId': jid, 'result': {'payload': p, 'attempt': job['attempt'],\n"
    "             'type': job['type'], 'user': job['user'], 'pid': os.getpid()}})\n"
    "    elif m == 'null': out({'jobId': jid, 'result': None})\n"
    "    elif m == 'error': out({'jobId': jid, 'error': 'try later', 'retry': True})\n"
    "    elif m == 'fatal': out({'jobId': jid, 'error': 'bad input', 'retry': False})\n"
    "    elif m == 'exit': sys.exit(3)\n"
    "    elif m == 'badjson': sys.stdout.write('not json\\n'); sys.stdout.flush()\n"
    "    elif m == 'wrongid': out({'jobId': 'other', 'result': 1})\n"
    "    elif m == 'neither': out({'jobId': jid})\n"
    "    elif m == 'long': sys.stdout.write('x' * 5000 + '\\n'); sys.stdout.flush()\n"
    "    elif m == 'nonl': sys.stdout.write('x' * 5000); sys.stdout.flush(); time.sleep(60)\n"
    "    elif m == 'sleep': time.sleep(60)\n"
    "    elif m == 'latin1':\n"
    "        sys.stdout.buffer.write(b'{\"jobId\":\"' + jid.encode() + b'\",\"result\":\"\\xff\"}\\n')\n"
    "        sys.stdout.flush()\n"
    "    elif m == 'two':\n"
    "        sys.stdout.write(json.dumps({'jobId': jid, 'result': 1}) + '\\nextra\\n')\n"
    "        sys.stdout.flush()\n"
    "    elif m == 'late':\n"
    "        out({'jobId': jid, 'result': 1})\n"
    "        def late(go=p['marker'] + '.go', marker=p['marker']):\n"
    "            while not os.path.exists(go): time.sleep(0.005)\n"
    "            sys.stdout.write('late\\n'); sys.stdout.flush(); open(marker, 'w').close()\n"
    "        threading.Thread(target=late, daemon=True).start()\n"
    "    elif m == 'stderr':\n"
    "        sys.stderr.write('hello from handler\\n'); sys.stderr.flush()\n"
    "        out({'jobId': jid, 'result': None})\n";

static sb_workerpool_t *pool_of(const char *cmd, int procs, size_t max_line, int grace_ms) {
    sb_workerpool_opts_t o;
    sb_workerpool_opts_init(&o);
    o.cmd = cmd;
    o.procs = procs;
    if (max_line) o.max_line = max_line;
    o.grace_ms = grace_ms;
    char err[256] = "";
    sb_workerpool_t *p = sb_workerpool_create(&o, err, sizeof err);
    if (!p) fprintf(stderr, "pool: %s\n", err);
    assert_non_null(p);
    return p;
}

/* Runs a job whose payload is {"mode": mode} (plus extra members of extra_json). */
static sb_worker_end_t run_mode(sb_workerpool_t *p, const char *id, const char *mode,
                                int timeout_ms, const atomic_int *cancel,
                                sb_worker_result_t *res) {
    char json[512];
    snprintf(json, sizeof json, "{\"mode\":\"%s\",\"marker\":\"%s/marker-%s\"}", mode, dir, id);
    cJSON *payload = sb_json_parse(json, strlen(json));
    cJSON *user = sb_json_parse("{\"publicKey\":\"PK1\"}", 19);
    sb_worker_job_t job = {.job_id = id, .type = "rebalance", .payload = payload, .user = user,
                           .attempt = 2};
    sb_worker_end_t end = sb_workerpool_run(p, &job, timeout_ms, cancel, res);
    cJSON_Delete(payload);
    cJSON_Delete(user);
    return end;
}

/* Reaps orphans; 1 once no process of group pgid exists. */
static int group_gone(pid_t pgid) {
    int64_t deadline = sb_mono_ms() + GONE_WITHIN_MS;
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        if (kill(-pgid, 0) < 0 && errno == ESRCH) return 1;
        if (sb_mono_ms() >= deadline) return 0;
        sb_sleep_ms(10, NULL);
    }
}

/* A job that breaks the protocol: RETRY naming the break, a new process, the old group gone,
 * and the next job served by the new process. */
static void expect_break(const char *mode, size_t max_line, int timeout_ms, const char *says) {
    sb_workerpool_t *p = pool_of(handler_cmd, 1, max_line, 1000);
    sb_worker_result_t res;
    pid_t before = sb_workerpool_pid(p, 0);
    assert_int_equal(run_mode(p, "1-a", mode, timeout_ms, NULL, &res), SB_WORKER_RETRY);
    if (!strstr(res.error, says)) fprintf(stderr, "error was: %s\n", res.error);
    assert_non_null(strstr(res.error, says));
    assert_int_equal(res.restarted, 1);
    assert_null(res.result);
    pid_t after = sb_workerpool_pid(p, 0);
    assert_true(after > 0 && after != before);
    assert_true(group_gone(before));
    assert_int_equal(run_mode(p, "1-b", "ok", 10000, NULL, &res), SB_WORKER_OK);
    assert_int_equal(res.restarted, 0);
    cJSON_Delete(res.result);
    assert_int_equal(sb_workerpool_starts(p), 2);
    sb_workerpool_free(p);
}

static void test_success_and_job_line(void **state) {
    (void)state;
    sb_workerpool_t *p = pool_of(handler_cmd, 1, 0, 1000);
    sb_worker_result_t res;
    assert_int_equal(run_mode(p, "17-ab", "ok", 10000, NULL, &res), SB_WORKER_OK);
    assert_non_null(res.result);
    assert_string_equal(sb_json_str(res.result, "type"), "rebalance");
    double att = 0;
    assert_int_equal(sb_json_num(res.result, "attempt", &att), 0);
    assert_true(att == 2);
    assert_string_equal(sb_json_str(sb_json_obj(res.result, "user"), "publicKey"), "PK1");
    assert_string_equal(sb_json_str(sb_json_obj(res.result, "payload"), "mode"), "ok");
    double pid1 = 0, pid2 = 0;
    sb_json_num(res.result, "pid", &pid1);
    cJSON_Delete(res.result);
    /* the same process serves the next job */
    assert_int_equal(run_mode(p, "17-ac", "ok", 10000, NULL, &res), SB_WORKER_OK);
    sb_json_num(res.result, "pid", &pid2);
    assert_true(pid1 == pid2);
    cJSON_Delete(res.result);
    assert_int_equal(run_mode(p, "17-ad", "null", 10000, NULL, &res), SB_WORKER_OK);
    assert_true(cJSON_IsNull(res.result));
    cJSON_Delete(res.result);
    assert_int_equal(sb_workerpool_starts(p), 1);
    sb_workerpool_free(p);
}

static void test_handler_errors(void **state) {
    (void)state;
    sb_workerpool_t *p = pool_of(handler_cmd, 1, 0, 1000);
    sb_worker_result_t res;
    pid_t pid = sb_workerpool_pid(p, 0);
    assert_int_equal(run_mode(p, "1-a", "error", 10000, NULL, &res), SB_WORKER_RETRY);
    assert_string_equal(res.error, "try later");
    assert_int_equal(run_mode(p, "1-b", "fatal", 10000, NULL, &res), SB_WORKER_FAIL);
    assert_string_equal(res.error, "bad input");
    assert_int_equal(res.restarted, 0);
    assert_int_equal(sb_workerpool_pid(p, 0), pid); /* an answer is not a break */
    sb_workerpool_free(p);
}

static void test_exit_mid_job(void **state) {
    (void)state;
    expect_break("exit", 0, 10000, "exited with status 3");
}
static void test_bad_json(void **state) {
    (void)state;
    expect_break("badjson", 0, 10000, "not a JSON object");
}
static void test_wrong_job_id(void **state) {
    (void)state;
    expect_break("wrongid", 0, 10000, "another jobId");
}
static void test_neither_result_nor_error(void **state) {
    (void)state;
    expect_break("neither", 0, 10000, "neither");
}
static void test_not_utf8(void **state) {
    (void)state;
    expect_break("latin1", 0, 10000, "not valid UTF-8");
}
static void test_two_lines_for_one_job(void **state) {
    (void)state;
    expect_break("two", 0, 10000, "more than one line");
}
static void test_line_too_long(void **state) {
    (void)state;
    expect_break("long", 1000, 10000, "over 1000 bytes");
    expect_break("nonl", 1000, 10000, "over 1000 bytes"); /* no newline, still writing */
}
static void test_timeout_kills_and_restarts(void **state) {
    (void)state;
    int64_t t0 = sb_mono_ms();
    expect_break("sleep", 0, 300, "timed out after 300 ms");
    assert_true(sb_mono_ms() - t0 < 8000);
}

static void test_cancel_restarts(void **state) {
    (void)state;
    sb_workerpool_t *p = pool_of(handler_cmd, 1, 0, 1000);
    atomic_int cancel = 1;
    sb_worker_result_t res;
    pid_t before = sb_workerpool_pid(p, 0);
    assert_int_equal(run_mode(p, "1-a", "sleep", 0, &cancel, &res), SB_WORKER_CANCELED);
    assert_int_equal(res.restarted, 1);
    assert_true(group_gone(before));
    assert_int_equal(run_mode(p, "1-b", "ok", 10000, NULL, &res), SB_WORKER_OK);
    cJSON_Delete(res.result);
    sb_workerpool_free(p);
}

/* Output after the answer, between jobs: the process is replaced before the next job, which
 * is not charged for it. */
static void test_output_between_jobs(void **state) {
    (void)state;
    sb_workerpool_t *p = pool_of(handler_cmd, 1, 0, 1000);
    sb_worker_result_t res;
    pid_t before = sb_workerpool_pid(p, 0);
    assert_int_equal(run_mode(p, "9-a", "late", 10000, NULL, &res), SB_WORKER_OK);
    cJSON_Delete(res.result);
    char marker[256], go[300];
    snprintf(marker, sizeof marker, "%s/marker-9-a", dir);
    snprintf(go, sizeof go, "%s.go", marker); /* the handler writes once we have its answer */
    fclose(fopen(go, "w"));
    int64_t deadline = sb_mono_ms() + GONE_WITHIN_MS;
    while (access(marker, F_OK) != 0 && sb_mono_ms() < deadline) sb_sleep_ms(5, NULL);
    assert_int_equal(access(marker, F_OK), 0);
    assert_int_equal(run_mode(p, "9-b", "ok", 10000, NULL, &res), SB_WORKER_OK);
    assert_int_equal(res.restarted, 1);
    assert_true(sb_workerpool_pid(p, 0) != before);
    cJSON_Delete(res.result);
    sb_workerpool_free(p);
}

/* 1 once process pid has exited (a zombie nobody reaped yet, or gone). */
static int exited(pid_t pid) {
    int64_t deadline = sb_mono_ms() + GONE_WITHIN_MS;
    for (;;) {
        char path[64], buf[256] = "";
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        if (!f) return 1;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *st = strrchr(buf, ')');
        if (st && st[1] == ' ' && st[2] == 'Z') return 1;
        if (sb_mono_ms() >= deadline) return 0;
        sb_sleep_ms(5, NULL);
    }
}

/* A process that exited between jobs (here: after each one) is started again for the next,
 * which is not charged for it. (The test waits for the exit: one that is still on its way
 * out when the next job is sent fails that job's attempt, as any exit during a job does.) */
static void test_exit_between_jobs(void **state) {
    (void)state;
    sb_workerpool_t *p = pool_of("read line; id=${line#*\\\"jobId\\\":\\\"}; id=${id%%\\\"*}; "
                                 "printf '{\"jobId\":\"%s\",\"result\":7}\\n' \"$id\"", 1, 0, 1000);
    sb_worker_result_t res;
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "5-%d", i);
        assert_int_equal(run_mode(p, id, "ok", 10000, NULL, &res), SB_WORKER_OK);
        assert_int_equal(res.restarted, i > 0);
        pid_t pid = sb_workerpool_pid(p, 0); /* the one that served it */
        assert_true(cJSON_IsNumber(res.result) && res.result->valuedouble == 7);
        cJSON_Delete(res.result);
        assert_true(exited(pid));
    }
    assert_int_equal(sb_workerpool_starts(p), 3);
    sb_workerpool_free(p);
}

/* stderr goes to the log, a line at a time, with the job id. */
static void test_stderr_logged_with_job_id(void **state) {
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/log", dir);
    fflush(stderr);
    int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    sb_workerpool_t *p = pool_of(handler_cmd, 1, 0, 1000);
    sb_worker_result_t res;
    sb_worker_end_t end = run_mode(p, "42-ff", "stderr", 10000, NULL, &res);
    sb_workerpool_free(p);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    assert_int_equal(end, SB_WORKER_OK);
    cJSON_Delete(res.result);
    FILE *f = fopen(path, "r");
    char buf[8192] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    if (!strstr(buf, "job 42-ff: hello from handler")) fprintf(stderr, "log: %s\n", buf);
    assert_non_null(strstr(buf, "job 42-ff: hello from handler"));
}

/* Shutdown: stdin closed, a process that exits on EOF is not killed; one that ignores it is
 * killed after the grace period, group and all. */
static void test_shutdown(void **state) {
    (void)state;
    int64_t t0 = sb_mono_ms();
    sb_workerpool_t *p = pool_of(handler_cmd, 3, 0, 20000);
    pid_t pids[3];
    for (int i = 0; i < 3; i++) pids[i] = sb_workerpool_pid(p, i);
    sb_workerpool_free(p);
    assert_true(sb_mono_ms() - t0 < 15000); /* did not sit out the grace period */
    for (int i = 0; i < 3; i++) assert_true(group_gone(pids[i]));
    p = pool_of("trap '' TERM; while :; do sleep 1; done", 1, 0, 200);
    pid_t pid = sb_workerpool_pid(p, 0);
    t0 = sb_mono_ms();
    sb_workerpool_free(p);
    assert_true(sb_mono_ms() - t0 >= 200);
    assert_true(group_gone(pid));
}

/* Concurrent callers share the processes, one job per process at a time. */
static void *run_many(void *arg) {
    sb_workerpool_t *p = arg;
    for (int i = 0; i < 20; i++) {
        char id[32];
        snprintf(id, sizeof id, "%d-%lx", i, (unsigned long)pthread_self() & 0xffff);
        sb_worker_result_t res;
        if (run_mode(p, id, "ok", 10000, NULL, &res) != SB_WORKER_OK) return (void *)1;
        cJSON_Delete(res.result);
    }
    return NULL;
}

static void test_concurrent_callers(void **state) {
    (void)state;
    sb_workerpool_t *p = pool_of(handler_cmd, 2, 0, 1000);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, run_many, p);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        assert_null(r);
    }
    assert_int_equal(sb_workerpool_starts(p), 2);
    sb_workerpool_free(p);
}

static void test_bad_options(void **state) {
    (void)state;
    sb_workerpool_opts_t o;
    sb_workerpool_opts_init(&o);
    char err[128];
    assert_null(sb_workerpool_create(&o, err, sizeof err));
    assert_non_null(strstr(err, "command"));
    o.cmd = "cat";
    o.procs = 0;
    assert_null(sb_workerpool_create(&o, err, sizeof err));
}

int main(void) {
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    signal(SIGPIPE, SIG_IGN);
    if (!mkdtemp(dir)) return 1;
    char path[256];
    snprintf(path, sizeof path, "%s/handler.py", dir);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fputs(HANDLER_PY, f);
    fclose(f);
    snprintf(handler_cmd, sizeof handler_cmd, "exec /usr/bin/python3 -u %s", path);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_success_and_job_line),
        cmocka_unit_test(test_handler_errors),
        cmocka_unit_test(test_exit_mid_job),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_wrong_job_id),
        cmocka_unit_test(test_neither_result_nor_error),
        cmocka_unit_test(test_not_utf8),
        cmocka_unit_test(test_two_lines_for_one_job),
        cmocka_unit_test(test_line_too_long),
        cmocka_unit_test(test_timeout_kills_and_restarts),
        cmocka_unit_test(test_cancel_restarts),
        cmocka_unit_test(test_output_between_jobs),
        cmocka_unit_test(test_exit_between_jobs),
        cmocka_unit_test(test_stderr_logged_with_job_id),
        cmocka_unit_test(test_shutdown),
        cmocka_unit_test(test_concurrent_callers),
        cmocka_unit_test(test_bad_options),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) rc = rc ? rc : 1;
    return rc;
}
