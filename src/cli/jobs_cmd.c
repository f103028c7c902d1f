/* CLI verbs over jobs: enqueue (optionally --wait), job, queue — what the seeds do with
 * redis-cli, made first-class. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "switchboard/switchboard.h"
#include "switchboard/jobctl.h"

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

/* The next message on `sub` within the --timeout of one update (0: wait forever). NULL with
 * *timed_out = 1 when none came in time, NULL with *timed_out = 0 when Redis was lost. */
static redisReply *sb_enqueue_next(sb_redis_t *sub, int timeout_s, int *timed_out) {
    int64_t deadline = sb_mono_ms() + (int64_t)timeout_s * 1000;
    for (;;) {
        int64_t left = deadline - sb_mono_ms();
        if (timeout_s > 0 && left <= 0) return *timed_out = 1, NULL;
        redisReply *msg = sb_redis_read_wait(sub, timeout_s > 0 ? (int)left : -1, timed_out);
        if (msg || !*timed_out) return msg; /* timed_out here may be a partial reply: go on */
    }
}

/* Prints one status message when it is about job `id`. Returns SB_EXIT_OK (done),
 * SB_EXIT_FAIL (error), or -1 (not final, or another job's). */
static int sb_enqueue_update(const redisReply *msg, const char *id, int64_t t0, char *last,
                             size_t lastlen) {
    cJSON *root = NULL;
    sb_status_t st;
    char err[128];
    int rc = -1;
    if (msg->type == REDIS_REPLY_ARRAY && msg->elements == 3 &&
        !strcmp(msg->element[0]->str, "message") &&
        sb_status_parse(msg->element[2]->str, msg->element[2]->len, &root, &st, err,
                        sizeof err) == SB_OK && !strcmp(st.job_id, id)) {
        sb_enqueue_progress(&st, t0);
        snprintf(last, lastlen, "%s", st.status);
        if (!strcmp(st.status, "done")) rc = SB_EXIT_OK;
        else if (!strcmp(st.status, "error")) rc = SB_EXIT_FAIL;
    }
    cJSON_Delete(root);
    return rc;
}

/* Prints the job's status messages (read from `sub`, already subscribed) until it is done
 * or failed, then the final record. Returns SB_EXIT_OK for done, SB_EXIT_FAIL for error,
 * SB_EXIT_TIMEOUT when --timeout passed without an update, SB_EXIT_REDIS when Redis was lost. */
