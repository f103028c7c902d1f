/* Unit tests of the process runner (src/lib/proc.c) against real /bin/sh children: exit codes
 * and signals come back as the shell's own, stdout is capped but stderr only trimmed to a
 * tail, the child sees no descriptor of ours but 0-2, one deadline covers the whole run, and
 * nothing of the process group survives a timeout or the SIGKILL of the process that ran it.
 *
 * The binary makes itself a child subreaper, so every orphan of a test is reparented to it
 * and can be reaped; "gone" below means dead and reaped, waited for with a deadline (the
 * deadline only turns a hang into a failure, it never decides a pass). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
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
#include "switchboard/proc.h"

#define GONE_WITHIN_MS 10000

static sb_proc_end_t run_sh(const char *cmd, int timeout_ms, sb_proc_result_t *res) {
    sb_proc_opts_t o = {.cmd = cmd, .timeout_ms = timeout_ms, .die_with_parent = 1,
                        .reset_signals = 1};
    return sb_proc_run(&o, res);
}

/* Reaps whatever orphans came to us; 1 once pid no longer exists (dead and reaped). */
static int gone(pid_t pid) {
    int64_t deadline = sb_mono_ms() + GONE_WITHIN_MS;
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        if (kill(pid, 0) < 0 && errno == ESRCH) return 1;
        if (sb_mono_ms() >= deadline) return 0;
        sb_sleep_ms(10, NULL);
    }
}

static void test_exit_status_and_signals_relayed(void **state) {
    (void)state;
    sb_proc_result_t res;
    assert_int_equal(run_sh("exit 7", 10000, &res), SB_PROC_EXITED);
    assert_true(WIFEXITED(res.status));
    assert_int_equal(WEXITSTATUS(res.status), 7);
    sb_proc_result_close(&res);
    /* dash forks for a command followed by another: the exit code of the last one */
    assert_int_equal(run_sh("true; sh -c 'exit 3'", 10000, &res), SB_PROC_EXITED);
    assert_int_equal(WEXITSTATUS(res.status), 3);
    sb_proc_result_close(&res);
    const int sigs[] = {SIGKILL, SIGTERM, SIGUSR1, SIGPIPE};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        char cmd[64];
        snprintf(cmd, sizeof cmd, "kill -%d $$", sigs[i]);
        assert_int_equal(run_sh(cmd, 10000, &res), SB_PROC_EXITED);
        assert_true(WIFSIGNALED(res.status));
        assert_int_equal(WTERMSIG(res.status), sigs[i]);
        sb_proc_result_close(&res);
    }
}

static void test_stdin_stdout_env(void **state) {
    (void)state;
    size_t n = 3 << 19; /* 1.5 MiB: more than a pipe holds, both ways */
    char *in = malloc(n);
    assert_non_null(in);
    for (size_t i = 0; i < n; i++) in[i] = (char)('a' + i % 26);
    char *env[] = {"SB_TEST_X=42", NULL};
    sb_proc_opts_t o = {.cmd = "echo \"$SB_TEST_X\" >&2; cat", .env = (const char *const *)env,
                        .input = in, .input_len = n, .timeout_ms = 20000,
                        .max_output = 2 << 20};
    sb_proc_result_t res;
    assert_int_equal(sb_proc_run(&o, &res), SB_PROC_EXITED);
    assert_int_equal(WEXITSTATUS(res.status), 0);
    assert_int_equal(res.out_len, n);
    assert_memory_equal(res.out, in, n);
    assert_string_equal(res.err, "42\n");
    sb_proc_result_close(&res);
    free(in);
}

