/* `switchboard events SUBVERB …`: the event bus from the command line (SPEC §7).
 *
 *   publish TYPE DATA|-      XADD one event (or one per stdin line with `-`, pipelined)
 *   request TYPE DATA        publish a request and print the reply's data
 *   tail TYPE…               follow new entries (XREAD BLOCK), one JSON line each
 *   replay TYPE              entries from --from, printed or run through --exec
 *   pending TYPE             the group's pending entries (who holds them, idle, deliveries)
 *   info [TYPE]              streams, groups, consumers, dead letters
 *   (publish, pending and info print one JSON document with --json)
 *   consume TYPE…            consume as a group; --exec CMD per event, --respond to requests
 *
 * The sub-verb table at the bottom is the dispatch. Long-running sub-verbs stop on SIGINT /
 * SIGTERM through sb_sigwatch_t, after the event in hand. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "cli/cli.h"
#include "switchboard/switchboard.h"

/* ---- shared pieces ----------------------------------------------------------------------- */

/* Prints ev as one JSON line on stdout. Returns 0 or SB_ENOMEM. */
static int sb_print_event(const sb_event_t *ev) {
    cJSON *o = sb_event_to_json(ev);
    char *text = o ? sb_json_print(o) : NULL;
    if (text) {
        printf("%s\n", text);
        fflush(stdout);
    }
    free(text);
    cJSON_Delete(o);
    return text ? SB_OK : SB_ENOMEM;
}

/* While a consumer's handler runs: renew its claim on the entry; stop it if it was lost. */
static int sb_event_keep_tick(void *consumer) { return sb_consumer_keep(consumer) == 0; }

/* Runs cmd for up to --job-timeout with ev's JSON on stdin and SB_EVENT_ID, SB_EVENT_TYPE,
 * SB_STREAM_ID, SB_DELIVERIES in its environment; keep (NULL outside a group) is the consumer
 * whose claim on the entry is renewed meanwhile. Returns 0 when it exited 0 (stdout in run;
 * caller closes run either way), else SB_ERR with a sentence in why. */
static int sb_event_exec(const sb_config_t *cfg, const sb_event_t *ev, sb_consumer_t *keep,
                         sb_proc_result_t *run, char *why, size_t whylen) {
    int timeout_ms = cfg->job_timeout * 1000;
    cJSON *o = sb_event_to_json(ev);
    char *input = o ? sb_json_print(o) : NULL, n[24];
    cJSON_Delete(o);
    snprintf(n, sizeof n, "%lld", ev->deliveries);
    char *env[5] = {sb_proc_env_entry("SB_EVENT_ID", ev->event_id),
                    sb_proc_env_entry("SB_EVENT_TYPE", ev->event_type),
                    sb_proc_env_entry("SB_STREAM_ID", ev->id),
                    sb_proc_env_entry("SB_DELIVERIES", n), NULL};
    memset(run, 0, sizeof *run);
    run->end = SB_PROC_NOSTART;
    if (input && env[0] && env[1] && env[2] && env[3]) {
        sb_proc_opts_t po = {.cmd = cfg->exec_cmd, .env = (const char *const *)env,
                             .input = input, .input_len = strlen(input),
                             .timeout_ms = timeout_ms, .die_with_parent = 1,
                             .reset_signals = 1, .tick = keep ? sb_event_keep_tick : NULL,
                             .tick_user = keep,
                             .tick_ms = keep ? sb_consumer_keep_every_ms(keep) : 0};
        sb_proc_run(&po, run);
    }
    free(input);
    for (int i = 0; i < 4; i++) free(env[i]);
    if (run->end == SB_PROC_EXITED && WIFEXITED(run->status) && WEXITSTATUS(run->status) == 0)
        return SB_OK;
    if (run->end == SB_PROC_NOSTART) snprintf(why, whylen, "could not start the handler");
    else if (run->end == SB_PROC_TIMEOUT) snprintf(why, whylen, "handler timed out after %d ms",
                                                   timeout_ms);
    else if (run->end == SB_PROC_CANCELED) snprintf(why, whylen, "handler stopped: another "
                                                    "consumer took the event over");
    else if (run->end != SB_PROC_EXITED) snprintf(why, whylen, "handler stdout too large");
    else if (WIFSIGNALED(run->status)) snprintf(why, whylen, "handler killed by signal %d",
                                                WTERMSIG(run->status));
    else if (run->err_len) sb_proc_err_tail(run, why, whylen);
    else snprintf(why, whylen, "handler exited with status %d", WEXITSTATUS(run->status));
    return SB_ERR;
}

