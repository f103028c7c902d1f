/* `switchboard job list|history|retry|cancel|delete` and `switchboard queue pause|resume`:
 * the job-control library (switchboard/jobctl.h) on the command line. Each subcommand is a
 * row of sb_jobctl_cmds; flags that only some subcommands take (--state, --user, --all-dead)
 * are refused by the others (exit 2). Actions are recorded as done by "cli:{user}@{host}". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "switchboard/switchboard.h"
#include "switchboard/jobctl.h"

/* Who acts, for the history and audit events. */
static void sb_jobctl_by(char *by, size_t len) {
    char host[64] = "localhost";
    gethostname(host, sizeof host - 1);
    const char *user = getenv("USER");
    snprintf(by, len, "cli:%s@%s", user && *user ? user : "unknown", host);
}

/* Prints a JSON document (pretty unless --json). */
static void sb_jobctl_print(const sb_config_t *cfg, const cJSON *doc) {
    char *s = cfg->json_out ? cJSON_PrintUnformatted(doc) : cJSON_Print(doc);
    if (s) printf("%s\n", s);
    free(s);
}

/* The exit status of a library error, with the reason on stderr. */
static int sb_jobctl_fail(const char *what, const char *id, int rc) {
    fprintf(stderr, "switchboard %s: %s%s%s\n", what, id ? id : "", id ? ": " : "",
            rc == SB_ENOTFOUND ? "no such job (or its record expired)" : sb_strerror(rc));
    return rc == SB_ENOTFOUND ? SB_EXIT_FAIL : sb_cli_exit(rc);
}

/* The outcome of an action: 0 applied, 1 not found / conflict (with the state named). */
static int sb_jobctl_outcome(const sb_config_t *cfg, const char *what, const char *id,
                             const sb_jobctl_result_t *res) {
    static const char *const names[] = {"ok", "not_found", "conflict"};
    if (cfg->json_out) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "jobId", id);
        cJSON_AddStringToObject(o, "outcome", names[res->outcome]);
        if (res->state[0]) cJSON_AddStringToObject(o, "state", res->state);
        if (res->agent[0]) cJSON_AddStringToObject(o, "agent", res->agent);
        sb_jobctl_print(cfg, o);
        cJSON_Delete(o);
    }
    if (res->outcome == SB_JOBCTL_NOTFOUND)
        fprintf(stderr, "switchboard job %s: %s: no such job\n", what, id);
    else if (res->outcome == SB_JOBCTL_CONFLICT)
        fprintf(stderr, "switchboard job %s: %s: refused, the job is %s\n", what, id, res->state);
    else if (!cfg->json_out)
        printf("%s: %s%s%s%s\n", id, what, res->agent[0] ? " (agent told to stop: " : "",
               res->agent, res->agent[0] ? ")" : "");
    return res->outcome == SB_JOBCTL_OK ? SB_EXIT_OK : SB_EXIT_FAIL;
}

typedef int (*sb_jobctl_fn)(sb_config_t *cfg, sb_redis_t *r, const char *id);

static int sb_job_list(sb_config_t *cfg, sb_redis_t *r, const char *id) {
    (void)id;
    if (cfg->state && !sb_jobctl_state_valid(cfg->state)) {
        fprintf(stderr, "switchboard job list: bad --state '%s' (queued, processing, retrying, "
                "done, error, dead, cancelled)\n", cfg->state);
        return SB_EXIT_USAGE;
    }
    if (cfg->limit > SB_JOBCTL_LIST_MAX) cfg->limit = SB_JOBCTL_LIST_MAX;
    sb_jobctl_query_t q = {.type = cfg->job_type, .state = cfg->state,
                           .user = cfg->user_explicit ? cfg->user : NULL, .limit = cfg->limit};
    cJSON *out = NULL;
    int rc = sb_jobctl_list(r, &q, &out);
    if (rc != SB_OK) return sb_jobctl_fail("job list", NULL, rc);
    if (cfg->json_out) {
        sb_jobctl_print(cfg, out);
    } else {
        const cJSON *j;
        cJSON_ArrayForEach(j, cJSON_GetObjectItem(out, "jobs")) {
            const cJSON *job = cJSON_GetObjectItem(j, "job");
            const cJSON *user = cJSON_GetObjectItem(job, "user");
            printf("%-28s %-10s %-24s %s\n", sb_json_str(j, "jobId"), sb_json_str(j, "state"),
                   sb_json_str(job, "createdAt") ? sb_json_str(job, "createdAt") : "-",
                   sb_json_str(user, "publicKey") ? sb_json_str(user, "publicKey") : "-");
        }
    }
    cJSON_Delete(out);
    return SB_EXIT_OK;
}

static int sb_job_history(sb_config_t *cfg, sb_redis_t *r, const char *id) {
    cJSON *out = NULL;
    int rc = sb_jobctl_detail(r, cfg->job_type, id, &out);
    if (rc != SB_OK) return sb_jobctl_fail("job history", id, rc);
    if (cfg->json_out) {
        sb_jobctl_print(cfg, out);
    } else {
        printf("%s: %s%s%s\n", id, sb_json_str(out, "state"),
               sb_json_str(out, "agent") ? ", held by " : "",
               sb_json_str(out, "agent") ? sb_json_str(out, "agent") : "");
        const cJSON *h;
        cJSON_ArrayForEach(h, cJSON_GetObjectItem(out, "history"))
            printf("  %-24s %-10s by %-24s %s\n", sb_json_str(h, "at"), sb_json_str(h, "status"),
                   sb_json_str(h, "by"), sb_json_str(h, "detail") ? sb_json_str(h, "detail") : "");
    }
    cJSON_Delete(out);
    return SB_EXIT_OK;
}

