/* CLI verbs over jobs: enqueue (optionally --wait), job, queue — what the seeds do with
 * redis-cli, made first-class. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "switchboard/switchboard.h"

sb_redis_t *sb_cli_connect(const sb_config_t *cfg) {
    char err[256], where[300];
    sb_redis_t *r = sb_redis_create(&cfg->redis, "cli");
    if (!r) return NULL;
    sb_redis_set_timeout(r, 10000);
    if (sb_redis_connect(r, err, sizeof err) != SB_OK) {
        fprintf(stderr, "switchboard: cannot reach redis at %s: %s\n",
                sb_redis_addr_str(&cfg->redis, where, sizeof where), err);
        sb_redis_free(r);
        return NULL;
    }
    return r;
}

/* One progress line on stderr: the status first (scripts match on it), the time since the
 * job was queued, then what the agent said. */
static void sb_enqueue_progress(const sb_status_t *st, int64_t t0_ms) {
    double secs = (double)(sb_mono_ms() - t0_ms) / 1000.0;
    char *result = st->result ? sb_json_print(st->result) : NULL;
    if (result && strlen(result) > 100) strcpy(result + 96, "...}");
    const char *what = st->error     ? st->error
                       : result      ? result
                       : st->details ? st->details
                                     : "";
    int both = st->error && st->details;
    fprintf(stderr, "%-10s +%.3f s  %s%s%s%s\n", st->status, secs, what, both ? " (" : "",
            both ? st->details : "", both ? ")" : "");
    free(result);
}

/* Prints the job's status messages (read from `sub`, already subscribed) until it is done
 * or failed, then the final record. Returns 0 for done, 1 for error, 3 on timeout or a lost
 * connection. */
static int sb_enqueue_follow(sb_redis_t *sub, sb_redis_t *r, const sb_config_t *cfg,
                             const char *id) {
    int64_t t0 = sb_mono_ms();
    char last[16] = "queued";
    sb_redis_set_timeout(sub, cfg->timeout > 0 ? cfg->timeout * 1000 : 0);
    if (cfg->timeout > 0)
        fprintf(stderr, "queued     +0.000 s  waiting for an agent, up to %d s for each update "
                        "(Ctrl-C stops waiting; the job stays queued)\n", cfg->timeout);
    else
        fprintf(stderr, "queued     +0.000 s  waiting for an agent (Ctrl-C stops waiting; the "
                        "job stays queued)\n");
    int rc = -1;
    while (rc < 0) {
        redisReply *msg = sb_redis_read(sub);
        if (!msg) {
            fprintf(stderr, "switchboard enqueue: %s after %.1f s waiting for job %s (last "
                    "status: %s); it is not cancelled: see `switchboard job %s`\n",
                    cfg->timeout > 0 ? "timed out" : "lost redis",
                    (double)(sb_mono_ms() - t0) / 1000.0, id, last, id);
            return 3;
        }
        cJSON *root = NULL;
        sb_status_t st;
        char err[128];
        if (msg->type == REDIS_REPLY_ARRAY && msg->elements == 3 &&
            !strcmp(msg->element[0]->str, "message") &&
            sb_status_parse(msg->element[2]->str, msg->element[2]->len, &root, &st, err,
                            sizeof err) == SB_OK && !strcmp(st.job_id, id)) {
            sb_enqueue_progress(&st, t0);
            snprintf(last, sizeof last, "%s", st.status);
            if (!strcmp(st.status, "done")) rc = 0;
            else if (!strcmp(st.status, "error")) rc = 1;
        }
        cJSON_Delete(root);
        freeReplyObject(msg);
    }
    char *json = NULL;
    if (sb_job_get(r, cfg->job_type, id, &json) == SB_OK) printf("%s\n", json);
    free(json);
    return rc;
}

int sb_cmd_enqueue(sb_config_t *cfg) {
    if (cfg->nargs != 1) {
        fprintf(stderr, "usage: switchboard enqueue [--type T] [--user PK] [--wait] "
                        "'PAYLOAD-JSON' (see switchboard enqueue --help)\n");
        return 2;
    }
    cJSON *payload = sb_json_parse(cfg->args[0], strlen(cfg->args[0]));
    if (!payload) {
        fprintf(stderr, "switchboard enqueue: the payload is not valid JSON\n");
        return 2;
    }
    sb_redis_t *r = sb_cli_connect(cfg), *sub = NULL;
    int rc = r ? 0 : 3;
    char chan[SB_KEY_LEN];
    if (r && cfg->wait) {
        /* subscribe before enqueuing so no update can slip between the two */
        sub = sb_cli_connect(cfg);
        redisReply *rep = sub ? sb_redis_cmd(sub, "SUBSCRIBE %s",
                                             sb_key(chan, sizeof chan, SB_KEY_STATUS,
                                                    cfg->job_type, NULL)) : NULL;
        if (!rep) rc = 3;
        else freeReplyObject(rep);
    }
    char id[SB_JOB_ID_LEN], err[256];
    sb_user_t user = {.public_key = cfg->user, .id = cfg->user_id};
    if (rc == 0 && sb_job_enqueue(r, cfg->job_type, &user, payload, id, err, sizeof err) != SB_OK) {
        fprintf(stderr, "switchboard enqueue: %s\n", err);
        rc = 1;
    } else if (rc == 0) {
        printf("%s\n", id);
        fflush(stdout);
        if (sub) rc = sb_enqueue_follow(sub, r, cfg, id);
    }
    cJSON_Delete(payload);
    sb_redis_free(sub);
    sb_redis_free(r);
    return rc;
}