/* Reads the DATA argument (`-` is not accepted here) and checks it is JSON. */
static const char *sb_data_arg(const sb_config_t *cfg, int i, const char *verb) {
    const char *d = cfg->nargs > i ? cfg->args[i] : NULL;
    cJSON *doc = d ? sb_json_parse(d, strlen(d)) : NULL;
    if (!doc) fprintf(stderr, "switchboard events %s: DATA must be valid JSON\n", verb);
    cJSON_Delete(doc);
    return doc ? d : NULL;
}

/* Checks the event types among the arguments: args[1] alone (all = 0), or args[1..] (all = 1). */
static int sb_types_ok(const sb_config_t *cfg, int all, const char *verb) {
    if (cfg->nargs < 2) {
        fprintf(stderr, "switchboard events %s: give an event type (see --help)\n", verb);
        return 0;
    }
    for (int i = 1; i < (all ? cfg->nargs : 2); i++)
        if (!sb_event_type_valid(cfg->args[i])) {
            fprintf(stderr, "switchboard events %s: bad event type '%s' (expected "
                    "[A-Za-z0-9._:-]{1,%d})\n", verb, cfg->args[i], SB_EVENT_TYPE_MAX);
            return 0;
        }
    return 1;
}

/* ---- publish / request ------------------------------------------------------------------- */

/* Publishes one event per stdin line, pipelined in batches of --count. */
static int sb_publish_lines(sb_redis_t *r, const sb_config_t *cfg, const char *type,
                            const char *key) {
    char *line = NULL;
    size_t cap = 0;
    long long sent = 0, bad = 0;
    int rc = SB_OK;
    sb_batch_t *b = sb_batch_create();
    redisReply **rep = calloc((size_t)cfg->count, sizeof *rep);
    ssize_t len = b && rep ? 0 : -1;
    while (rc == SB_OK && len >= 0) {
        len = getline(&line, &cap, stdin);
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        cJSON *doc = len > 0 ? sb_json_parse(line, (size_t)len) : NULL;
        sb_envelope_t e;
        if (len > 0 && !doc) bad++;
        if (doc && sb_envelope_init(&e, type, line, cfg->correlation_id, NULL) == SB_OK)
            rc = sb_events_xadd_batch(b, key, &e, cfg->maxlen);
        cJSON_Delete(doc);
        size_t n = sb_batch_count(b);
        if (rc == SB_OK && n && (n == (size_t)cfg->count || len < 0)) {
            rc = sb_redis_pipeline(r, b, rep);
            for (size_t i = 0; rc == SB_OK && i < n; i++)
                if (rep[i]->type == REDIS_REPLY_STRING) sent++;
            if (rc == SB_OK) sb_replies_free(rep, n);
            sb_batch_reset(b);
        }
    }
    free(line);
    free(rep);
    sb_batch_free(b);
    fprintf(stderr, "published %lld event(s) to %s%s", sent, key, bad ? "; " : "\n");
    if (bad) fprintf(stderr, "%lld line(s) skipped: not valid JSON\n", bad);
    return rc != SB_OK ? SB_EXIT_REDIS : bad ? SB_EXIT_USAGE : SB_EXIT_OK;
}

static int sb_events_publish_cmd(sb_config_t *cfg, sb_redis_t *r) {
    char key[SB_EVENT_TYPE_MAX + 32], eid[SB_EVENT_ID_LEN], sid[SB_STREAM_ID_LEN];
    if (!sb_types_ok(cfg, 0, "publish") || cfg->nargs != 3) {
        fprintf(stderr, "usage: switchboard events publish TYPE 'DATA-JSON' | -\n");
        return SB_EXIT_USAGE;
    }
    const char *type = cfg->args[1];
    if (!strcmp(cfg->args[2], "-"))
        return sb_publish_lines(r, cfg, type, sb_events_key(key, sizeof key, type));
    const char *data = sb_data_arg(cfg, 2, "publish");
    if (!data) return SB_EXIT_USAGE;
    sb_publish_opts_t po = {.correlation_id = cfg->correlation_id, .maxlen = cfg->maxlen};
    int rc = sb_events_publish(r, type, data, &po, eid, sid);
    if (rc != SB_OK) {
        fprintf(stderr, "switchboard events publish: %s\n", sb_strerror(rc));
        return sb_cli_exit(rc);
    }
    if (cfg->json_out) printf("{\"event_id\":\"%s\",\"id\":\"%s\"}\n", eid, sid);
    else printf("%s\n", eid);
    return SB_EXIT_OK;
}