static int sb_enqueue_follow(sb_redis_t *sub, sb_redis_t *r, const sb_config_t *cfg,
                             const char *id) {
    int64_t t0 = sb_mono_ms();
    char last[16] = "queued";
    if (cfg->timeout > 0)
        fprintf(stderr, "queued     +0.000 s  waiting for an agent, up to %d s for each update "
                        "(Ctrl-C stops waiting; the job stays queued)\n", cfg->timeout);
    else
        fprintf(stderr, "queued     +0.000 s  waiting for an agent (Ctrl-C stops waiting; the "
                        "job stays queued)\n");
    int rc = -1, timed_out = 0;
    while (rc < 0) {
        redisReply *msg = sb_enqueue_next(sub, cfg->timeout, &timed_out);
        if (!msg) {
            fprintf(stderr, "switchboard enqueue: %s after %.1f s waiting for job %s (last "
                    "status: %s); it is not cancelled: see `switchboard job %s`\n",
                    timed_out ? "timed out" : "lost redis",
                    (double)(sb_mono_ms() - t0) / 1000.0, id, last, id);
            return timed_out ? SB_EXIT_TIMEOUT : SB_EXIT_REDIS;
        }
        rc = sb_enqueue_update(msg, id, t0, last, sizeof last);
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
        return SB_EXIT_USAGE;
    }
    cJSON *payload = sb_json_parse(cfg->args[0], strlen(cfg->args[0]));
    if (!payload) {
        fprintf(stderr, "switchboard enqueue: the payload is not valid JSON\n");
        return SB_EXIT_USAGE;
    }
    sb_redis_t *r = sb_cli_connect(cfg), *sub = NULL;
    int rc = r ? SB_EXIT_OK : SB_EXIT_REDIS;
    char chan[SB_KEY_LEN];
    if (r && cfg->wait) {
        /* subscribe before enqueuing so no update can slip between the two */
        sub = sb_cli_connect(cfg);
        redisReply *rep = sub ? sb_redis_cmd(sub, "SUBSCRIBE %s",
                                             sb_key(chan, sizeof chan, SB_KEY_STATUS,
                                                    cfg->job_type, NULL)) : NULL;
        if (!rep) rc = SB_EXIT_REDIS;
        else freeReplyObject(rep);
    }
    char id[SB_JOB_ID_LEN], err[256];
    sb_user_t user = {.public_key = cfg->user, .id = cfg->user_id};
    int qrc = rc == SB_EXIT_OK ? sb_job_enqueue(r, cfg->job_type, &user, payload, id, err,
                                                sizeof err) : SB_OK;
    if (qrc != SB_OK) {
        fprintf(stderr, "switchboard enqueue: %s\n", err);
        rc = sb_cli_exit(qrc);
    } else if (rc == SB_EXIT_OK) {
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
    int sub = cfg->nargs >= 1 ? sb_cli_job_subcommand(cfg) : -1;
    if (sub >= 0) return sub;
    if (cfg->state || cfg->user_explicit || cfg->all_dead) {
        fprintf(stderr, "switchboard job: --state, --user and --all-dead belong to job list / "
                "job retry\n");
        return SB_EXIT_USAGE;
    }
    if (cfg->nargs != 1 || !sb_job_id_valid(cfg->args[0])) {
        fprintf(stderr, "usage: switchboard job [--type T] JOB_ID (ids look like "
                "1731304200000-a7f3e2c1)\n");
        return SB_EXIT_USAGE;
    }
    sb_redis_t *r = sb_cli_connect(cfg);
    if (!r) return SB_EXIT_REDIS;
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
    return rc == SB_OK ? SB_EXIT_OK : rc == SB_ENOTFOUND ? SB_EXIT_FAIL : SB_EXIT_REDIS;
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

/* The processing lists of one queue shard (job.h), per agent. */
static void sb_print_processing(sb_redis_t *r, const char *queue, int limit) {
    char prefix[SB_KEY_LEN], pattern[SB_KEY_LEN + 1], cursor[32] = "0";
    sb_key(prefix, sizeof prefix, SB_KEY_PROCESSING, queue, "");
    snprintf(pattern, sizeof pattern, "%s*", prefix);
    do {
        redisReply *rep = sb_redis_cmd(r, "SCAN %s MATCH %s COUNT 500", cursor, pattern);
        if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            if (rep) freeReplyObject(rep);
            return;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        for (size_t i = 0; i < rep->element[1]->elements; i++) {
            const char *key = rep->element[1]->element[i]->str, *agent = key + strlen(prefix);
            redisReply *on = sb_redis_cmd(r, "EXISTS %s%s", sb_presence_names()->online, agent);
            int online = on && on->type == REDIS_REPLY_INTEGER && on->integer == 1;
            if (on) freeReplyObject(on);
            printf("  %s (%s): %lld\n", agent, online ? "online" : "OFFLINE, will be recovered",
                   sb_llen(r, key));
            sb_print_ids(r, key, limit, "    ");
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0);
}

/* The length of list kind (jobs, dead) summed over the type's queue shards; -1 when Redis
 * did not answer. */
static long long sb_llen_all(sb_redis_t *r, const char *type, sb_key_kind_t kind) {
    long long total = 0;
    for (int s = 0; s < sb_queue_shards(); s++) {
        char queue[SB_QUEUE_LEN], key[SB_KEY_LEN];
        sb_key(key, sizeof key, kind, sb_queue_name(queue, type, s), NULL);
        long long n = sb_llen(r, key);
        if (n < 0) return -1;
        total += n;
    }
    return total;
}

/* Up to limit ids of list kind of every shard (with shards, each shard's under its name). */
static void sb_print_ids_all(sb_redis_t *r, const char *type, sb_key_kind_t kind, int limit) {
    for (int s = 0; s < sb_queue_shards(); s++) {
        char queue[SB_QUEUE_LEN], key[SB_KEY_LEN];
        sb_key(key, sizeof key, kind, sb_queue_name(queue, type, s), NULL);
        if (sb_queue_shards() > 1 && sb_llen(r, key) > 0) printf("  %s:\n", queue);
        sb_print_ids(r, key, limit, sb_queue_shards() > 1 ? "    " : "  ");
    }
}

int sb_cmd_queue(sb_config_t *cfg) {
    int sub = cfg->nargs >= 1 ? sb_cli_queue_pause(cfg) : cfg->nargs == 0 ? -1 : SB_EXIT_USAGE;
    if (sub >= 0) return sub;
    if (cfg->nargs) {
        fprintf(stderr, "usage: switchboard queue [pause|resume] [--type T] [--limit N]\n");
        return SB_EXIT_USAGE;
    }
    sb_redis_t *r = sb_cli_connect(cfg);
    if (!r) return SB_EXIT_REDIS;
    long long pending = sb_llen_all(r, cfg->job_type, SB_KEY_JOBS);
    if (pending < 0) {
        fprintf(stderr, "switchboard queue: redis unavailable\n");
        sb_redis_free(r);
        return SB_EXIT_REDIS;
    }
    int paused = sb_jobctl_paused(r, cfg->job_type);
    if (cfg->json_out) {
        cJSON *out = NULL;
        int rc = sb_jobctl_counts(r, cfg->job_type, &out);
        char *s = out ? cJSON_PrintUnformatted(out) : NULL;
        if (s) printf("%s\n", s);
        free(s);
        cJSON_Delete(out);
        sb_redis_free(r);
        return sb_cli_exit(rc);
    }
    printf("type: %s%s\npending: %lld (next out first)\n", cfg->job_type,
           paused == 1 ? " (PAUSED: agents take no new jobs)" : "", pending);
    sb_print_ids_all(r, cfg->job_type, SB_KEY_JOBS, cfg->limit);
    printf("processing:\n");
    for (int s = 0; s < sb_queue_shards(); s++) {
        char queue[SB_QUEUE_LEN];
        sb_print_processing(r, sb_queue_name(queue, cfg->job_type, s), cfg->limit);
    }
    printf("dead: %lld\n", sb_llen_all(r, cfg->job_type, SB_KEY_DEAD));
    sb_print_ids_all(r, cfg->job_type, SB_KEY_DEAD, cfg->limit);
    sb_redis_free(r);
    return SB_EXIT_OK;
}