/* A chatty stderr is not a failure: only its tail is kept. */
static void test_stderr_volume_is_not_a_failure(void **state) {
    (void)state;
    sb_proc_result_t res;
    assert_int_equal(run_sh("head -c 3000000 /dev/zero | tr '\\0' x >&2; echo '{\"a\":1}'",
                            20000, &res),
                     SB_PROC_EXITED);
    assert_int_equal(WEXITSTATUS(res.status), 0);
    assert_string_equal(res.out, "{\"a\":1}\n");
    assert_int_equal(res.err_len, SB_PROC_ERR_TAIL);
    assert_int_equal(strspn(res.err, "x"), SB_PROC_ERR_TAIL);
    sb_proc_result_close(&res);
    /* the tail is the end of what was written */
    assert_int_equal(run_sh("head -c 200000 /dev/zero | tr '\\0' x >&2;"
                            "echo ' the end' >&2; exit 4", 20000, &res),
                     SB_PROC_EXITED);
    assert_int_equal(WEXITSTATUS(res.status), 4);
    assert_true(res.err_len <= SB_PROC_ERR_TAIL);
    char tail[16];
    sb_proc_err_tail(&res, tail, sizeof tail);
    assert_string_equal(tail, "xxxxxxx the end");
    sb_proc_result_close(&res);
    /* a cut inside a character starts at the next one: "é" is C3 A9, the cut falls on A9 */
    assert_int_equal(run_sh("printf '\\303\\251\\303\\251abc' >&2; exit 1", 20000, &res),
                     SB_PROC_EXITED);
    char small[5];
    sb_proc_err_tail(&res, small, sizeof small);
    assert_string_equal(small, "abc");
    sb_proc_err_tail(&res, tail, sizeof tail);
    assert_string_equal(tail, "\xc3\xa9\xc3\xa9" "abc");
    sb_proc_result_close(&res);
}

static void test_stdout_is_capped(void **state) {
    (void)state;
    sb_proc_opts_t o = {.cmd = "head -c 100000 /dev/zero", .timeout_ms = 20000,
                        .max_output = 65536};
    sb_proc_result_t res;
    assert_int_equal(sb_proc_run(&o, &res), SB_PROC_TOO_BIG);
    sb_proc_result_close(&res);
}

/* The child has 0, 1 and 2, and nothing else of ours (an fd opened here without O_CLOEXEC
 * included). */
static void test_no_inherited_fds(void **state) {
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    int fd = open("/dev/null", O_RDONLY);
    assert_true(fd >= 3);
    sb_proc_result_t res;
    /* no pipeline: the shell would hold the pipe's fds while ls looks */
    assert_int_equal(run_sh("ls /proc/$$/fd", 10000, &res), SB_PROC_EXITED);
    assert_string_equal(res.out, "0\n1\n2\n");
    sb_proc_result_close(&res);
    close(p[0]);
    close(p[1]);
    close(fd);
}

/* With fd 0 closed, pipe2() hands the runner fd 0 itself: the child still gets its stdin. */
static void test_low_fds_free(void **state) {
    (void)state;
    int saved = dup(0);
    assert_true(saved >= 0);
    close(0);
    sb_proc_opts_t o = {.cmd = "cat", .input = "hello", .input_len = 5, .timeout_ms = 10000};
    sb_proc_result_t res;
    sb_proc_end_t end = sb_proc_run(&o, &res);
    dup2(saved, 0);
    close(saved);
    assert_int_equal(end, SB_PROC_EXITED);
    assert_int_equal(WEXITSTATUS(res.status), 0);
    assert_string_equal(res.out, "hello");
    sb_proc_result_close(&res);
}

/* One deadline for the whole run: a child that closes its outputs and lingers is killed at
 * timeout_ms after the start and reported as a timeout, not as "killed by signal 9". */
static void test_one_deadline_for_the_run(void **state) {
    (void)state;
    sb_proc_result_t res;
    int64_t t0 = sb_mono_ms();
    assert_int_equal(run_sh("exec >&- 2>&-; sleep 30", 500, &res), SB_PROC_TIMEOUT);
    assert_true(sb_mono_ms() - t0 < 5000);
    sb_proc_result_close(&res);
}

/* A timeout kills the whole process group, background children included. */
static void test_timeout_kills_the_group(void **state) {
    (void)state;
    sb_proc_result_t res;
    /* a loaded machine may not reach `echo` before the deadline: then try a longer one */
    for (int ms = 300;; ms *= 2) {
        assert_int_equal(run_sh("sleep 101 & echo $!; wait", ms, &res), SB_PROC_TIMEOUT);
        if ((res.out && res.out[0]) || ms > 10000) break;
        sb_proc_result_close(&res);
    }
    assert_non_null(res.out);
    pid_t pid = (pid_t)atoi(res.out);
    assert_true(pid > 0);
    assert_true(gone(pid));
    sb_proc_result_close(&res);
}

/* The tick: counts its calls; creates the file `flag` at the third, or (stop) asks to stop
 * once the program created it. */
typedef struct {
    int calls;
    const char *flag;
    int stop;
} tick_t;

static int count_tick(void *user) {
    tick_t *t = user;
    t->calls++;
    if (t->stop) return access(t->flag, F_OK) == 0;
    if (t->calls == 3) fclose(fopen(t->flag, "w"));
    return 0;
}