static int sb_events_request_cmd(sb_config_t *cfg, sb_redis_t *r) {
    if (!sb_types_ok(cfg, 0, "request") || cfg->nargs != 3) {
        fprintf(stderr, "usage: switchboard events request TYPE 'DATA-JSON' [--timeout S]\n");
        return SB_EXIT_USAGE;
    }
    const char *data = sb_data_arg(cfg, 2, "request");
    if (!data) return SB_EXIT_USAGE;
    sb_sigwatch_t sw;
    sb_sigwatch_start(&sw);
    char *reply = NULL, err[256];
    int timeout_ms = (cfg->timeout > 0 ? cfg->timeout : 30) * 1000;
    int rc = sb_events_request(r, cfg->args[1], data, timeout_ms, &sw.stop, &reply, err,
                               sizeof err);
    sb_sigwatch_stop(&sw);
    if (rc == SB_OK) printf("%s\n", reply);
    else fprintf(stderr, "switchboard events request: %s\n", err);
    free(reply);
    return sb_cli_exit(rc);
}

/* ---- tail / replay ----------------------------------------------------------------------- */

typedef struct {
    const sb_config_t *cfg;
    long long seen;     /* events visited */
    long long failed;   /* --exec runs that failed */
} sb_visit_ctx_t;

static int sb_visit_print(const sb_event_t *ev, void *user) {
    sb_visit_ctx_t *v = user;
    sb_print_event(ev);
    v->seen++;
    return v->cfg->max_events > 0 && v->seen >= v->cfg->max_events;
}

static int sb_visit_exec(const sb_event_t *ev, void *user) {
    sb_visit_ctx_t *v = user;
    sb_proc_result_t run;
    char why[256];
    if (sb_event_exec(v->cfg, ev, NULL, &run, why, sizeof why) != SB_OK) {
        v->failed++;
        sb_warn("events", "replay of entry %s (event %s) failed: %s", ev->id,
                ev->event_id ? ev->event_id : "?", why);
    } else if (run.out_len) {
        fwrite(run.out, 1, run.out_len, stdout);
    }
    sb_proc_result_close(&run);
    v->seen++;
    return v->cfg->max_events > 0 && v->seen >= v->cfg->max_events;
}

static int sb_events_replay_cmd(sb_config_t *cfg, sb_redis_t *r) {
    char from[SB_STREAM_ID_LEN];
    if (!sb_types_ok(cfg, 0, "replay") || cfg->nargs != 2) return SB_EXIT_USAGE;
    if (sb_events_parse_from(cfg->from ? cfg->from : "-", from) != SB_OK || !strcmp(from, "$")) {
        fprintf(stderr, "switchboard events replay: bad --from '%s' (a stream id, unix ms or "
                "ISO 8601 time)\n", cfg->from);
        return SB_EXIT_USAGE;
    }
    sb_visit_ctx_t v = {.cfg = cfg};
    long n = sb_events_replay(r, cfg->args[1], from, cfg->max_events,
                              cfg->exec_cmd ? sb_visit_exec : sb_visit_print, &v);
    if (n < 0) {
        fprintf(stderr, "switchboard events replay: %s\n", sb_strerror((int)n));
        return sb_cli_exit((int)n);
    }
    fprintf(stderr, "replayed %ld event(s) from %s%s\n", n, from, v.failed ? " (some failed)" : "");
    return v.failed ? SB_EXIT_FAIL : SB_EXIT_OK;
}

static int sb_events_tail_cmd(sb_config_t *cfg, sb_redis_t *r) {
    enum { MAXT = 32 };
    char last[MAXT][SB_STREAM_ID_LEN], from[SB_STREAM_ID_LEN];
    int n = cfg->nargs - 1;
    if (!sb_types_ok(cfg, 1, "tail") || n > MAXT) return SB_EXIT_USAGE;
    if (sb_events_parse_from(cfg->from ? cfg->from : "$", from) != SB_OK) {
        fprintf(stderr, "switchboard events tail: bad --from '%s'\n", cfg->from);
        return SB_EXIT_USAGE;
    }
    if (!strcmp(from, "-")) snprintf(from, sizeof from, "0");
    for (int i = 0; i < n; i++) memcpy(last[i], from, sizeof from);
    sb_redis_set_timeout(r, cfg->block_ms + 10000);
    sb_sigwatch_t sw;
    sb_sigwatch_start(&sw);
    sb_visit_ctx_t v = {.cfg = cfg};
    int64_t deadline = cfg->timeout > 0 ? sb_mono_ms() + cfg->timeout * 1000LL : 0;
    int rc = 0;
    while (!atomic_load(&sw.stop) && rc >= 0 && (!deadline || sb_mono_ms() < deadline)) {
        rc = sb_events_read(r, n, (const char *const *)&cfg->args[1], last, cfg->block_ms,
                            cfg->count, sb_visit_print, &v);
        if (rc == SB_EREDIS) rc = sb_redis_ensure(r, &sw.stop); /* then carry on from last */
    }
    int stopped = atomic_load(&sw.stop);
    sb_sigwatch_stop(&sw);
    if (rc < 0 && rc != SB_ECANCELED) return SB_EXIT_REDIS;
    return sb_cli_watch_end(stopped, cfg->max_events, v.seen);
}