int sb_cmd_job(sb_config_t *cfg) {
    if (cfg->nargs != 1 || !sb_job_id_valid(cfg->args[0])) {
        fprintf(stderr, "usage: switchboard job [--type T] JOB_ID (ids look like "
                "1731304200000-a7f3e2c1)\n");
        return 2;
    }
    sb_redis_t *r = sb_cli_connect(cfg);
    if (!r) return 3;
    char *json = NULL;
    int rc = sb_job_get(r, cfg->job_type, cfg->args[0], &json);
    if (rc == SB_OK) {
        cJSON *doc = sb_json_parse(json, strlen(json));
        char *pretty = doc && !cfg->json_out ? cJSON_Print(doc) : NULL;
        printf("%s\n", pretty ? pretty : json);
        free(pretty);
        cJSON_Delete(doc);
    } else {
        fprintf(stderr, "switchboard job: %s: %s\n", cfg->args[0],
                rc == SB_ENOTFOUND ? "no such job (or its record expired)" : sb_strerror(rc));
    }
    free(json);
    sb_redis_free(r);
    return rc == SB_OK ? 0 : rc == SB_ENOTFOUND ? 1 : 3;
}

/* Prints up to limit ids of a list, from the consuming (right) end. */
static void sb_print_ids(sb_redis_t *r, const char *key, int limit, const char *indent) {
    redisReply *rep = sb_redis_cmd(r, "LRANGE %s %d -1", key, -limit);
    if (!rep || rep->type != REDIS_REPLY_ARRAY) goto out;
    for (size_t i = rep->elements; i > 0; i--) printf("%s%s\n", indent, rep->element[i - 1]->str);
out:
    if (rep) freeReplyObject(rep);
}

static long long sb_llen(sb_redis_t *r, const char *key) {
    redisReply *rep = sb_redis_cmd(r, "LLEN %s", key);
    long long n = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    if (rep) freeReplyObject(rep);
    return n;
}

static void sb_print_processing(sb_redis_t *r, const char *type, int limit) {
    char prefix[SB_KEY_LEN], pattern[SB_KEY_LEN + 1], cursor[32] = "0";
    sb_key(prefix, sizeof prefix, SB_KEY_PROCESSING, type, "");
    snprintf(pattern, sizeof pattern, "%s*", prefix);
    printf("processing:\n");
    do {
        redisReply *rep = sb_redis_cmd(r, "SCAN %s MATCH %s COUNT 500", cursor, pattern);
        if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            if (rep) freeReplyObject(rep);
            return;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        for (size_t i = 0; i < rep->element[1]->elements; i++) {
            const char *key = rep->element[1]->element[i]->str, *agent = key + strlen(prefix);
            redisReply *on = sb_redis_cmd(r, "EXISTS agent:online:%s", agent);
            int online = on && on->type == REDIS_REPLY_INTEGER && on->integer == 1;
            if (on) freeReplyObject(on);
            printf("  %s (%s): %lld\n", agent, online ? "online" : "OFFLINE, will be recovered",
                   sb_llen(r, key));
            sb_print_ids(r, key, limit, "    ");
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0);
}

int sb_cmd_queue(sb_config_t *cfg) {
    sb_redis_t *r = sb_cli_connect(cfg);
    if (!r) return 3;
    char jobs[SB_KEY_LEN], dead[SB_KEY_LEN];
    sb_key(jobs, sizeof jobs, SB_KEY_JOBS, cfg->job_type, NULL);
    sb_key(dead, sizeof dead, SB_KEY_DEAD, cfg->job_type, NULL);
    long long pending = sb_llen(r, jobs);
    if (pending < 0) {
        fprintf(stderr, "switchboard queue: redis unavailable\n");
        sb_redis_free(r);
        return 3;
    }
    printf("type: %s\npending: %lld (next out first)\n", cfg->job_type, pending);
    sb_print_ids(r, jobs, cfg->limit, "  ");
    sb_print_processing(r, cfg->job_type, cfg->limit);
    printf("dead: %lld\n", sb_llen(r, dead));
    sb_print_ids(r, dead, cfg->limit, "  ");
    sb_redis_free(r);
    return 0;
}