static int sb_job_retry(sb_config_t *cfg, sb_redis_t *r, const char *id) {
    char by[200];
    sb_jobctl_by(by, sizeof by);
    if (cfg->all_dead) {
        int n = 0, limit = cfg->limit > SB_JOBCTL_RETRY_MAX ? SB_JOBCTL_RETRY_MAX : cfg->limit;
        int rc = sb_jobctl_retry_dead(r, cfg->job_type, by, limit, &n);
        if (rc != SB_OK) return sb_jobctl_fail("job retry", NULL, rc);
        if (cfg->json_out) printf("{\"retried\":%d}\n", n);
        else printf("%d dead job(s) back on the queue\n", n);
        return SB_EXIT_OK;
    }
    sb_jobctl_result_t res;
    int rc = sb_jobctl_retry(r, cfg->job_type, id, by, &res);
    return rc != SB_OK ? sb_jobctl_fail("job retry", id, rc)
                       : sb_jobctl_outcome(cfg, "retry", id, &res);
}

static int sb_job_cancel(sb_config_t *cfg, sb_redis_t *r, const char *id) {
    char by[200];
    sb_jobctl_by(by, sizeof by);
    sb_jobctl_result_t res;
    int rc = sb_jobctl_cancel(r, cfg->job_type, id, by, NULL, &res);
    return rc != SB_OK ? sb_jobctl_fail("job cancel", id, rc)
                       : sb_jobctl_outcome(cfg, "cancel", id, &res);
}

static int sb_job_delete(sb_config_t *cfg, sb_redis_t *r, const char *id) {
    char by[200];
    sb_jobctl_by(by, sizeof by);
    sb_jobctl_result_t res;
    int rc = sb_jobctl_delete(r, cfg->job_type, id, by, &res);
    return rc != SB_OK ? sb_jobctl_fail("job delete", id, rc)
                       : sb_jobctl_outcome(cfg, "delete", id, &res);
}

/* Subcommands: name, handler, whether it takes an id, the optional flags it accepts. */
static const struct {
    const char *name;
    sb_jobctl_fn run;
    int takes_id;
    int state, user, all_dead, limit;
} sb_jobctl_cmds[] = {
    {"list", sb_job_list, 0, 1, 1, 0, 1},
    {"history", sb_job_history, 1, 0, 0, 0, 0},
    {"retry", sb_job_retry, 1, 0, 0, 1, 1},
    {"cancel", sb_job_cancel, 1, 0, 0, 0, 0},
    {"delete", sb_job_delete, 1, 0, 0, 0, 0},
};

/* A flag the subcommand does not take: the reason, else NULL. */
static const char *sb_jobctl_stray(const sb_config_t *cfg, size_t i) {
    if (cfg->state && !sb_jobctl_cmds[i].state) return "--state";
    if (cfg->user_explicit && !sb_jobctl_cmds[i].user) return "--user";
    if (cfg->all_dead && !sb_jobctl_cmds[i].all_dead) return "--all-dead";
    return NULL;
}

int sb_cli_job_subcommand(sb_config_t *cfg) {
    size_t i = 0, n = sizeof sb_jobctl_cmds / sizeof sb_jobctl_cmds[0];
    while (i < n && strcmp(cfg->args[0], sb_jobctl_cmds[i].name)) i++;
    if (i == n) return -1;
    const char *stray = sb_jobctl_stray(cfg, i);
    int want = sb_jobctl_cmds[i].takes_id && !(cfg->all_dead && sb_jobctl_cmds[i].all_dead);
    const char *id = cfg->nargs > 1 ? cfg->args[1] : NULL;
    if (stray) {
        fprintf(stderr, "switchboard job %s: %s does not apply here\n", cfg->args[0], stray);
        return SB_EXIT_USAGE;
    }
    if (cfg->nargs != 1 + want || (want && !sb_job_id_valid(id))) {
        fprintf(stderr, "switchboard job %s: %s (see switchboard job --help)\n", cfg->args[0],
                want ? "one job id expected (ids look like 1731304200000-a7f3e2c1)"
                     : "no job id expected");
        return SB_EXIT_USAGE;
    }
    sb_redis_t *r = sb_cli_connect(cfg);
    if (!r) return SB_EXIT_REDIS;
    int rc = sb_jobctl_cmds[i].run(cfg, r, id);
    sb_redis_free(r);
    return rc;
}

int sb_cli_queue_pause(sb_config_t *cfg) {
    int pause = !strcmp(cfg->args[0], "pause");
    if (!pause && strcmp(cfg->args[0], "resume")) return -1;
    if (cfg->nargs != 1) {
        fprintf(stderr, "usage: switchboard queue pause|resume [--type T]\n");
        return SB_EXIT_USAGE;
    }
    sb_redis_t *r = sb_cli_connect(cfg);
    if (!r) return SB_EXIT_REDIS;
    char by[200];
    sb_jobctl_by(by, sizeof by);
    int changed = 0, rc = sb_jobctl_pause(r, cfg->job_type, by, pause, &changed);
    sb_redis_free(r);
    if (rc != SB_OK) return sb_jobctl_fail(pause ? "queue pause" : "queue resume", NULL, rc);
    if (cfg->json_out)
        printf("{\"type\":\"%s\",\"paused\":%s,\"changed\":%s}\n", cfg->job_type,
               pause ? "true" : "false", changed ? "true" : "false");
    else
        printf("%s: %s%s\n", cfg->job_type, pause ? "paused" : "resumed",
               changed ? "" : " (it already was)");
    return SB_EXIT_OK;
}