/* ---- pending / info ---------------------------------------------------------------------- */
/* Text for people, or with --json one document on stdout (field names in README, "Events"):
 *   pending  {"stream","group","pending","first_id","last_id","consumers":[{"name","pending"}],
 *             "entries":[{"id","consumer","idle_ms","deliveries"}]}   (at most --limit entries)
 *   info     {"streams":[{"stream","length"}]}                       (no TYPE: every stream)
 *            {"streams":[{"type","stream","length","first_id","last_id","last_generated_id",
 *              "dead_letters","groups":[{"name","pending","last_delivered_id","lag",
 *              "consumers":[{"name","pending","idle_ms"}]}]}]}       (TYPE...)
 * Ids are strings or null (none); lag is null where Redis does not know it. A TYPE without a
 * stream is left out of info (said on stderr, exit 1); when Redis is lost nothing is printed. */

/* The value after name in a flat [name, value, name, value…] reply, or NULL. */
static const redisReply *sb_pair(const redisReply *rep, const char *name) {
    for (size_t i = 0; rep && rep->type == REDIS_REPLY_ARRAY && i + 1 < rep->elements; i += 2)
        if (rep->element[i]->type == REDIS_REPLY_STRING && !strcmp(rep->element[i]->str, name))
            return rep->element[i + 1];
    return NULL;
}

/* An integer reply (or a number sent as a string) as a JSON number; anything else as null. */
static void sb_jw_reply_int(sb_jw_t *w, const redisReply *v) {
    if (v && v->type == REDIS_REPLY_INTEGER) sb_jw_int(w, v->integer);
    else if (v && v->type == REDIS_REPLY_STRING) sb_jw_int(w, strtoll(v->str, NULL, 10));
    else sb_jw_lit(w, "null");
}

/* A stream id (a string, or an entry [id, fields]) as a JSON string; anything else as null. */
static void sb_jw_reply_id(sb_jw_t *w, const redisReply *v) {
    if (v && v->type == REDIS_REPLY_ARRAY && v->elements == 2) v = v->element[0];
    if (v && (v->type == REDIS_REPLY_STRING || v->type == REDIS_REPLY_STATUS)) sb_jw_str(w, v->str);
    else sb_jw_lit(w, "null");
}

/* Prints the writer's document as one line; SB_EXIT_FAIL when it could not be written. */
static int sb_jw_print(sb_jw_t *w, int rc) {
    const char *text = sb_jw_finish(w, NULL);
    if (text && rc != SB_EXIT_REDIS) printf("%s\n", text);
    else if (!text) fprintf(stderr, "switchboard events: out of memory\n");
    sb_jw_close(w);
    return text ? rc : SB_EXIT_FAIL;
}

static void sb_print_pending_entries(const redisReply *rep) {
    if (rep->elements) printf("  %-24s %-32s %10s %10s\n", "entry", "consumer", "idle ms",
                              "deliveries");
    for (size_t i = 0; i < rep->elements; i++) {
        redisReply **e = rep->element[i]->element;
        printf("  %-24s %-32s %10lld %10lld\n", e[0]->str, e[1]->str, e[2]->integer,
               e[3]->integer);
    }
}

static void sb_print_pending(const char *key, const char *group, const redisReply *sum,
                             const redisReply *entries) {
    printf("stream: %s\ngroup: %s\npending: %lld", key, group, sum->element[0]->integer);
    if (sum->element[0]->integer)
        printf(" (entries %s … %s)", sum->element[1]->str, sum->element[2]->str);
    printf("\n");
    for (size_t i = 0; sum->element[3]->type == REDIS_REPLY_ARRAY && i < sum->element[3]->elements;
         i++)
        printf("  %s holds %s\n", sum->element[3]->element[i]->element[0]->str,
               sum->element[3]->element[i]->element[1]->str);
    if (entries) sb_print_pending_entries(entries);
}

