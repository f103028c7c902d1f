/* The --exec handler: any program is an agent. The job record goes to its stdin, its stdout
 * is the result, a non-zero exit is a failure with stderr as the message. Exit status
 * SB_EXEC_PERMANENT (65, EX_DATAERR) fails the job for good, without further attempts; a
 * failing program may also print the --worker protocol's error line on stdout,
 * {"error":"…","retry":false|true}, whose error becomes the message (retry:false is then
 * permanent whatever the exit status).
 *
 * Running the program (process group killed with the agent, no inherited descriptors,
 * stdin/stdout/stderr pumping, stdout cap and stderr tail, deadline, cancel) is the library's
 * process runner (switchboard/proc.h); this file turns a job into its input and environment,
 * and the run's outcome into a handler verdict. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "handlers.h"
#include "switchboard/json.h"
#include "switchboard/proc.h"

/* A non-zero exit: the error line on stdout if there is one, else the end of stderr, else the
 * status; permanent for SB_EXEC_PERMANENT or retry:false. */
static sb_handler_rc_t sb_exec_failure(const sb_proc_result_t *run, sb_handler_out_t *res) {
    int code = WEXITSTATUS(run->status);
    cJSON *line = run->out_len ? sb_json_parse(run->out, run->out_len) : NULL;
    const char *said = sb_json_str(line, "error");
    const cJSON *retry = cJSON_GetObjectItemCaseSensitive(line, "retry");
    if (said) snprintf(res->error, sizeof res->error, "%s", said);
    else if (run->err_len) sb_proc_err_tail(run, res->error, sizeof res->error);
    else snprintf(res->error, sizeof res->error, "handler exited with status %d", code);
    snprintf(res->details, sizeof res->details, "exit status %d", code);
    int permanent = code == SB_EXEC_PERMANENT || (said && cJSON_IsFalse(retry));
    cJSON_Delete(line);
    return permanent ? SB_HANDLER_FAIL : SB_HANDLER_RETRY;
}

static sb_handler_rc_t sb_exec_verdict(const sb_proc_result_t *run, const sb_exec_opts_t *o,
                                       sb_handler_out_t *res) {
    if (run->end == SB_PROC_CANCELED) return SB_HANDLER_CANCELED;
    if (run->end == SB_PROC_TIMEOUT) {
        snprintf(res->error, sizeof res->error, "handler timed out after %d s", o->timeout_s);
        return SB_HANDLER_RETRY;
    }
    if (run->end == SB_PROC_TOO_BIG) {
        snprintf(res->error, sizeof res->error, "handler stdout exceeds %d bytes",
                 SB_PROC_MAX_OUTPUT);
        return SB_HANDLER_RETRY;
    }
    if (WIFSIGNALED(run->status)) {
        snprintf(res->error, sizeof res->error, "handler killed by signal %d",
                 WTERMSIG(run->status));
        return SB_HANDLER_RETRY;
    }
    if (WEXITSTATUS(run->status) != 0) return sb_exec_failure(run, res);
    size_t n = run->out_len;
    while (n > 0 && (run->out[n - 1] == '\n' || run->out[n - 1] == ' ' || run->out[n - 1] == '\r'))
        n--;
    if (n == 0) return SB_HANDLER_OK; /* empty stdout: result null */
    res->result = sb_json_parse(run->out, n);
    if (!res->result) {
        snprintf(res->error, sizeof res->error, "handler printed invalid JSON on stdout");
        return SB_HANDLER_RETRY;
    }
    return SB_HANDLER_OK;
}

sb_handler_rc_t sb_handler_exec(const sb_job_t *job, int attempt, const atomic_int *cancel,
                                sb_handler_out_t *res, void *user) {
    const sb_exec_opts_t *o = user;
    char *input = sb_json_print(job->root);
    char att[16];
    snprintf(att, sizeof att, "%d", attempt);
    char *env[4] = {sb_proc_env_entry("SB_JOB_ID", job->job_id), sb_proc_env_entry("SB_JOB_TYPE", job->type),
                    sb_proc_env_entry("SB_ATTEMPT", att), NULL};
    int ok = input && env[0] && env[1] && env[2];
    sb_proc_result_t run = {.end = SB_PROC_NOSTART};
    if (ok) {
        sb_proc_opts_t po = {.cmd = o->cmd, .env = (const char *const *)env, .input = input,
                             .input_len = strlen(input), .timeout_ms = o->timeout_s * 1000,
                             .cancel = cancel, .term_grace_ms = SB_EXEC_TERM_GRACE_MS,
                             /* the agent blocks SIGTERM/SIGINT for sigwait(): not the child's
                              * business; and a killed agent's handler must not run on */
                             .reset_signals = 1, .die_with_parent = 1};
        sb_proc_run(&po, &run);
    }
    free(input);
    for (int i = 0; i < 3; i++) free(env[i]);
    sb_handler_rc_t rc;
    if (run.end == SB_PROC_NOSTART) {
        snprintf(res->error, sizeof res->error, "could not start handler: %s",
                 ok ? strerror(run.spawn_errno) : "out of memory");
        rc = SB_HANDLER_RETRY;
    } else {
        rc = sb_exec_verdict(&run, o, res);
    }
    sb_proc_result_close(&run);
    return rc;
}