static sb_proc_end_t run_ticked(const char *cmd, tick_t *t, sb_proc_result_t *res) {
    sb_proc_opts_t o = {.cmd = cmd, .timeout_ms = 30000, .die_with_parent = 1,
                        .reset_signals = 1, .tick = count_tick, .tick_user = t, .tick_ms = 10};
    return sb_proc_run(&o, res);
}

/* The tick runs while the program runs: the program waits for what the third tick does. */
static void test_tick_runs_during_the_run(void **state) {
    (void)state;
    char dir[] = "/tmp/sb-test-proc-XXXXXX", flag[64], cmd[160];
    assert_non_null(mkdtemp(dir));
    snprintf(flag, sizeof flag, "%s/ticked", dir);
    snprintf(cmd, sizeof cmd, "while [ ! -e %s ]; do sleep 0.01; done; echo done", flag);
    tick_t t = {.flag = flag};
    sb_proc_result_t res;
    assert_int_equal(run_ticked(cmd, &t, &res), SB_PROC_EXITED);
    assert_string_equal(res.out, "done\n");
    assert_true(t.calls >= 3);
    sb_proc_result_close(&res);
    unlink(flag);
    rmdir(dir);
}

/* A tick that returns non-zero ends the run as CANCELED and kills the whole group: the
 * program it forked (whose pid it wrote to flag) included. */
static void test_tick_can_stop_the_run(void **state) {
    (void)state;
    char dir[] = "/tmp/sb-test-proc-XXXXXX", flag[64], cmd[256];
    assert_non_null(mkdtemp(dir));
    snprintf(flag, sizeof flag, "%s/pid", dir);
    snprintf(cmd, sizeof cmd, "sleep 103 & echo $! > %s.tmp; mv %s.tmp %s; wait", flag, flag,
             flag);
    tick_t t = {.flag = flag, .stop = 1};
    sb_proc_result_t res;
    assert_int_equal(run_ticked(cmd, &t, &res), SB_PROC_CANCELED);
    sb_proc_result_close(&res);
    FILE *f = fopen(flag, "r");
    assert_non_null(f);
    int pid = 0;
    assert_int_equal(fscanf(f, "%d", &pid), 1);
    fclose(f);
    assert_true(pid > 0);
    assert_true(gone((pid_t)pid));
    unlink(flag);
    rmdir(dir);
}

/* The SIGKILL of the process that runs a handler kills the handler's whole group: the shell
 * and the program it forked (dash forks even for 'sleep 102; echo hi'). The program writes
 * its pid into a FIFO the test reads, so the kill comes when it surely runs. */
static void test_runner_killed_kills_the_group(void **state) {
    (void)state;
    char dir[] = "/tmp/sb-test-proc-XXXXXX", fifo[64], cmd[256];
    assert_non_null(mkdtemp(dir));
    snprintf(fifo, sizeof fifo, "%s/pid", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    snprintf(cmd, sizeof cmd, "sh -c 'echo $$ > %s; exec sleep 102'; echo hi", fifo);
    pid_t runner = fork();
    assert_true(runner >= 0);
    if (runner == 0) {
        sb_proc_result_t res;
        run_sh(cmd, 60000, &res);
        _exit(0);
    }
    FILE *f = fopen(fifo, "r");
    assert_non_null(f);
    int pid = 0;
    assert_int_equal(fscanf(f, "%d", &pid), 1);
    fclose(f);
    pid_t pgid = getpgid(pid);
    assert_true(pgid > 0);
    assert_int_not_equal(pgid, getpgrp());
    kill(runner, SIGKILL);
    assert_int_equal(waitpid(runner, NULL, 0), runner);
    int ok = gone(pid);
    if (!ok) kill(pid, SIGKILL);
    assert_true(ok);
    assert_true(gone(-pgid)); /* and nothing else of its group */
    unlink(fifo);
    rmdir(dir);
}

int main(void) {
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_status_and_signals_relayed),
        cmocka_unit_test(test_stdin_stdout_env),
        cmocka_unit_test(test_stderr_volume_is_not_a_failure),
        cmocka_unit_test(test_stdout_is_capped),
        cmocka_unit_test(test_no_inherited_fds),
        cmocka_unit_test(test_low_fds_free),
        cmocka_unit_test(test_one_deadline_for_the_run),
        cmocka_unit_test(test_timeout_kills_the_group),
        cmocka_unit_test(test_tick_runs_during_the_run),
        cmocka_unit_test(test_tick_can_stop_the_run),
        cmocka_unit_test(test_runner_killed_kills_the_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