static void sb_jw_pending(sb_jw_t *w, const char *key, const char *group, const redisReply *sum,
                          const redisReply *entries) {
    const redisReply *held = sum->element[3];
    sb_jw_member(w, "{\"stream\":", key);
    sb_jw_member(w, ",\"group\":", group);
    sb_jw_lit(w, ",\"pending\":");
    sb_jw_int(w, sum->element[0]->integer);
    sb_jw_lit(w, ",\"first_id\":");
    sb_jw_reply_id(w, sum->element[1]);
    sb_jw_lit(w, ",\"last_id\":");
    sb_jw_reply_id(w, sum->element[2]);
    sb_jw_lit(w, ",\"consumers\":[");
    for (size_t i = 0; held->type == REDIS_REPLY_ARRAY && i < held->elements; i++) {
        if (i) sb_jw_lit(w, ",");
        sb_jw_member(w, "{\"name\":", held->element[i]->element[0]->str);
        sb_jw_lit(w, ",\"pending\":");
        sb_jw_reply_int(w, held->element[i]->element[1]);
        sb_jw_lit(w, "}");
    }
    sb_jw_lit(w, "],\"entries\":[");
    for (size_t i = 0; entries && i < entries->elements; i++) {
        redisReply **e = entries->element[i]->element;
        if (i) sb_jw_lit(w, ",");
        sb_jw_member(w, "{\"id\":", e[0]->str);
        sb_jw_member(w, ",\"consumer\":", e[1]->str);
        sb_jw_lit(w, ",\"idle_ms\":");
        sb_jw_int(w, e[2]->integer);
        sb_jw_lit(w, ",\"deliveries\":");
        sb_jw_int(w, e[3]->integer);
        sb_jw_lit(w, "}");
    }
    sb_jw_lit(w, "]}");
}

/* 1 when rep is an XPENDING detail reply: entries of [id, consumer, idle, deliveries]. */
static int sb_pending_entries_ok(const redisReply *rep) {
    if (!rep || rep->type != REDIS_REPLY_ARRAY) return 0;
    for (size_t i = 0; i < rep->elements; i++)
        if (rep->element[i]->type != REDIS_REPLY_ARRAY || rep->element[i]->elements != 4)
            return 0;
    return 1;
}

static int sb_events_pending_cmd(sb_config_t *cfg, sb_redis_t *r) {
    char key[SB_EVENT_TYPE_MAX + 32];
    if (!sb_types_ok(cfg, 0, "pending") || cfg->nargs != 2) return SB_EXIT_USAGE;
    sb_events_key(key, sizeof key, cfg->args[1]);
    redisReply *sum = sb_redis_cmd(r, "XPENDING %s %s", key, cfg->group);
    if (!sum || sum->type != REDIS_REPLY_ARRAY || sum->elements != 4) {
        fprintf(stderr, "switchboard events pending: %s\n",
                sum && sum->type == REDIS_REPLY_ERROR ? sum->str : "redis unavailable");
        if (sum) freeReplyObject(sum);
        return sum ? SB_EXIT_FAIL : SB_EXIT_REDIS;
    }
    redisReply *entries = sb_redis_cmd(r, "XPENDING %s %s - + %d", key, cfg->group, cfg->limit);
    const redisReply *list = sb_pending_entries_ok(entries) ? entries : NULL;
    int rc = SB_EXIT_OK;
    if (cfg->json_out) {
        sb_jw_t w;
        sb_jw_init(&w);
        sb_jw_pending(&w, key, cfg->group, sum, list);
        rc = sb_jw_print(&w, entries ? SB_EXIT_OK : SB_EXIT_REDIS);
        if (!entries) fprintf(stderr, "switchboard events pending: redis unavailable\n");
    } else {
        sb_print_pending(key, cfg->group, sum, list);
    }
    freeReplyObject(sum);
    if (entries) freeReplyObject(entries);
    return rc;
}

/* Prints a flat [name, value, name, value…] reply as "indent name: value" lines. */
static void sb_print_pairs(const redisReply *rep, const char *indent) {
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        const redisReply *k = rep->element[i], *v = rep->element[i + 1];
        if (v->type == REDIS_REPLY_INTEGER) printf("%s%s: %lld\n", indent, k->str, v->integer);
        else if (v->type == REDIS_REPLY_STRING || v->type == REDIS_REPLY_STATUS)
            printf("%s%s: %s\n", indent, k->str, v->str);
        else if (v->type == REDIS_REPLY_ARRAY && v->elements == 2 &&
                 v->element[0]->type == REDIS_REPLY_STRING) /* first-entry / last-entry */
            printf("%s%s: %s\n", indent, k->str, v->element[0]->str);
        else if (v->type == REDIS_REPLY_NIL) printf("%s%s: -\n", indent, k->str);
    }
}

static long long sb_xlen(sb_redis_t *r, const char *key) {
    redisReply *rep = sb_redis_cmd(r, "XLEN %s", key);
    long long n = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    if (rep) freeReplyObject(rep);
    return n;
}

/* Opens the object of an XINFO group or consumer (pairs): `{"name":…,"pending":…`, after a
 * comma unless first. */
static void sb_jw_info_open(sb_jw_t *w, const redisReply *pairs, int first) {
    const redisReply *name = sb_pair(pairs, "name");
    if (!first) sb_jw_lit(w, ",");
    sb_jw_member(w, "{\"name\":", name && name->str ? name->str : "");
    sb_jw_lit(w, ",\"pending\":");
    sb_jw_reply_int(w, sb_pair(pairs, "pending"));
}

static void sb_jw_info_consumers(sb_jw_t *w, const redisReply *cons) {
    sb_jw_lit(w, ",\"consumers\":[");
    for (size_t j = 0; cons && cons->type == REDIS_REPLY_ARRAY && j < cons->elements; j++) {
        const redisReply *c = cons->element[j];
        sb_jw_info_open(w, c, j == 0);
        sb_jw_lit(w, ",\"idle_ms\":");
        sb_jw_reply_int(w, sb_pair(c, "idle"));
        sb_jw_lit(w, "}");
    }
    sb_jw_lit(w, "]");
}

/* One group of XINFO GROUPS and its consumers: text, or a JSON object (the first when
 * first). */
static void sb_info_group(sb_redis_t *r, const char *key, const redisReply *g, sb_jw_t *w,
                          int first) {
    const redisReply *name = sb_pair(g, "name");
    redisReply *cons = name ? sb_redis_cmd(r, "XINFO CONSUMERS %s %s", key, name->str) : NULL;
    if (w) {
        sb_jw_info_open(w, g, first);
        sb_jw_lit(w, ",\"last_delivered_id\":");
        sb_jw_reply_id(w, sb_pair(g, "last-delivered-id"));
        sb_jw_lit(w, ",\"lag\":");
        sb_jw_reply_int(w, sb_pair(g, "lag"));
        sb_jw_info_consumers(w, cons);
        sb_jw_lit(w, "}");
    } else {
        printf("  group:\n");
        sb_print_pairs(g, "    ");
        for (size_t j = 0; cons && cons->type == REDIS_REPLY_ARRAY && j < cons->elements; j++) {
            printf("    consumer:\n");
            sb_print_pairs(cons->element[j], "      ");
        }
    }
    if (cons) freeReplyObject(cons);
}

static void sb_jw_info_stream(sb_jw_t *w, const char *type, const char *key,
                              const redisReply *st, long long dead) {
    sb_jw_member(w, "{\"type\":", type);
    sb_jw_member(w, ",\"stream\":", key);
    sb_jw_lit(w, ",\"length\":");
    sb_jw_reply_int(w, sb_pair(st, "length"));
    sb_jw_lit(w, ",\"first_id\":");
    sb_jw_reply_id(w, sb_pair(st, "first-entry"));
    sb_jw_lit(w, ",\"last_id\":");
    sb_jw_reply_id(w, sb_pair(st, "last-entry"));
    sb_jw_lit(w, ",\"last_generated_id\":");
    sb_jw_reply_id(w, sb_pair(st, "last-generated-id"));
    sb_jw_lit(w, ",\"dead_letters\":");
    sb_jw_int(w, dead);
    sb_jw_lit(w, ",\"groups\":[");
}

/* One stream's XINFO: text, or (w not NULL) a JSON object appended after a comma unless
 * first. Returns an exit status (1: no such stream, said on stderr). */
static int sb_info_stream(sb_redis_t *r, const char *type, sb_jw_t *w, int first) {
    char key[SB_EVENT_TYPE_MAX + 32], dead[SB_EVENT_TYPE_MAX + 32];
    sb_events_key(key, sizeof key, type);
    sb_events_dead_key(dead, sizeof dead, type);
    redisReply *rep = sb_redis_cmd(r, "XINFO STREAM %s", key);
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        fprintf(stderr, "switchboard events info: %s: %s\n", key,
                rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "redis unavailable");
        if (rep) freeReplyObject(rep);
        return rep ? SB_EXIT_FAIL : SB_EXIT_REDIS;
    }
    long long ndead = sb_xlen(r, dead);
    if (w) {
        if (!first) sb_jw_lit(w, ",");
        sb_jw_info_stream(w, type, key, rep, ndead);
    } else {
        printf("stream: %s\n", key);
        sb_print_pairs(rep, "  ");
        printf("  dead letters (%s): %lld\n", dead, ndead);
    }
    freeReplyObject(rep);
    rep = sb_redis_cmd(r, "XINFO GROUPS %s", key);
    for (size_t i = 0; rep && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++)
        sb_info_group(r, key, rep->element[i], w, i == 0);
    if (w) sb_jw_lit(w, "]}");
    int lost = !rep || ndead < 0;
    if (rep) freeReplyObject(rep);
    return lost ? SB_EXIT_REDIS : SB_EXIT_OK;
}

/* Every stream under agent:stream:* with its length (w not NULL: as JSON objects). */
static int sb_info_all(sb_redis_t *r, sb_jw_t *w) {
    char cursor[32] = "0";
    size_t seen = 0;
    do {
        redisReply *rep = sb_redis_cmd(r, "SCAN %s MATCH agent:stream:* TYPE stream COUNT 500",
                                       cursor);
        if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            if (rep) freeReplyObject(rep);
            fprintf(stderr, "switchboard events info: redis unavailable\n");
            return SB_EXIT_REDIS;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        for (size_t i = 0; i < rep->element[1]->elements; i++, seen++) {
            const char *key = rep->element[1]->element[i]->str;
            if (!w) {
                printf("%-60s %lld\n", key, sb_xlen(r, key));
                continue;
            }
            if (seen) sb_jw_lit(w, ",");
            sb_jw_member(w, "{\"stream\":", key);
            sb_jw_lit(w, ",\"length\":");
            sb_jw_int(w, sb_xlen(r, key));
            sb_jw_lit(w, "}");
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0);
    return SB_EXIT_OK;
}

static int sb_events_info_cmd(sb_config_t *cfg, sb_redis_t *r) {
    if (cfg->nargs > 1 && !sb_types_ok(cfg, 1, "info")) return SB_EXIT_USAGE;
    sb_jw_t w;
    sb_jw_init(&w);
    sb_jw_t *jw = cfg->json_out ? &w : NULL;
    if (jw) sb_jw_lit(jw, "{\"streams\":[");
    int rc = SB_EXIT_OK, listed = 0;
    if (cfg->nargs == 1) rc = sb_info_all(r, jw);
    for (int i = 1; i < cfg->nargs; i++) {
        int one = sb_info_stream(r, cfg->args[i], jw, !listed);
        listed += one == SB_EXIT_OK;
        if (rc == SB_EXIT_OK || one == SB_EXIT_REDIS) rc = one; /* Redis lost wins */
    }
    if (!jw) return rc;
    sb_jw_lit(jw, "]}");
    return sb_jw_print(jw, rc);
}

/* ---- consume ----------------------------------------------------------------------------- */

typedef struct {
    const sb_config_t *cfg;
    long long handled; /* handler successes, for --max-events */
    sb_consumer_t *consumer;
} sb_consume_ctx_t;

/* Without --exec: print the event and acknowledge it. */
static sb_event_verdict_t sb_consume_print(const sb_event_t *ev, sb_redis_t *r, void *user,
                                           char *why, size_t whylen) {
    sb_consume_ctx_t *x = user;
    (void)r;
    if (sb_print_event(ev) != SB_OK) {
        snprintf(why, whylen, "out of memory");
        return SB_EVENT_RETRY;
    }
    x->handled++;
    return SB_EVENT_ACK;
}

/* --respond: the program's stdout (JSON; empty = null) is the reply to a request. */
static sb_event_verdict_t sb_consume_reply(const sb_event_t *ev, sb_redis_t *r,
                                           const sb_proc_result_t *run, char *why,
                                           size_t whylen) {
    size_t n = run->out_len;
    while (n > 0 && (run->out[n - 1] == '\n' || run->out[n - 1] == '\r' || run->out[n - 1] == ' '))
        n--;
    char *reply = n ? strndup(run->out, n) : strdup("null");
    cJSON *doc = reply ? sb_json_parse(reply, strlen(reply)) : NULL;
    int rc = doc ? sb_events_respond(r, ev, reply) : SB_EINVAL;
    cJSON_Delete(doc);
    free(reply);
    if (rc == SB_OK) return SB_EVENT_ACK;
    snprintf(why, whylen, "%s", !doc ? "handler printed invalid JSON on stdout"
                                     : "could not send the response");
    return SB_EVENT_RETRY;
}

static sb_event_verdict_t sb_consume_exec(const sb_event_t *ev, sb_redis_t *r, void *user,
                                          char *why, size_t whylen) {
    sb_consume_ctx_t *x = user;
    sb_proc_result_t run;
    sb_event_verdict_t v = SB_EVENT_RETRY;
    if (sb_event_exec(x->cfg, ev, x->consumer, &run, why, whylen) == SB_OK) {
        int request = x->cfg->respond && sb_event_response_stream(ev);
        v = request ? sb_consume_reply(ev, r, &run, why, whylen) : SB_EVENT_ACK;
    }
    sb_proc_result_close(&run);
    if (v == SB_EVENT_ACK) {
        x->handled++;
        sb_info("events", "event %s (%s, entry %s) handled", ev->event_id, ev->event_type, ev->id);
    }
    return v;
}

static sb_consumer_t *sb_consume_create(const sb_config_t *cfg, sb_consume_ctx_t *x) {
    sb_consumer_opts_t o;
    char err[256];
    sb_consumer_opts_init(&o);
    o.group = cfg->group;
    o.consumer = cfg->consumer;
    o.count = cfg->max_events > 0 && cfg->max_events < cfg->count ? cfg->max_events : cfg->count;
    o.block_ms = cfg->block_ms;
    o.min_idle_ms = cfg->min_idle_ms;
    o.max_deliveries = cfg->max_deliveries;
    o.idempotency_ttl_s = cfg->idempotency_ttl;
    o.start_id = cfg->from;
    sb_consumer_t *c = x->consumer = sb_consumer_create(&cfg->redis, &o, err, sizeof err);
    if (!c) fprintf(stderr, "switchboard events consume: %s\n", err);
    for (int i = 1; c && i < cfg->nargs; i++)
        sb_consumer_subscribe(c, cfg->args[i], cfg->exec_cmd ? sb_consume_exec : sb_consume_print,
                              x);
    return c;
}

static int sb_events_consume_cmd(sb_config_t *cfg, sb_redis_t *r) {
    (void)r;
    if (!sb_types_ok(cfg, 1, "consume")) return SB_EXIT_USAGE;
    if (cfg->respond && !cfg->exec_cmd) {
        fprintf(stderr, "switchboard events consume: --respond needs --exec CMD\n");
        return SB_EXIT_USAGE;
    }
    sb_consume_ctx_t x = {.cfg = cfg};
    sb_sigwatch_t sw;
    sb_sigwatch_start(&sw);
    sb_consumer_t *c = sb_consume_create(cfg, &x);
    if (!c) {
        sb_sigwatch_stop(&sw);
        return SB_EXIT_USAGE;
    }
    sb_info("events", "consumer %s of group %s reading %d stream(s)", sb_consumer_name(c),
            cfg->group, cfg->nargs - 1);

    while (!atomic_load(&sw.stop) && (cfg->max_events <= 0 || x.handled < cfg->max_events)) {
        int rc = sb_consumer_poll(c, &sw.stop);
        if (rc == SB_EPROTO) sb_sleep_ms(cfg->block_ms, &sw.stop);
    }
    sb_consumer_stats_t st;
    sb_consumer_stats(c, &st);
    sb_info("events", "consumer %s stopping: handled %llu, retried %llu, dead-lettered %llu "
            "(malformed %llu), duplicates %llu, claimed %llu", sb_consumer_name(c), st.handled,
            st.retried, st.dead, st.malformed, st.duplicates, st.claimed);
    sb_consumer_free(c);
    sb_sigwatch_stop(&sw);
    return SB_EXIT_OK;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int (*run)(sb_config_t *cfg, sb_redis_t *r);
    int needs_redis; /* connect a client before running */
} sb_subverb_t;

static const sb_subverb_t sb_subverbs[] = {
    {"publish", sb_events_publish_cmd, 1}, {"request", sb_events_request_cmd, 1},
    {"tail", sb_events_tail_cmd, 1},       {"replay", sb_events_replay_cmd, 1},
    {"pending", sb_events_pending_cmd, 1}, {"info", sb_events_info_cmd, 1},
    {"consume", sb_events_consume_cmd, 0},
};

int sb_cmd_events(sb_config_t *cfg) {
    const sb_subverb_t *sv = NULL;
    for (size_t i = 0; cfg->nargs > 0 && i < sizeof sb_subverbs / sizeof sb_subverbs[0]; i++)
        if (!strcmp(cfg->args[0], sb_subverbs[i].name)) sv = &sb_subverbs[i];
    if (!sv) {
        fprintf(stderr, "usage: switchboard events publish|request|tail|replay|pending|info|"
                "consume … (see switchboard events --help)\n");
        return SB_EXIT_USAGE;
    }
    sb_redis_t *r = sv->needs_redis ? sb_cli_connect(cfg) : NULL;
    if (sv->needs_redis && !r) return SB_EXIT_REDIS;
    int rc = sv->run(cfg, r);
    sb_redis_free(r);
    return rc;
}
